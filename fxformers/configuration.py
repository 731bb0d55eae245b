"""PretrainedConfig: the keys of a Hugging Face ``config.json`` as attributes.

Every key a checkpoint's ``config.json`` carries becomes an attribute, known or not, so loading is near-identity
and saving writes back what was read. Architecture configs declare their Transformers defaults in ``defaults`` and
their aliases in ``attribute_map`` (standard name -> the architecture's own name, e.g. GPT-2's ``n_embd``).
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
from pathlib import Path
from typing import Any, ClassVar, Optional

logger = logging.getLogger(__name__)

CONFIG_NAME = "config.json"

# Fields every Transformers config has, with Transformers' defaults.
_COMMON_DEFAULTS: dict[str, Any] = {
    "architectures": None,
    "problem_type": None,
    "pad_token_id": None,
    "bos_token_id": None,
    "eos_token_id": None,
    "sep_token_id": None,
    "decoder_start_token_id": None,
    "tie_word_embeddings": True,
    "is_encoder_decoder": False,
    "is_decoder": False,
    "add_cross_attention": False,
    "chunk_size_feed_forward": 0,
    "output_hidden_states": False,
    "output_attentions": False,
    "return_dict": True,
    "dtype": None,
    "task_specific_params": None,
    "prefix": None,
    "label2id": None,
}

# Keywords Transformers' ``from_pretrained`` takes for PyTorch placement, kernels, quantization, remote code or
# download control: accepted so that a PyTorch script runs unchanged, ignored (JAX places arrays itself; only
# safetensors/bin/msgpack weights are read), logged once at info level, and never written into the config.
TORCH_ONLY_KWARGS = frozenset({
    "device_map", "low_cpu_mem_usage", "attn_implementation", "trust_remote_code", "max_memory", "offload_folder",
    "offload_state_dict", "offload_buffers", "use_safetensors", "weights_only", "force_download", "resume_download",
    "proxies", "mirror", "_fast_init", "from_tf", "use_kernels", "kernel_config", "allow_all_kernels", "tp_plan",
    "tp_size", "device_mesh", "distributed_config", "key_mapping", "output_loading_info", "disable_mmap",
    "fusion_config", "experts_implementation", "_from_auto", "_from_pipeline", "_commit_hash", "tqdm_class",
    "code_revision", "adapter_kwargs", "adapter_name",
})


def drop_torch_only_kwargs(owner: str, kwargs: dict) -> None:
    """Remove PyTorch-only loading keywords from ``kwargs`` (in place), with one info line naming them."""
    ignored = sorted(k for k in kwargs if k in TORCH_ONLY_KWARGS)
    for key in ignored:
        kwargs.pop(key)
    if ignored:
        logger.info("%s.from_pretrained ignores the PyTorch-only arguments %s (JAX places and runs the weights "
                    "itself).", owner, ignored)


# Private fields that change the computation (so equality, hashing and jit caches see them) but are never written to
# config.json: ``_gradient_checkpointing`` (see fxformers.ops.remat).
_RUNTIME_FIELDS = ("_gradient_checkpointing",)

_PROBLEM_TYPES = ("regression", "single_label_classification", "multi_label_classification")

# Size fields a config.json can carry (each architecture's own spelling), with the range a real model stays in.
# Checked before anything is built, so a hostile config cannot make the loader trace a billion layers.
MAX_LAYERS = 4096
MAX_WIDTH = 1 << 20
MAX_VOCAB = 1 << 26
MAX_LABELS = 1 << 20
_LAYER_FIELDS = ("num_hidden_layers", "num_layers", "num_decoder_layers", "n_layer", "n_layers", "encoder_layers",
                 "decoder_layers", "max_window_layers")
_WIDTH_FIELDS = ("hidden_size", "intermediate_size", "n_embd", "n_inner", "d_model", "d_ff", "d_kv", "dim",
                 "hidden_dim", "head_dim", "encoder_ffn_dim", "decoder_ffn_dim", "num_attention_heads",
                 "num_key_value_heads", "n_head", "n_heads", "num_heads", "encoder_attention_heads",
                 "decoder_attention_heads")
_LENGTH_FIELDS = ("vocab_size", "max_position_embeddings", "n_positions", "n_ctx", "type_vocab_size",
                  "relative_attention_num_buckets", "relative_attention_max_distance", "sliding_window")
_SIZE_LIMITS = {
    **{name: (0, MAX_LAYERS) for name in _LAYER_FIELDS},
    **{name: (1, MAX_WIDTH) for name in _WIDTH_FIELDS},
    **{name: (0, MAX_VOCAB) for name in _LENGTH_FIELDS},
}
_TOKEN_ID_FIELDS = ("pad_token_id", "bos_token_id", "eos_token_id", "sep_token_id", "decoder_start_token_id",
                    "forced_bos_token_id", "forced_eos_token_id")
# (not "_prob" alone: norm_topk_prob is a boolean)
_FLOAT_SUFFIXES = ("dropout", "dropout_prob", "pdrop", "_eps", "epsilon", "initializer_range", "init_std")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_config_values(values: dict[str, Any], source: str) -> None:
    """Refuse config values of the wrong type or outside any real model's range, with a ValueError naming
    ``source`` (the config file or class) and the field. Unknown fields pass: configs carry many."""
    for name, value in values.items():
        if value is None or not isinstance(name, str):
            continue
        limits = _SIZE_LIMITS.get(name)
        if limits is not None:
            low, high = limits
            if not _is_int(value) or not low <= value <= high:
                raise ValueError(
                    f"{source}: {name}={_short(value)} is not a valid size: it must be an integer from {low} to "
                    f"{high}. Fix the config (the value must match the checkpoint's weights)."
                )
        elif name in _TOKEN_ID_FIELDS:
            ids = value if isinstance(value, list) else [value]
            if not ids or len(ids) > 1024 or not all(_is_int(i) and abs(i) < MAX_VOCAB for i in ids):
                raise ValueError(f"{source}: {name}={_short(value)} must be a token id (an integer) or a list of them.")
        elif name.endswith(_FLOAT_SUFFIXES):
            if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)):
                raise ValueError(f"{source}: {name}={_short(value)} must be a finite number.")
        elif name == "num_labels":
            if not _is_int(value) or not 0 <= value <= MAX_LABELS:
                raise ValueError(f"{source}: num_labels={_short(value)} must be an integer from 0 to {MAX_LABELS}.")
        elif name == "id2label":
            if not isinstance(value, dict) or len(value) > MAX_LABELS or not all(
                _is_int(k) or (isinstance(k, str) and k.strip().lstrip("-").isdigit()) for k in value
            ):
                raise ValueError(f"{source}: id2label must map label ids (integers) to names, got {_short(value)}.")


def _short(value: Any) -> str:
    text = repr(value) if isinstance(value, (int, float, str, bool)) else f"a {type(value).__name__}"
    return text if len(text) <= 80 else text[:77] + "..."


class PretrainedConfig:
    """Base configuration. Subclasses set ``model_type``, ``defaults`` and optionally ``attribute_map``."""

    model_type: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}
    attribute_map: ClassVar[dict[str, str]] = {}

    def __init__(self, **kwargs: Any):
        kwargs = {self.attribute_map.get(k, k): v for k, v in kwargs.items()}
        if "torch_dtype" in kwargs:  # Transformers 4 spelling; `dtype` wins when both are present
            legacy = kwargs.pop("torch_dtype")
            kwargs.setdefault("dtype", legacy)
        kwargs.pop("model_type", None)
        check_config_values(kwargs, type(self).__name__)
        num_labels = kwargs.pop("num_labels", None)
        id2label = kwargs.pop("id2label", None)
        values = {**_COMMON_DEFAULTS, **copy.deepcopy(self.defaults), **kwargs}
        for key, value in values.items():
            setattr(self, key, value)
        if id2label is not None:
            if num_labels is not None and len(id2label) != num_labels:
                logger.warning("num_labels=%s does not match id2label of length %d; id2label wins.", num_labels, len(id2label))
            self.id2label = {int(k): v for k, v in id2label.items()}
            if self.label2id is None:
                self.label2id = {v: k for k, v in self.id2label.items()}
            else:
                self.label2id = {k: int(v) for k, v in self.label2id.items()}
        else:
            self.id2label = None
            self.num_labels = num_labels if num_labels is not None else 2
        if self.problem_type is not None and self.problem_type not in _PROBLEM_TYPES:
            raise ValueError(f"problem_type must be one of {_PROBLEM_TYPES}, got {self.problem_type!r}.")
        self.validate()

    def validate(self) -> None:
        """Check field values; architectures override to add their own checks."""

    # -- aliases -------------------------------------------------------------------------------------------------
    def __setattr__(self, name: str, value: Any) -> None:
        name = type(self).attribute_map.get(name, name)
        super().__setattr__(name, value)
        if not name.startswith("_") or name in _RUNTIME_FIELDS:
            super().__setattr__("_hash", None)  # fields changed: recompute the content hash on next use

    def __getattr__(self, name: str) -> Any:  # only called when normal lookup fails
        mapped = type(self).attribute_map.get(name)
        if mapped is not None:
            return getattr(self, mapped)
        raise AttributeError(f"{type(self).__name__} has no field {name!r}")

    # -- labels --------------------------------------------------------------------------------------------------
    @property
    def num_labels(self) -> int:
        return len(self.id2label) if self.id2label is not None else 0

    @num_labels.setter
    def num_labels(self, num_labels: int) -> None:
        if self.__dict__.get("id2label") is None or len(self.id2label) != num_labels:
            self.id2label = {i: f"LABEL_{i}" for i in range(num_labels)}
            self.label2id = {v: k for k, v in self.id2label.items()}

    # -- (de)serialisation ---------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out = {k: copy.deepcopy(v) for k, v in self.__dict__.items() if not k.startswith("_")}
        if out.get("id2label") is not None:
            out["id2label"] = {str(k): v for k, v in out["id2label"].items()}
        if out.get("dtype") is not None and not isinstance(out["dtype"], str):  # torch.bfloat16, jnp.float16 ...
            out["dtype"] = str(getattr(out["dtype"], "__name__", out["dtype"])).removeprefix("torch.")
        out["model_type"] = self.model_type
        return out

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any], **overrides: Any) -> "PretrainedConfig":
        config = cls(**config_dict)
        config.update(overrides)
        return config

    def update(self, overrides: dict[str, Any]) -> None:
        """Set fields by name, as ``from_pretrained(..., **overrides)`` does. ``num_labels`` rebuilds the labels."""
        check_config_values({type(self).attribute_map.get(k, k): v for k, v in overrides.items()}, type(self).__name__)
        for key, value in overrides.items():
            if key == "num_labels":
                self.num_labels = value
            elif key == "id2label":
                self.id2label = {int(k): v for k, v in value.items()}
                self.label2id = {v: k for k, v in self.id2label.items()}
            else:
                setattr(self, key, value)
        self.validate()

    def save_pretrained(self, save_directory: str | os.PathLike) -> None:
        from .checkpoints.atomic import atomic_write_text

        folder = Path(save_directory)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / CONFIG_NAME, self.to_json_string())

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike,
        *,
        cache_dir: Optional[str] = None,
        revision: Optional[str] = None,
        token: Optional[str] = None,
        local_files_only: bool = False,
        **overrides: Any,
    ) -> "PretrainedConfig":
        drop_torch_only_kwargs(cls.__name__, overrides)
        config_dict = load_config_dict(
            name_or_path, cache_dir=cache_dir, revision=revision, token=token, local_files_only=local_files_only
        )
        if cls.model_type and config_dict.get("model_type") not in (None, cls.model_type):
            logger.warning("Loading a %r config into %s.", config_dict.get("model_type"), cls.__name__)
        return cls.from_dict(config_dict, **overrides)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PretrainedConfig) and self.to_dict() == other.to_dict() and all(
            self.__dict__.get(k) == other.__dict__.get(k) for k in _RUNTIME_FIELDS)

    def __repr__(self) -> str:
        return f"{type(self).__name__} {self.to_json_string()}"

    # Configs are static arguments of jitted functions (inside linen modules): hash by content, cached because it
    # is taken on every model call. Setting a field resets the cache; mutate nested dicts by reassigning them.
    def __hash__(self) -> int:
        cached = self.__dict__.get("_hash")
        if cached is None:
            public = {k: v for k, v in self.__dict__.items() if not k.startswith("_") or k in _RUNTIME_FIELDS}
            cached = hash(json.dumps(public, sort_keys=True, default=str))
            super().__setattr__("_hash", cached)
        return cached


def load_config_dict(name_or_path, **hub_kwargs) -> dict[str, Any]:
    """Read ``config.json`` of a folder or hub model, with an error naming the file when it is unreadable."""
    from .hub import resolve_file

    path = resolve_file(name_or_path, CONFIG_NAME, **hub_kwargs)
    if path is None:
        raise FileNotFoundError(
            f"{name_or_path!r} has no {CONFIG_NAME}. A model folder needs the config.json that save_pretrained writes."
        )
    try:
        if Path(path).stat().st_size > _MAX_CONFIG_BYTES:
            raise ValueError(f"it is larger than {_MAX_CONFIG_BYTES} bytes")
        config = json.loads(Path(path).read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as err:  # JSONDecodeError is a ValueError
        raise ValueError(f"{path} is not valid JSON ({str(err)[:200]}); re-save the config or fix the file.") from err
    if not isinstance(config, dict):
        raise ValueError(f"{path} holds a JSON {type(config).__name__}, not an object of config fields.")
    check_config_values(config, str(path))
    return config


_MAX_CONFIG_BYTES = 64 << 20
