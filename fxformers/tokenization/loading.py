"""from_pretrained: find the tokenizer files of a folder or hub id, pick the class, build the backend."""

from __future__ import annotations

import base64
import json
import logging
import os
from pathlib import Path
from typing import Iterator, Optional, Union

from tokenizers import Tokenizer

from ..hub import resolve_file
from .base import (
    ADDED_TOKENS_FILE,
    SPECIAL_TOKENS_MAP_FILE,
    TOKENIZER_CONFIG_FILE,
    TOKENIZER_FILE,
    PreTrainedTokenizer,
    TokenizerError,
    as_added_token,
)
from .families import ALIASES, FAMILIES, MODEL_TYPES
from .models import SPM_FILES, TOKENIZER_CLASSES, GenericTokenizer, _FamilyTokenizer
from .spm import check_precompiled_charsmap

logger = logging.getLogger(__name__)

LEGACY_FILES = ("vocab.txt", "vocab.json", "merges.txt", *SPM_FILES, "source.spm", "target.spm")
_HUB_KWARGS = ("cache_dir", "revision", "token", "local_files_only")
_IGNORED_KWARGS = ("use_fast", "trust_remote_code", "force_download", "resume_download", "proxies", "use_auth_token",
                   "_from_auto", "_commit_hash", "from_slow", "legacy_format")


#: the largest tokenizer file read (real tokenizer.json files are up to a few tens of MB)
MAX_TOKENIZER_FILE_BYTES = 1 << 30


def _read_json(path: Optional[Path]) -> dict:
    """A JSON object file, or a TokenizerError naming it."""
    if path is None:
        return {}
    try:
        if Path(path).stat().st_size > MAX_TOKENIZER_FILE_BYTES:
            raise ValueError(f"it is larger than {MAX_TOKENIZER_FILE_BYTES} bytes")
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except (OSError, ValueError, RecursionError) as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise TokenizerError(f"{path} is not a valid JSON file ({type(err).__name__}: {str(err)[:200]}); download "
                             "or save the tokenizer again.") from err
    if not isinstance(value, dict):
        raise TokenizerError(f"{path} holds a JSON {type(value).__name__}, not an object.")
    return value


def _charsmaps(normalizer) -> Iterator[str]:
    if isinstance(normalizer, dict):
        if normalizer.get("type") == "Precompiled" and normalizer.get("precompiled_charsmap"):
            yield normalizer["precompiled_charsmap"]
        for part in normalizer.get("normalizers") or []:
            yield from _charsmaps(part)


def read_tokenizer_json(path: Path) -> Tokenizer:
    """The backend of a ``tokenizer.json``, after checking what the Rust library would crash on (a corrupt
    precompiled character map)."""
    data = _read_json(path)
    for charsmap in _charsmaps(data.get("normalizer")):
        try:
            check_precompiled_charsmap(base64.b64decode(charsmap, validate=True))
        except (ValueError, TypeError) as err:
            raise TokenizerError(f"{path} is not a valid tokenizer file: {err}.") from err
    try:
        return Tokenizer.from_str(json.dumps(data))
    except BaseException as err:  # the tokenizers library's Exception, or a pyo3 PanicException (a BaseException)
        if not isinstance(err, Exception) and type(err).__name__ != "PanicException":
            raise
        raise TokenizerError(f"{path} is not a valid tokenizer file ({type(err).__name__}: {str(err)[:300]}); "
                             "download or save the tokenizer again.") from err


def load_tokenizer(name_or_path: Union[str, os.PathLike], cls: Optional[type[PreTrainedTokenizer]] = None,
                   subfolder: str = "", **kwargs) -> PreTrainedTokenizer:
    """Load the tokenizer of ``name_or_path`` as ``cls`` (None: the class named by tokenizer_config.json, else by
    config.json's model_type, else the generic one). A corrupt or hostile file is a ``TokenizerError`` naming the
    tokenizer's files (including errors and panics of the Rust tokenizers library)."""
    try:
        return _load_tokenizer(name_or_path, cls, subfolder, **kwargs)
    except (TokenizerError, OSError, ImportError):
        raise
    except BaseException as err:
        if not isinstance(err, Exception) and type(err).__name__ != "PanicException":
            raise  # KeyboardInterrupt, SystemExit
        raise TokenizerError(
            f"Cannot load the tokenizer of {str(name_or_path)!r} ({type(err).__name__}: {str(err)[:300]}). Unless an "
            "argument you passed explains it, a tokenizer file (tokenizer.json, tokenizer_config.json, vocab/merges or "
            "the SentencePiece model) is corrupt or not what its name says: download or save the tokenizer again."
        ) from err


_FAMILY_CACHE: dict[str, type[PreTrainedTokenizer]] = {}


