"""PretrainedConfig: the keys of a Hugging Face ``config.json`` as attributes.

Every key a checkpoint's ``config.json`` carries becomes an attribute, known or not, so loading is near-identity
and saving writes back what was read. Architecture configs declare their Transformers defaults in ``defaults`` and
their aliases in ``attribute_map`` (standard name -> the architecture's own name, e.g. GPT-2's ``n_embd``).
"""

from __future__ import annotations

import copy
import json
import logging
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

# Private fields that change the computation (so equality, hashing and jit caches see them) but are never written to
# config.json: ``_gradient_checkpointing`` (see fxformers.ops.remat).
_RUNTIME_FIELDS = ("_gradient_checkpointing",)
_PROBLEM_TYPES = ("regression", "single_label_classification", "multi_label_classification")


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
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err}); re-save the config or fix the file.") from err
