"""GenerationConfig: the fields of ``generation_config.json`` with Transformers' names and defaults.

As in Transformers 5, unset fields are None and the library-wide defaults (``DEFAULTS``) fill them when
``generate()`` runs; in particular, with neither ``max_length`` nor ``max_new_tokens`` set, generate() adds 20 new
tokens (capped at ``max_position_embeddings``).
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
from pathlib import Path
from typing import Any, Optional

import numpy as np

logger = logging.getLogger(__name__)

GENERATION_CONFIG_NAME = "generation_config.json"

# Transformers' GenerationConfig._get_default_generation_params (the ones generate() reads).
DEFAULTS: dict[str, Any] = {
    "max_length": 20,
    "min_length": 0,
    "do_sample": False,
    "early_stopping": False,
    "num_beams": 1,
    "temperature": 1.0,
    "top_k": 50,
    "top_p": 1.0,
    "typical_p": 1.0,
    "repetition_penalty": 1.0,
    "length_penalty": 1.0,
    "no_repeat_ngram_size": 0,
    "encoder_no_repeat_ngram_size": 0,
    "num_return_sequences": 1,
    "epsilon_cutoff": 0.0,
    "eta_cutoff": 0.0,
    "encoder_repetition_penalty": 1.0,
    "remove_invalid_values": False,
    "renormalize_logits": False,
    "output_scores": False,
    "return_dict_in_generate": False,
    "use_cache": True,
}

FIELDS: tuple[str, ...] = (
    # length
    "max_length", "max_new_tokens", "min_length", "min_new_tokens", "early_stopping", "max_time", "stop_strings",
    # strategy
    "do_sample", "num_beams", "use_cache",
    # logits
    "temperature", "top_k", "top_p", "min_p", "typical_p", "epsilon_cutoff", "eta_cutoff", "repetition_penalty",
    "encoder_repetition_penalty", "length_penalty", "no_repeat_ngram_size", "bad_words_ids", "renormalize_logits",
    "forced_bos_token_id", "forced_eos_token_id", "remove_invalid_values", "exponential_decay_length_penalty",
    "suppress_tokens", "begin_suppress_tokens", "sequence_bias", "guidance_scale", "encoder_no_repeat_ngram_size",
    # outputs
    "num_return_sequences", "output_attentions", "output_hidden_states", "output_scores", "output_logits",
    "return_dict_in_generate",
    # special tokens
    "pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id",
    # removed strategies (read so that a file carrying them loads; generate() rejects them when set)
    "penalty_alpha", "dola_layers", "diversity_penalty", "num_beam_groups", "constraints", "force_words_ids",
)

_TOKEN_FIELDS = ("pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id")


_INT_FIELDS = ("max_length", "max_new_tokens", "min_length", "min_new_tokens", "num_beams", "num_return_sequences",
               "top_k", "no_repeat_ngram_size", "num_beam_groups")
_FLOAT_FIELDS = ("temperature", "top_p", "min_p", "typical_p", "repetition_penalty", "length_penalty",
                 "encoder_repetition_penalty", "epsilon_cutoff", "eta_cutoff", "diversity_penalty", "max_time")


def _flat_ids(value: Any):
    if isinstance(value, (list, tuple)):
        for item in value:
            yield from _flat_ids(item)
    else:
        yield value


class GenerationConfig:
    """Generation settings. ``GenerationConfig(max_new_tokens=20, num_beams=4)``; unknown keys are kept as attributes."""

    def __init__(self, **kwargs: Any):
        for name in FIELDS:
            setattr(self, name, kwargs.pop(name, None))
        self._from_model_config = kwargs.pop("_from_model_config", False)
        self.transformers_version = kwargs.pop("transformers_version", None)
        kwargs.pop("_commit_hash", None)
        for key, value in kwargs.items():  # carried through save/load untouched
            setattr(self, key, value)

    # -- reading and writing ---------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, config_dict: dict, **overrides: Any) -> "GenerationConfig":
        config = cls(**copy.deepcopy(config_dict))
        config.update(**overrides)
        return config

    @classmethod
    def from_pretrained(
        cls, name_or_path: str | os.PathLike, config_file_name: str = GENERATION_CONFIG_NAME, **kwargs: Any
    ) -> "GenerationConfig":
        """Read ``generation_config.json`` from a folder or hub model; keyword arguments override fields."""
        from ..hub import resolve_file

        hub = {k: kwargs.pop(k) for k in ("cache_dir", "revision", "token", "local_files_only") if k in kwargs}
        path = resolve_file(name_or_path, config_file_name, **hub)
        if path is None:
            raise FileNotFoundError(f"{name_or_path!r} has no {config_file_name}.")
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{path} is not valid JSON ({err}); fix or delete the file.") from err
        return cls.from_dict(data, **kwargs)

    @classmethod
    def from_model_config(cls, model_config: Any) -> "GenerationConfig":
        """The generation settings a model's config.json carries (special tokens, legacy max_length, num_beams ...)."""
        source = model_config.to_dict() if hasattr(model_config, "to_dict") else dict(model_config)
        values = {}
        for name in FIELDS:
            value = source.get(name)
            if value is None:
                continue
            if name not in _TOKEN_FIELDS and value == DEFAULTS.get(name, object()):
                continue  # a legacy config.json repeating a library default says nothing
            values[name] = value
        decoder = source.get("decoder")
        if isinstance(decoder, dict):  # composite configs keep special tokens on the decoder
            for name in _TOKEN_FIELDS:
                if values.get(name) is None and decoder.get(name) is not None:
                    values[name] = decoder[name]
        return cls(**values, _from_model_config=True)

    def check_values(self, vocab_size: Optional[int] = None) -> None:
        """Refuse values of the wrong type before they reach a compiled program: counts that are not integers
        (``max_new_tokens=1.5``), numbers that are not finite (``temperature=nan`` passes a ``<= 0`` check and
        samples only pad tokens), and (given the model's ``vocab_size``) token ids outside the vocabulary, as
        Transformers' logits processors refuse them."""
        for name in _INT_FIELDS:
            value = getattr(self, name, None)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer))):
                raise ValueError(f"{name} must be an integer, got {value!r}.")
        for name in _FLOAT_FIELDS:
            value = getattr(self, name, None)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}.")
        if vocab_size is None:
            return
        for name in ("bad_words_ids", "suppress_tokens", "begin_suppress_tokens", "forced_eos_token_id",
                     "forced_bos_token_id"):
            value = getattr(self, name, None)
            ids = list(_flat_ids(value)) if value is not None else []
            if any(isinstance(i, bool) or not isinstance(i, (int, np.integer)) for i in ids):
                raise ValueError(f"{name} must hold integer token ids, got {value!r}.")
            outside = sorted({int(i) for i in ids if not 0 <= int(i) < vocab_size})
            if outside:
                raise ValueError(
                    f"The model vocabulary size is {vocab_size}, but {name} holds ids outside it: {outside[:10]}."
                )

    def to_dict(self) -> dict[str, Any]:
        return {k: copy.deepcopy(v) for k, v in self.__dict__.items() if not k.startswith("_")}

    def to_diff_dict(self) -> dict[str, Any]:
        """The fields that are set (what ``save_pretrained`` writes)."""
        return {k: v for k, v in self.to_dict().items() if v is not None}

    def to_json_string(self) -> str:
        return json.dumps(self.to_diff_dict(), indent=2, sort_keys=True) + "\n"

    def save_pretrained(self, save_directory: str | os.PathLike, config_file_name: str = GENERATION_CONFIG_NAME) -> None:
        from ..checkpoints.atomic import atomic_write_text

        folder = Path(save_directory)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / config_file_name, self.to_json_string())

    # -- editing ---------------------------------------------------------------------------------------------------
    def update(self, **kwargs: Any) -> dict[str, Any]:
        """Set the known fields among ``kwargs``; returns the keyword arguments that are not generation fields."""
        unused = {}
        for key, value in kwargs.items():
            if key in FIELDS or hasattr(self, key):
                setattr(self, key, value)
            else:
                unused[key] = value
        return unused

    def with_defaults(self) -> "GenerationConfig":
        """A copy with every unset field that generate() reads filled from ``DEFAULTS``."""
        out = copy.deepcopy(self)
        for key, value in DEFAULTS.items():
            if getattr(out, key, None) is None:
                setattr(out, key, value)
        return out

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GenerationConfig) and self.to_diff_dict() == other.to_diff_dict()

    def __repr__(self) -> str:
        return f"GenerationConfig {self.to_json_string()}"