def class_for_name(name: Optional[str]) -> Optional[type[PreTrainedTokenizer]]:
    """The fxformers class for a Transformers tokenizer class name ("BertTokenizerFast" -> BertTokenizer). Families
    without a class of their own get a GenericTokenizer subclass carrying Transformers' defaults for that name."""
    if not name:
        return None
    name = ALIASES.get(name, name)
    base = name[:-4] if name.endswith("Fast") and name[:-4] in TOKENIZER_CLASSES else name
    if base in TOKENIZER_CLASSES:
        return TOKENIZER_CLASSES[base]
    if name == "PreTrainedTokenizerFast":
        return GenericTokenizer
    key = name if name in FAMILIES else name[:-4] if name.endswith("Fast") and name[:-4] in FAMILIES else None
    if key is None:
        return None
    if key not in _FAMILY_CACHE:
        input_names, padding_side, truncation_side, defaults = FAMILIES[key]
        _FAMILY_CACHE[key] = type(
            key,
            (GenericTokenizer,),
            {
                "model_input_names": list(input_names),
                "padding_side": padding_side,
                "truncation_side": truncation_side,
                "default_special_tokens": dict(defaults),
                "saved_class_name": key,
                "__module__": __name__,
                "__doc__": f"Transformers' {key}: the generic tokenizer with that family's defaults.",
            },
        )
    return _FAMILY_CACHE[key]


def _load_tokenizer(
    name_or_path: Union[str, os.PathLike],
    cls: Optional[type[PreTrainedTokenizer]] = None,
    subfolder: str = "",
    **kwargs,
) -> PreTrainedTokenizer:
    hub = {k: kwargs.pop(k) for k in _HUB_KWARGS if k in kwargs}
    model_config = kwargs.pop("config", None)  # a model config object, as Transformers accepts
    for k in _IGNORED_KWARGS:
        kwargs.pop(k, None)

    def find(filename: str) -> Optional[Path]:
        return resolve_file(name_or_path, f"{subfolder}/{filename}" if subfolder else filename, **hub)

    config_file = find(TOKENIZER_CONFIG_FILE)
    config = _read_json(config_file)
    class_name = config.pop("tokenizer_class", None)
    config.pop("auto_map", None)
    config.pop("init_inputs", None)
    tokenizer_file = find(TOKENIZER_FILE)
    chat_template_file = find("chat_template.jinja")
    if chat_template_file is not None:
        config.setdefault("chat_template", chat_template_file.read_text(encoding="utf-8"))

    if cls is None:
        cls = class_for_name(class_name)
        if cls is None and class_name:
            logger.info("Tokenizer class %r has no fxformers counterpart; loading it with the generic tokenizer.", class_name)
        if cls is None and not class_name:
            # the model's config.json: its tokenizer_class, else its model_type
            if model_config is not None and not isinstance(model_config, dict):
                model_config = {k: getattr(model_config, k, None) for k in ("tokenizer_class", "model_type")}
            if model_config is None:
                config_json = find("config.json")
                model_config = _read_json(config_json) if config_json else {}
            cls = class_for_name(model_config.get("tokenizer_class"))
            model_type = model_config.get("model_type")
            if cls is None and model_type:
                cls = class_for_name(MODEL_TYPES.get(model_type))
        if cls is None:
            cls = GenericTokenizer
    elif cls is PreTrainedTokenizer:
        cls = GenericTokenizer

    files = {}
    if tokenizer_file is None:
        files = {name: find(name) for name in LEGACY_FILES}
        if not any(files.values()) and config_file is None:
            raise OSError(
                f"No tokenizer files in {str(name_or_path)!r}: expected tokenizer.json, or vocab.txt, "
                "vocab.json + merges.txt, or spiece.model / tokenizer.model (with tokenizer_config.json)."
            )
    else:
        # Transformers 5: with a tokenizer.json the post-processor comes from the file, not add_bos/eos_token
        config.pop("add_bos_token", None)
        config.pop("add_eos_token", None)

    config.update(kwargs)
    if "additional_special_tokens" in config and not config.get("extra_special_tokens"):
        config["extra_special_tokens"] = config.pop("additional_special_tokens")
    config.pop("additional_special_tokens", None)

    # special_tokens_map.json and added_tokens.json: read as Transformers does when the config has no
    # added_tokens_decoder (the older layout)
    if "added_tokens_decoder" not in config:
        stm = _read_json(find(SPECIAL_TOKENS_MAP_FILE))
        for key, value in stm.items():
            if key in kwargs and kwargs[key]:
                continue
            if key in ("additional_special_tokens", "extra_special_tokens"):
                if isinstance(value, dict):
                    config.setdefault("model_specific_special_tokens", {}).update(value)
                    continue
                existing = list(config.get("extra_special_tokens") or [])
                seen = {str(as_added_token(t)) for t in existing}
                for tok in value or []:
                    tok = as_added_token(tok)
                    if str(tok) not in seen:
                        existing.append(tok)
                        seen.add(str(tok))
                config["extra_special_tokens"] = existing
            else:
                config[key] = as_added_token(value)
        added = _read_json(find(ADDED_TOKENS_FILE))
        if added:
            special = {str(as_added_token(config[k])) for k in cls.SPECIAL_TOKENS_ATTRIBUTES if config.get(k)}
            special |= {str(as_added_token(t)) for t in (config.get("extra_special_tokens") or [])}
            config["added_tokens_decoder"] = {
                int(i): {"content": t, "lstrip": False, "rstrip": False, "normalized": t not in special, "special": t in special}
                for t, i in added.items()
            }
    if isinstance(config.get("extra_special_tokens"), dict):
        config.setdefault("model_specific_special_tokens", {}).update(config.pop("extra_special_tokens"))

    config["name_or_path"] = str(name_or_path)
    rebuilt = tokenizer_file is None
    if rebuilt:
        for key, value in cls.default_special_tokens.items():
            config.setdefault(key, value)
        backend = cls.build_backend(files, config)
    else:
        backend = read_tokenizer_json(tokenizer_file)
        if issubclass(cls, _FamilyTokenizer) and cls.json_model is not None:
            rebuilt_backend = _rebuild_family(cls, tokenizer_file, backend, config)
            if rebuilt_backend is not None:
                backend, rebuilt = rebuilt_backend, True
    tokenizer = cls(backend, **config)
    if rebuilt and isinstance(tokenizer, _FamilyTokenizer) and cls.own_post_processor:
        post = tokenizer.family_post_processor()
        if post is not None:
            tokenizer.backend_tokenizer.post_processor = post
    return tokenizer


