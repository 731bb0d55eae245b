"""PreTrainedTokenizer: Transformers' tokenizer calling convention on top of a Rust ``tokenizers.Tokenizer``.

The backend does all per-token work (normalisation, splitting, the model, special tokens, truncation with stride,
padding, offsets) in ``encode_batch``; this class only validates arguments, configures the backend for the call,
and gathers the per-row lists into a BatchEncoding.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
from tokenizers import AddedToken, Tokenizer

from ..checkpoints.atomic import atomic_write_texts, folder_lock
from .encoding import BatchEncoding, check_tensor_type
from .special_tokens import SpecialTokensMixin

logger = logging.getLogger(__name__)

VERY_LARGE_INTEGER = int(1e30)  # "no limit" for model_max_length, as in Transformers
LARGE_INTEGER = int(1e20)

TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_MAP_FILE = "special_tokens_map.json"
ADDED_TOKENS_FILE = "added_tokens.json"

PADDING_STRATEGIES = ("longest", "max_length", "do_not_pad")
TRUNCATION_STRATEGIES = ("longest_first", "only_first", "only_second", "do_not_truncate")

# keys of tokenizer_config.json that describe files or loading, never written back
_NOT_SAVED = {
    "name_or_path", "tokenizer_file", "vocab_file", "merges_file", "special_tokens_map_file", "added_tokens_file",
    "tokenizer_class", "auto_map", "init_inputs", "device_map", "slow_tokenizer_class", "files_loaded",
    "added_tokens_decoder", "is_local", "local_files_only", "backend", "additional_special_tokens",
}


class TokenizerInputError(TypeError, ValueError):
    """The text given to a tokenizer has the wrong type (catchable as TypeError or ValueError)."""


def _as_token_ids(token_ids) -> list[int]:
    """Token ids as ints; a float such as 1.5 (or a bool) is an error, not silently id 1 (as in Transformers,
    whose Rust backend refuses floats)."""
    ids = []
    for i in token_ids:
        if isinstance(i, (bool, np.bool_)) or not isinstance(i, (int, np.integer)):
            raise TokenizerInputError(f"token ids must be integers, got {i!r} (a {type(i).__name__}).")
        ids.append(int(i))
    return ids


class TokenizerError(ValueError):
    """A tokenizer file is corrupt, hostile or unreadable; the message names the file."""


def _strategy_value(value: Any) -> Any:
    """Accept Transformers' PaddingStrategy / TruncationStrategy enums (they carry the string in ``.value``)."""
    return getattr(value, "value", value)


def resolve_padding(padding: Any) -> str:
    """True/'longest' -> 'longest', 'max_length', False/None/'do_not_pad' -> 'do_not_pad'."""
    padding = _strategy_value(padding)
    if padding is True:
        return "longest"
    if padding is False or padding is None:
        return "do_not_pad"
    if isinstance(padding, str) and padding in PADDING_STRATEGIES:
        return padding
    raise ValueError(
        f"Unknown padding={padding!r}: use True or 'longest' (pad to the longest in the batch), 'max_length' "
        "(pad to max_length, or model_max_length), or False / 'do_not_pad'."
    )


def resolve_truncation(truncation: Any) -> str:
    """True -> 'longest_first', False/None -> 'do_not_truncate', or one of the named strategies."""
    truncation = _strategy_value(truncation)
    if truncation is True:
        return "longest_first"
    if truncation is False or truncation is None:
        return "do_not_truncate"
    if isinstance(truncation, str) and truncation in TRUNCATION_STRATEGIES:
        return truncation
    raise ValueError(
        f"Unknown truncation={truncation!r}: use True or 'longest_first', 'only_first', 'only_second', or "
        "False / 'do_not_truncate'."
    )


def as_added_token(value: Any, special: bool = True) -> Union[str, AddedToken]:
    """A special-token value from a config file (str, AddedToken, or a serialised AddedToken dict)."""
    if isinstance(value, dict):
        fields = {k: v for k, v in value.items() if k not in ("__type", "id")}
        fields.setdefault("special", special)
        return AddedToken(**fields)
    return value


def _to_py(obj: Any) -> Any:
    """numpy / jax arrays and scalars -> Python ints and lists."""
    if hasattr(obj, "tolist") and not isinstance(obj, (list, tuple)):
        return obj.tolist()
    if isinstance(obj, (list, tuple)) and obj and hasattr(obj[0], "tolist"):
        return [o.tolist() for o in obj]
    return obj


def _is_text(t: Any) -> bool:
    return isinstance(t, str)


def _is_words(t: Any) -> bool:
    return isinstance(t, (list, tuple)) and all(isinstance(w, str) for w in t)


def _input_error(what: str, value: Any) -> TokenizerInputError:
    return TokenizerInputError(
        f"{what} must be a str (one text), a list of str (a batch of texts, or one pre-split text with "
        "is_split_into_words=True) or a list of lists of str (a batch of pre-split texts with "
        f"is_split_into_words=True); got {type(value).__name__}: {str(value)[:80]!r}."
    )