def _model_type(model: dict) -> str:
    if model.get("type"):
        return model["type"]
    vocab = model.get("vocab")
    if isinstance(vocab, list):
        return "Unigram"
    return "BPE" if "merges" in model else "WordPiece"


def _precompiled_charsmap(normalizer: Optional[dict]) -> bytes:
    if not normalizer:
        return b""
    parts = normalizer.get("normalizers", []) if normalizer.get("type") == "Sequence" else [normalizer]
    for part in parts:
        if part and part.get("type") == "Precompiled" and part.get("precompiled_charsmap"):
            return base64.b64decode(part["precompiled_charsmap"])
    return b""


def _rebuild_family(cls, tokenizer_file: Path, from_file: Tokenizer, config: dict) -> Optional[Tokenizer]:
    """Transformers 5 builds the known families' pipelines from the class (normaliser, pre-tokenizer, decoder and,
    for some, the post-processor) around the vocabulary of tokenizer.json, keeping the file's post-processor,
    padding, truncation and added tokens. Do the same, so that a file that disagrees with its class gives
    Transformers' result. Returns None (use the file as it is) when the file's model is not the family's."""
    data = _read_json(tokenizer_file)
    model = data.get("model") or {}
    if _model_type(model) != cls.json_model:
        logger.info("%s holds a %s model, not %s: using it as it is.", tokenizer_file, _model_type(model), cls.json_model)
        return None
    backend = cls.rebuild_from_json(model, _precompiled_charsmap(data.get("normalizer")), config)
    backend.post_processor = from_file.post_processor
    if from_file.truncation is not None:
        backend.enable_truncation(**from_file.truncation)
    if from_file.padding is not None:
        backend.enable_padding(**from_file.padding)
    if "added_tokens_decoder" not in config:
        config["added_tokens_decoder"] = {
            int(t["id"]): {k: v for k, v in t.items() if k != "id"} for t in data.get("added_tokens") or []
        }
    return backend


class AutoTokenizer:
    """``AutoTokenizer.from_pretrained(folder_or_hub_id, **overrides)``: the tokenizer class that the folder's
    tokenizer_config.json (``tokenizer_class``) or config.json (``model_type``) names."""

    def __init__(self):
        raise TypeError("AutoTokenizer is not instantiated: use AutoTokenizer.from_pretrained(name_or_path).")

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: Union[str, os.PathLike], *inputs, **kwargs) -> PreTrainedTokenizer:
        tokenizer_type = kwargs.pop("tokenizer_type", None)
        target = None
        if tokenizer_type is not None:
            target = class_for_name(MODEL_TYPES.get(tokenizer_type))
            if target is None:
                raise ValueError(f"Unknown tokenizer_type={tokenizer_type!r}; known: {sorted(MODEL_TYPES)}.")
        return load_tokenizer(pretrained_model_name_or_path, cls=target, **kwargs)