class PreTrainedTokenizer(SpecialTokensMixin):
    """A tokenizer with Transformers' API (``__call__``, ``encode``, ``decode``, special tokens, ``save_pretrained``)
    over a Rust ``tokenizers.Tokenizer`` (``.backend_tokenizer``).

    Build it with ``from_pretrained(folder_or_hub_id)``, or directly from a ``tokenizers.Tokenizer`` with the
    keyword arguments of ``tokenizer_config.json`` (special tokens, ``model_max_length``, ``padding_side`` ...).
    """

    model_input_names: list[str] = ["input_ids", "attention_mask"]
    padding_side: str = "right"
    truncation_side: str = "right"
    # default special tokens of the model family; used when the config files do not name them
    default_special_tokens: dict[str, Optional[str]] = {}
    # the class name written to tokenizer_config.json (Transformers loads it with that class)
    saved_class_name: Optional[str] = None

    def __init__(self, tokenizer_object: Optional[Tokenizer] = None, **kwargs):
        if tokenizer_object is None:
            tokenizer_file = kwargs.pop("tokenizer_file", None)
            if tokenizer_file is None:
                raise ValueError(
                    f"{type(self).__name__} needs a tokenizers.Tokenizer (tokenizer_object=...) or a tokenizer.json "
                    "(tokenizer_file=...); to load a saved tokenizer use "
                    f"{type(self).__name__}.from_pretrained(folder_or_hub_id)."
                )
            tokenizer_object = Tokenizer.from_file(str(tokenizer_file))
        if not isinstance(tokenizer_object, Tokenizer):
            raise TypeError(f"tokenizer_object must be a tokenizers.Tokenizer, got {type(tokenizer_object).__name__}.")
        self._tokenizer = tokenizer_object

        if "additional_special_tokens" in kwargs and not kwargs.get("extra_special_tokens"):
            kwargs["extra_special_tokens"] = kwargs.pop("additional_special_tokens")
        kwargs.pop("additional_special_tokens", None)
        for key, value in self.default_special_tokens.items():
            kwargs.setdefault(key, value)

        # padding / truncation stored in tokenizer.json: kept for saving, and as the default sides
        self._saved_truncation = self._tokenizer.truncation
        self._saved_padding = self._tokenizer.padding
        if self._saved_padding is not None:
            kwargs.setdefault("padding_side", self._saved_padding.get("direction", "right"))
        if self._saved_truncation is not None:
            kwargs.setdefault("truncation_side", self._saved_truncation.get("direction", "right"))
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()

        self.init_kwargs = copy.deepcopy({k: v for k, v in kwargs.items() if k != "added_tokens_decoder"})
        self.name_or_path = kwargs.pop("name_or_path", "")
        self.verbose = kwargs.pop("verbose", False)
        self._pad_token_type_id = 0
        self._warned_too_long = False

        object.__setattr__(self, "_special_tokens_map", dict.fromkeys(self.SPECIAL_TOKENS_ATTRIBUTES))
        object.__setattr__(self, "_extra_special_tokens", [])
        model_specific = dict(kwargs.pop("model_specific_special_tokens", None) or {})
        for key in list(kwargs):
            value = kwargs[key]
            if key in self.SPECIAL_TOKENS_ATTRIBUTES:
                kwargs.pop(key)
                if value is None:
                    continue
                value = as_added_token(value)
                if not isinstance(value, (str, AddedToken)):
                    raise TypeError(f"Special token {key} must be a str or AddedToken, got {type(value).__name__}.")
                self._special_tokens_map[key] = value
            elif key == "extra_special_tokens":
                kwargs.pop(key)
                if isinstance(value, dict):
                    model_specific.update(value)
                elif isinstance(value, (list, tuple)):
                    self._extra_special_tokens[:] = [as_added_token(v) for v in value]
                elif value is not None:
                    raise TypeError("extra_special_tokens must be a list of tokens or a dict of named tokens.")
            elif key.endswith("_token") and isinstance(value, (str, dict, AddedToken)):
                kwargs.pop(key)
                model_specific[key] = value
        if model_specific:
            self.SPECIAL_TOKENS_ATTRIBUTES = self.SPECIAL_TOKENS_ATTRIBUTES + [
                k for k in model_specific if k not in self.SPECIAL_TOKENS_ATTRIBUTES
            ]
            for key, value in model_specific.items():
                self._special_tokens_map[key] = as_added_token(value)

        model_max_length = kwargs.pop("model_max_length", kwargs.pop("max_len", None))
        self.model_max_length = int(model_max_length) if model_max_length is not None else VERY_LARGE_INTEGER
        self.padding_side = kwargs.pop("padding_side", type(self).padding_side)
        self.truncation_side = kwargs.pop("truncation_side", type(self).truncation_side)
        for name, side in (("padding_side", self.padding_side), ("truncation_side", self.truncation_side)):
            if side not in ("left", "right"):
                raise ValueError(f"{name} must be 'left' or 'right', got {side!r}.")
        self.model_input_names = list(kwargs.pop("model_input_names", type(self).model_input_names))
        self.clean_up_tokenization_spaces = bool(kwargs.pop("clean_up_tokenization_spaces", False))
        self.split_special_tokens = bool(kwargs.pop("split_special_tokens", False))
        self._tokenizer.encode_special_tokens = self.split_special_tokens
        self.chat_template = kwargs.pop("chat_template", None)

        # added tokens listed in the config (tokenizer_config.json's added_tokens_decoder, added_tokens.json)
        added_tokens_decoder = kwargs.pop("added_tokens_decoder", None) or {}
        present = {t.content for t in self._tokenizer.get_added_tokens_decoder().values()}
        to_add: list[AddedToken] = []
        for _, token in sorted(((int(i), t) for i, t in added_tokens_decoder.items()), key=lambda x: x[0]):
            token = as_added_token(token, special=False)
            if isinstance(token, str):
                token = AddedToken(token, special=True, normalized=False)
            if token.content not in present:
                to_add.append(token)
                present.add(token.content)
        named = {str(v) for v in self._special_tokens_map.values() if v is not None}
        for value in list(self._special_tokens_map.values()) + list(self._extra_special_tokens):
            if value is None or str(value) in present:
                continue
            if isinstance(value, str):
                value = AddedToken(value, special=True, normalized=False)
            elif not value.special and str(value) in named:
                value.special = True
            to_add.append(value)
            present.add(value.content)
        if to_add:
            self._tokenizer.add_tokens(to_add)

        explicit_bos_eos = "add_bos_token" in kwargs or "add_eos_token" in kwargs
        self._add_bos_token = bool(kwargs.pop("add_bos_token", False))
        self._add_eos_token = bool(kwargs.pop("add_eos_token", False))
        if explicit_bos_eos or self._tokenizer.post_processor is None:
            self.update_post_processor()

        # everything else (do_lower_case, add_prefix_space, ...) is kept as an attribute, as Transformers does
        for key, value in kwargs.items():
            if key in _NOT_SAVED or key.startswith("_"):
                continue
            if hasattr(type(self), key):
                continue
            object.__setattr__(self, key, value)

    # ------------------------------------------------------------------ vocabulary
    @property
    def backend_tokenizer(self) -> Tokenizer:
        """The Rust ``tokenizers.Tokenizer`` doing the work."""
        return self._tokenizer

    @property
    def decoder(self):
        return self._tokenizer.decoder

    @property
    def is_fast(self) -> bool:
        return True

    @property
    def vocab_size(self) -> int:
        """Size of the base vocabulary, without added tokens."""
        return self._tokenizer.get_vocab_size(with_added_tokens=False)

    def __len__(self) -> int:
        """Size of the full vocabulary, added tokens included."""
        return self._tokenizer.get_vocab_size(with_added_tokens=True)

    def __bool__(self) -> bool:
        return True

    def get_vocab(self) -> dict[str, int]:
        return self._tokenizer.get_vocab(with_added_tokens=True)

    @property
    def vocab(self) -> dict[str, int]:
        return self.get_vocab()

    @property
    def added_tokens_decoder(self) -> dict[int, AddedToken]:
        return self._tokenizer.get_added_tokens_decoder()

    @property
    def added_tokens_encoder(self) -> dict[str, int]:
        return {t.content: i for i, t in sorted(self.added_tokens_decoder.items())}

    def get_added_vocab(self) -> dict[str, int]:
        return self.added_tokens_encoder

    def convert_tokens_to_ids(self, tokens: Union[str, Sequence[str], None]):
        """A token (or list of tokens) to its id; unknown tokens map to ``unk_token_id``."""
        if tokens is None:
            return None
        if isinstance(tokens, (str, AddedToken)):
            index = self._tokenizer.token_to_id(str(tokens))
            return self.unk_token_id if index is None else index
        return [self.convert_tokens_to_ids(t) for t in tokens]

    def convert_ids_to_tokens(self, ids, skip_special_tokens: bool = False):
        """An id (or list/array of ids) to its token string."""
        ids = _to_py(ids)
        if isinstance(ids, int):
            return self._tokenizer.id_to_token(ids)
        skip = set(self.all_special_ids) if skip_special_tokens else ()
        return [self._tokenizer.id_to_token(int(i)) for i in ids if int(i) not in skip]

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        decoder = self._tokenizer.decoder
        return decoder.decode(tokens) if decoder is not None else " ".join(tokens)

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        return self._tokenizer.num_special_tokens_to_add(pair)

    @property
    def max_len_single_sentence(self) -> int:
        return self.model_max_length - self.num_special_tokens_to_add(pair=False)

    @property
    def max_len_sentences_pair(self) -> int:
        return self.model_max_length - self.num_special_tokens_to_add(pair=True)

    def get_special_tokens_mask(self, token_ids_0, token_ids_1=None, already_has_special_tokens: bool = False) -> list[int]:
        """1 for special tokens, 0 otherwise, for a sequence that already holds its special tokens."""
        if not already_has_special_tokens:
            raise NotImplementedError(
                "get_special_tokens_mask needs already_has_special_tokens=True; to get the mask while encoding, "
                "call the tokenizer with return_special_tokens_mask=True."
            )
        if token_ids_1 is not None:
            raise ValueError("Pass one sequence when already_has_special_tokens=True.")
        special = set(self.all_special_ids)
        return [1 if int(t) in special else 0 for t in _to_py(token_ids_0)]

    # ------------------------------------------------------------------ encoding
    def _strategies(self, padding, truncation, max_length, pad_to_multiple_of, verbose):
        if max_length is not None and padding is False and truncation is None:
            truncation = "longest_first"
        padding_strategy = resolve_padding(padding)
        truncation_strategy = resolve_truncation(truncation)
        if padding is True and verbose and max_length is not None and truncation_strategy == "do_not_truncate":
            logger.warning("`max_length` is ignored when padding=True and there is no truncation; use padding='max_length'.")
        if max_length is None:
            if padding_strategy == "max_length":
                if self.model_max_length > LARGE_INTEGER:
                    padding_strategy = "do_not_pad"
                else:
                    max_length = self.model_max_length
            if truncation_strategy != "do_not_truncate":
                if self.model_max_length > LARGE_INTEGER:
                    truncation_strategy = "do_not_truncate"
                else:
                    max_length = self.model_max_length
        if padding_strategy != "do_not_pad":
            pad_id = self.pad_token_id if self.pad_token is not None else None
            if pad_id is None or pad_id < 0:
                raise ValueError(
                    "Asking to pad but the tokenizer has no padding token. Set one, e.g. "
                    "`tokenizer.pad_token = tokenizer.eos_token`, or add a new one with "
                    "`tokenizer.add_special_tokens({'pad_token': '[PAD]'})` (and resize the model's embeddings)."
                )
        if (
            truncation_strategy != "do_not_truncate"
            and padding_strategy != "do_not_pad"
            and pad_to_multiple_of is not None
            and max_length is not None
            and max_length % pad_to_multiple_of != 0
        ):
            raise ValueError(
                f"Truncation and padding are both on, but the truncation length ({max_length}) is not a multiple of "
                f"pad_to_multiple_of ({pad_to_multiple_of}); choose a max_length that is."
            )
        return padding_strategy, truncation_strategy, max_length

    def _configure_backend(self, padding_strategy, truncation_strategy, max_length, stride, pad_to_multiple_of, padding_side):
        tk = self._tokenizer
        if truncation_strategy == "do_not_truncate":
            if tk.truncation is not None:
                tk.no_truncation()
        else:
            target = {"max_length": max_length, "stride": stride, "strategy": truncation_strategy, "direction": self.truncation_side}
            current = tk.truncation
            if current is None or any(current.get(k) != v for k, v in target.items()):
                tk.enable_truncation(**target)
        if padding_strategy == "do_not_pad":
            if tk.padding is not None:
                tk.no_padding()
        else:
            side = padding_side if padding_side is not None else self.padding_side
            if side not in ("left", "right"):
                raise ValueError(f"padding_side must be 'left' or 'right', got {side!r}.")
            target = {
                "length": max_length if padding_strategy == "max_length" else None,
                "direction": side,
                "pad_id": self.pad_token_id,
                "pad_token": self.pad_token,
                "pad_type_id": self.pad_token_type_id,
                "pad_to_multiple_of": pad_to_multiple_of,
            }
            if tk.padding != target:
                tk.enable_padding(**target)

    def __call__(
        self,
        text=None,
        text_pair=None,
        text_target=None,
        text_pair_target=None,
        add_special_tokens: bool = True,
        padding: Union[bool, str] = False,
        truncation: Union[bool, str, None] = None,
        max_length: Optional[int] = None,
        stride: int = 0,
        is_split_into_words: bool = False,
        pad_to_multiple_of: Optional[int] = None,
        padding_side: Optional[str] = None,
        return_tensors: Optional[str] = None,
        return_token_type_ids: Optional[bool] = None,
        return_attention_mask: Optional[bool] = None,
        return_overflowing_tokens: bool = False,
        return_special_tokens_mask: bool = False,
        return_offsets_mapping: bool = False,
        return_length: bool = False,
        verbose: bool = True,
        split_special_tokens: Optional[bool] = None,
        **kwargs,
    ) -> BatchEncoding:
        """Tokenize one text, a pair, a batch of texts or a batch of pairs (``text`` + ``text_pair``), or pre-split
        words with ``is_split_into_words=True``. Returns a BatchEncoding of ``input_ids`` [B, T], ``attention_mask``
        and, per ``model_input_names``, ``token_type_ids`` (lists, or arrays with ``return_tensors='np'|'jax'``).
        ``text_target`` encodes labels (returned as ``labels`` when ``text`` is given too)."""
        max_target_length = kwargs.pop("max_target_length", None)
        tokenizer_kwargs = kwargs.pop("tokenizer_kwargs", None)
        if tokenizer_kwargs:
            kwargs.update(tokenizer_kwargs)
        if kwargs:
            logger.warning("Ignoring unknown tokenizer arguments: %s", sorted(kwargs))
        if text is None and text_target is None:
            raise ValueError("Pass the text to tokenize: tokenizer(text) or tokenizer(text_target=...).")
        padding_strategy, truncation_strategy, max_length = self._strategies(
            padding, truncation, max_length, pad_to_multiple_of, verbose
        )
        common = dict(
            add_special_tokens=add_special_tokens,
            padding_strategy=padding_strategy,
            truncation_strategy=truncation_strategy,
            stride=stride,
            is_split_into_words=is_split_into_words,
            pad_to_multiple_of=pad_to_multiple_of,
            padding_side=padding_side,
            return_tensors=return_tensors,
            return_token_type_ids=return_token_type_ids,
            return_attention_mask=return_attention_mask,
            return_overflowing_tokens=return_overflowing_tokens,
            return_special_tokens_mask=return_special_tokens_mask,
            return_offsets_mapping=return_offsets_mapping,
            return_length=return_length,
            verbose=verbose,
            split_special_tokens=split_special_tokens,
        )
        encodings = None
        if text is not None:
            encodings = self._encode(text, text_pair, max_length=max_length, **common)
        if text_target is None:
            return encodings
        targets = self._encode(
            text_target, text_pair_target, max_length=max_target_length if max_target_length is not None else max_length, **common
        )
        if encodings is None:
            return targets
        encodings["labels"] = targets["input_ids"]
        return encodings

    def _encode(
        self,
        text,
        text_pair,
        *,
        add_special_tokens,
        padding_strategy,
        truncation_strategy,
        max_length,
        stride,
        is_split_into_words,
        pad_to_multiple_of,
        padding_side,
        return_tensors,
        return_token_type_ids,
        return_attention_mask,
        return_overflowing_tokens,
        return_special_tokens_mask,
        return_offsets_mapping,
        return_length,
        verbose,
        split_special_tokens,
    ) -> BatchEncoding:
        return_tensors = check_tensor_type(return_tensors)
        if is_split_into_words:
            is_batched = isinstance(text, (list, tuple)) and len(text) > 0 and isinstance(text[0], (list, tuple))
            ok = _is_words(text) or (is_batched and all(_is_words(t) for t in text))
        else:
            is_batched = isinstance(text, (list, tuple))
            ok = _is_text(text) or (is_batched and all(_is_text(t) or (isinstance(t, (list, tuple)) and len(t) == 2 and all(map(_is_text, t))) for t in text))
        if not ok:
            raise _input_error("text", text)
        if text_pair is not None:
            pair_ok = (
                (_is_words(text_pair) or (is_batched and all(_is_words(t) for t in text_pair)))
                if is_split_into_words
                else (_is_text(text_pair) or (is_batched and isinstance(text_pair, (list, tuple)) and all(map(_is_text, text_pair))))
            )
            if is_batched and isinstance(text_pair, str):
                raise TokenizerInputError("When `text` is a batch, `text_pair` must be a list of the same length, not a str.")
            if not pair_ok:
                raise _input_error("text_pair", text_pair)
        if is_batched:
            if text_pair is not None and len(text) != len(text_pair):
                raise ValueError(f"`text` has {len(text)} items but `text_pair` has {len(text_pair)}; they must match.")
            batch = list(zip(text, text_pair)) if text_pair is not None else text
        else:
            batch = [(text, text_pair)] if text_pair else [text]

        if return_token_type_ids is None:
            return_token_type_ids = "token_type_ids" in self.model_input_names
        if return_attention_mask is None:
            return_attention_mask = "attention_mask" in self.model_input_names

        if len(batch) == 0:
            keys = ["input_ids"]
            keys += ["token_type_ids"] if return_token_type_ids else []
            keys += ["attention_mask"] if return_attention_mask else []
            keys += ["special_tokens_mask"] if return_special_tokens_mask else []
            keys += ["offset_mapping"] if return_offsets_mapping else []
            keys += ["length"] if return_length else []
            keys += ["overflow_to_sample_mapping"] if return_overflowing_tokens else []
            return BatchEncoding({k: [] for k in keys}, [], tensor_type=return_tensors)

        self._configure_backend(padding_strategy, truncation_strategy, max_length, stride, pad_to_multiple_of, padding_side)
        if split_special_tokens is None:
            split_special_tokens = self.split_special_tokens
        if self._tokenizer.encode_special_tokens != split_special_tokens:
            self._tokenizer.encode_special_tokens = split_special_tokens

        try:
            encodings = self._tokenizer.encode_batch(batch, add_special_tokens=add_special_tokens, is_pretokenized=is_split_into_words)
        except Exception as err:
            if "Truncation error" not in str(err) or isinstance(err, ValueError):
                raise
            raise ValueError(
                f"{err}. With truncation={truncation_strategy!r} and max_length={max_length}, the text being cut "
                "cannot shrink enough (or is missing): raise max_length, or use truncation='longest_first'."
            ) from err

        if return_overflowing_tokens:
            rows = []
            mapping = []
            for i, enc in enumerate(encodings):
                rows.append(enc)
                rows.extend(enc.overflowing)
                mapping.extend([i] * (1 + len(enc.overflowing)))
        else:
            rows = encodings

        data: dict[str, Any] = {"input_ids": [e.ids for e in rows]}
        if return_token_type_ids:
            data["token_type_ids"] = [e.type_ids for e in rows]
        if return_attention_mask:
            data["attention_mask"] = [e.attention_mask for e in rows]
        if return_special_tokens_mask:
            data["special_tokens_mask"] = [e.special_tokens_mask for e in rows]
        if return_offsets_mapping:
            data["offset_mapping"] = [e.offsets for e in rows]
        if return_length:
            data["length"] = [len(e) for e in rows]
        if return_overflowing_tokens:
            data["overflow_to_sample_mapping"] = mapping

        if verbose and max_length is None and not self._warned_too_long and self.model_max_length != 0:
            longest = max(len(e) for e in rows)
            if longest > self.model_max_length:
                logger.warning(
                    "Token indices sequence length is longer than the specified maximum sequence length for this "
                    "model (%d > %d). Running this sequence through the model will result in indexing errors; pass "
                    "truncation=True to cut it.", longest, self.model_max_length,
                )
                self._warned_too_long = True

        if return_tensors == "np" and padding_strategy != "do_not_pad":
            lengths = sorted({len(e) for e in rows})
            if len(lengths) > 1:  # padding="max_length" without truncation: longer rows keep their length
                raise ValueError(
                    f"Unable to create [batch, length] arrays: with padding={padding_strategy!r} and max_length="
                    f"{max_length} but no truncation, rows longer than max_length keep their length (lengths "
                    f"{lengths}). Pass truncation=True to cut them, or a larger max_length, or padding=True."
                )
            # rectangular by construction: build int64 arrays straight from the lists
            for key in ("input_ids", "token_type_ids", "attention_mask", "special_tokens_mask"):
                if key in data:
                    data[key] = np.array(data[key], dtype=np.int64)

        out = BatchEncoding(data, rows, tensor_type=return_tensors)
        if not is_batched and return_tensors is None and not return_overflowing_tokens:
            out = BatchEncoding(
                {k: (v[0] if len(v) > 0 and isinstance(v[0], list) else v) for k, v in out.items()}, out.encodings
            )
        return out

    def encode(
        self,
        text,
        text_pair=None,
        add_special_tokens: bool = True,
        padding: Union[bool, str] = False,
        truncation: Union[bool, str, None] = None,
        max_length: Optional[int] = None,
        stride: int = 0,
        padding_side: Optional[str] = None,
        return_tensors: Optional[str] = None,
        **kwargs,
    ):
        """The ``input_ids`` of one text (or pair): ``tokenizer(text, ...)["input_ids"]``."""
        return self(
            text, text_pair, add_special_tokens=add_special_tokens, padding=padding, truncation=truncation,
            max_length=max_length, stride=stride, padding_side=padding_side, return_tensors=return_tensors, **kwargs,
        )["input_ids"]

    def encode_plus(self, text, text_pair=None, **kwargs) -> BatchEncoding:
        """Transformers 4's name for calling the tokenizer on one text (or pair)."""
        return self(text, text_pair, **kwargs)

    def batch_encode_plus(self, batch_text_or_text_pairs, **kwargs) -> BatchEncoding:
        """Transformers 4's name for calling the tokenizer on a batch of texts or (text, pair) tuples."""
        if isinstance(batch_text_or_text_pairs, str):
            raise TokenizerInputError("batch_encode_plus takes a list of texts; call the tokenizer on a single str.")
        return self(list(batch_text_or_text_pairs), **kwargs)

    def tokenize(self, text: str, pair: Optional[str] = None, add_special_tokens: bool = False, **kwargs) -> list[str]:
        """The token strings of ``text`` (and ``pair``), without special tokens unless asked."""
        return self(text, pair, add_special_tokens=add_special_tokens, **kwargs).tokens()

    def pad(
        self,
        encoded_inputs,
        padding: Union[bool, str] = True,
        max_length: Optional[int] = None,
        pad_to_multiple_of: Optional[int] = None,
        padding_side: Optional[str] = None,
        return_attention_mask: Optional[bool] = None,
        return_tensors: Optional[str] = None,
        verbose: bool = True,
    ) -> BatchEncoding:
        """Pad already-encoded inputs (a dict of lists, or a list of dicts as a data collator gets them) with
        ``pad_token_id`` (``attention_mask`` 0, ``token_type_ids`` ``pad_token_type_id``, ``special_tokens_mask`` 1)."""
        return_tensors = check_tensor_type(return_tensors)
        if isinstance(encoded_inputs, (list, tuple)) and encoded_inputs and isinstance(encoded_inputs[0], dict):
            encoded_inputs = {k: [ex[k] for ex in encoded_inputs] for k in encoded_inputs[0]}
        encoded_inputs = dict(encoded_inputs)
        main = self.model_input_names[0]
        first = encoded_inputs.get(main)
        while isinstance(first, (list, tuple)) and first:
            first = first[0]
        if return_tensors is None and isinstance(first, np.ndarray) or hasattr(encoded_inputs.get(main), "ndim"):
            return_tensors = return_tensors or "np"  # arrays in, arrays out (as Transformers does)
        encoded_inputs = {k: _to_py(v) for k, v in encoded_inputs.items()}
        if main not in encoded_inputs:
            raise ValueError(f"pad() needs `{main}` among the inputs; got {sorted(encoded_inputs)}.")
        required = encoded_inputs[main]
        if required is None or (isinstance(required, list) and len(required) == 0):
            if return_attention_mask:
                encoded_inputs["attention_mask"] = []
            return BatchEncoding(encoded_inputs, tensor_type=None)
        if return_attention_mask is None:
            return_attention_mask = "attention_mask" in self.model_input_names
        padding_strategy, _, max_length = self._strategies(padding, False, max_length, None, verbose)
        single = not isinstance(required[0], (list, tuple))
        if single:
            encoded_inputs = {k: [v] for k, v in encoded_inputs.items()}
        rows = encoded_inputs[main]
        if padding_strategy == "longest":
            max_length = max(len(r) for r in rows)
        if max_length is not None and pad_to_multiple_of is not None and max_length % pad_to_multiple_of != 0:
            max_length = (max_length // pad_to_multiple_of + 1) * pad_to_multiple_of
        side = padding_side if padding_side is not None else self.padding_side
        if side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {side!r}.")
        if return_attention_mask and "attention_mask" not in encoded_inputs:
            encoded_inputs["attention_mask"] = [[1] * len(r) for r in rows]
        fills = {main: self.pad_token_id, "attention_mask": 0, "token_type_ids": self.pad_token_type_id, "special_tokens_mask": 1}
        out = dict(encoded_inputs)
        if padding_strategy != "do_not_pad":
            for key, fill in fills.items():
                if key not in out or (key == "attention_mask" and not return_attention_mask):
                    continue
                padded = []
                for r in out[key]:
                    n = max_length - len(r)
                    if n <= 0:
                        padded.append(list(r))
                    elif side == "right":
                        padded.append(list(r) + [fill] * n)
                    else:
                        padded.append([fill] * n + list(r))
                out[key] = padded
        if single and return_tensors is None:
            out = {k: v[0] for k, v in out.items()}
        return BatchEncoding(out, tensor_type=return_tensors)

    # ------------------------------------------------------------------ chat
    def apply_chat_template(
        self,
        conversation,
        tools: Optional[list] = None,
        documents: Optional[list] = None,
        chat_template: Optional[str] = None,
        add_generation_prompt: bool = False,
        continue_final_message: bool = False,
        tokenize: bool = True,
        padding: Union[bool, str] = False,
        truncation: bool = False,
        max_length: Optional[int] = None,
        return_tensors: Optional[str] = None,
        return_dict: bool = True,
        tokenizer_kwargs: Optional[dict] = None,
        **kwargs,
    ):
        """Render a conversation (list of ``{"role", "content"}`` dicts, or a batch of them) with the chat template,
        then tokenize it without adding special tokens (the template writes them). Returns the text with
        ``tokenize=False``, a BatchEncoding with ``return_dict=True`` (the default), else the ids."""
        from .chat import render, select_template

        if kwargs.pop("return_assistant_tokens_mask", False) or kwargs.pop("sanitize_control_tokens", False):
            raise NotImplementedError("return_assistant_tokens_mask and sanitize_control_tokens are not supported yet.")
        template = select_template(self.chat_template, chat_template, tools)
        if isinstance(conversation, (list, tuple)) and len(conversation) == 0:
            raise ValueError("Cannot apply a chat template to an empty conversation; pass at least one message.")
        is_batched = isinstance(conversation[0], (list, tuple))
        conversations = conversation if is_batched else [conversation]
        conversations = [[{k: v for k, v in m.items() if v is not None} for m in chat] for chat in conversations]
        if continue_final_message and add_generation_prompt:
            raise ValueError(
                "continue_final_message and add_generation_prompt exclude each other: continue the last message, or "
                "open a new assistant turn."
            )
        texts = render(
            template, conversations, tools=tools, documents=documents, add_generation_prompt=add_generation_prompt,
            continue_final_message=continue_final_message, source=f"the chat template of {self.name_or_path!r}",
            **{**self.special_tokens_map, **kwargs},
        )
        text = texts if is_batched else texts[0]
        if not tokenize:
            return text
        out = self(
            text, padding=padding, truncation=truncation, max_length=max_length, add_special_tokens=False,
            return_tensors=return_tensors, **(tokenizer_kwargs or {}),
        )
        return out if return_dict else out["input_ids"]

    # ------------------------------------------------------------------ decoding
    def decode(self, token_ids, skip_special_tokens: bool = False, clean_up_tokenization_spaces: Optional[bool] = None, **kwargs):
        """Ids back to text. A batch (list of lists or 2-D array) gives a list of strings."""
        token_ids = _to_py(token_ids)
        if isinstance(token_ids, dict):
            token_ids = token_ids["input_ids"]
        if isinstance(token_ids, (list, tuple)) and token_ids and isinstance(token_ids[0], (list, tuple)):
            texts = self._tokenizer.decode_batch([list(map(int, s)) for s in token_ids], skip_special_tokens=skip_special_tokens)
            return [self._clean(t, clean_up_tokenization_spaces) for t in texts]
        if isinstance(token_ids, int):
            token_ids = [token_ids]
        text = self._tokenizer.decode(_as_token_ids(token_ids), skip_special_tokens=skip_special_tokens)
        return self._clean(text, clean_up_tokenization_spaces)

    def batch_decode(self, sequences, skip_special_tokens: bool = False, clean_up_tokenization_spaces: Optional[bool] = None, **kwargs) -> list[str]:
        """A batch of id sequences back to texts."""
        sequences = _to_py(sequences)
        if isinstance(sequences, (list, tuple)) and len(sequences) == 0:
            return []
        result = self.decode(sequences, skip_special_tokens=skip_special_tokens, clean_up_tokenization_spaces=clean_up_tokenization_spaces)
        return [result] if isinstance(result, str) else result

    def _clean(self, text: str, clean_up: Optional[bool]) -> str:
        clean_up = self.clean_up_tokenization_spaces if clean_up is None else clean_up
        if not clean_up:
            return text
        if type(self._tokenizer.model).__name__ == "BPE" and not getattr(
            self, "clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output", False
        ):
            return text  # Transformers skips this WordPiece-era cleanup for BPE models: it would remove real spaces
        return self.clean_up_tokenization(text)

    @staticmethod
    def clean_up_tokenization(text: str) -> str:
        """Remove the spaces a WordPiece decode leaves before punctuation and in English contractions."""
        return (
            text.replace(" .", ".").replace(" ?", "?").replace(" !", "!").replace(" ,", ",").replace(" ' ", "'")
            .replace(" n't", "n't").replace(" 'm", "'m").replace(" 's", "'s").replace(" 've", "'ve").replace(" 're", "'re")
        )

    # ------------------------------------------------------------------ loading and saving
    @classmethod
    def from_pretrained(cls, name_or_path: Union[str, os.PathLike], *init_inputs, **kwargs) -> "PreTrainedTokenizer":
        """Load from a folder or hub id: tokenizer.json when present, else the legacy vocabulary files
        (vocab.txt, vocab.json + merges.txt, spiece.model / tokenizer.model), plus tokenizer_config.json,
        special_tokens_map.json and added_tokens.json. Keyword arguments override tokenizer_config.json."""
        from .loading import load_tokenizer

        return load_tokenizer(name_or_path, cls=cls, **kwargs)

    def _config_for_save(self) -> dict:
        config = {k: v for k, v in copy.deepcopy(self.init_kwargs).items() if k not in _NOT_SAVED and not k.startswith("_")}
        config.pop("add_bos_token", None)
        config.pop("add_eos_token", None)
        for key in list(config):
            if key in self.SPECIAL_TOKENS_ATTRIBUTES or key in ("extra_special_tokens", "model_specific_special_tokens"):
                config.pop(key)
        config["model_max_length"] = self.model_max_length
        config["padding_side"] = self.padding_side
        config["truncation_side"] = self.truncation_side
        config["clean_up_tokenization_spaces"] = self.clean_up_tokenization_spaces
        config["split_special_tokens"] = self.split_special_tokens
        if list(self.model_input_names) != list(type(self).model_input_names):
            config["model_input_names"] = list(self.model_input_names)
        for key, value in self._special_tokens_map.items():
            if value is not None:
                config[key] = str(value)
        if self._extra_special_tokens:
            # the Transformers-4 key: Transformers 5 reads it as extra_special_tokens, while 4 expects a dict there
            config["additional_special_tokens"] = [str(t) for t in self._extra_special_tokens]
        if self.chat_template is not None:
            config["chat_template"] = self.chat_template
        config["tokenizer_class"] = self.saved_class_name or "PreTrainedTokenizerFast"
        for key, value in list(config.items()):
            if isinstance(value, AddedToken):
                config[key] = str(value)
            try:
                json.dumps(config[key])
            except TypeError:
                config.pop(key)
        return config

    def save_pretrained(self, save_directory: Union[str, os.PathLike], legacy_format: Optional[bool] = None,
                        filename_prefix: Optional[str] = None, **kwargs) -> tuple[str, ...]:
        """Write tokenizer.json, tokenizer_config.json and special_tokens_map.json to ``save_directory``, in the
        layout ``transformers.AutoTokenizer.from_pretrained`` (and fxformers) load back to the same tokenizer."""
        if legacy_format:
            raise ValueError("fxformers saves the tokenizer.json format only; pass legacy_format=None or False.")
        save_directory = Path(save_directory)
        if save_directory.is_file():
            raise ValueError(f"{save_directory} is a file; save_pretrained needs a folder.")
        save_directory.mkdir(parents=True, exist_ok=True)
        prefix = f"{filename_prefix}-" if filename_prefix else ""
        config_file = save_directory / f"{prefix}{TOKENIZER_CONFIG_FILE}"
        config_text = json.dumps(self._config_for_save(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        stm_file = save_directory / f"{prefix}{SPECIAL_TOKENS_MAP_FILE}"
        stm: dict[str, Any] = dict(self.special_tokens_map)
        if self._extra_special_tokens:
            stm["additional_special_tokens"] = [str(t) for t in self._extra_special_tokens]
        stm_text = json.dumps(stm, indent=2, sort_keys=True, ensure_ascii=False) + "\n"

        # the backend as loaded: the per-call padding/truncation of the last call is not part of the tokenizer
        tk = self._tokenizer
        current_trunc, current_pad = tk.truncation, tk.padding
        if self._saved_truncation is not None:
            tk.enable_truncation(**{k: v for k, v in self._saved_truncation.items()})
        else:
            tk.no_truncation()
        if self._saved_padding is not None:
            tk.enable_padding(**{k: v for k, v in self._saved_padding.items()})
        else:
            tk.no_padding()
        tokenizer_file = save_directory / f"{prefix}{TOKENIZER_FILE}"
        try:
            tokenizer_text = tk.to_str(pretty=True)
        finally:
            tk.no_truncation() if current_trunc is None else tk.enable_truncation(**current_trunc)
            tk.no_padding() if current_pad is None else tk.enable_padding(**current_pad)
        # All files written in full before any replaces the old one (tokenizer_config.json renamed last), one save
        # at a time per folder: a full disk part-way leaves the previous tokenizer as it was.
        with folder_lock(save_directory):
            atomic_write_texts({tokenizer_file: tokenizer_text, stm_file: stm_text, config_file: config_text})
        return (str(config_file), str(stm_file), str(tokenizer_file))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name_or_path={self.name_or_path!r}, vocab_size={self.vocab_size}, "
            f"model_max_length={self.model_max_length}, padding_side={self.padding_side!r}, "
            f"truncation_side={self.truncation_side!r}, special_tokens={self.special_tokens_map}, "
            f"added_tokens={len(self.added_tokens_decoder)})"
        )


PreTrainedTokenizerFast = PreTrainedTokenizer
