"""``LoraConfig``: PEFT's LoRA configuration, with PEFT's field names, defaults and ``adapter_config.json`` form."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Any, Optional, Union

logger = logging.getLogger(__name__)

ADAPTER_CONFIG_NAME = "adapter_config.json"

# PEFT's default target modules per model_type (peft.utils.constants.TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING),
# for the families fxformers implements.
DEFAULT_TARGET_MODULES = {
    "t5": ["q", "v"], "mt5": ["q", "v"], "bart": ["q_proj", "v_proj"], "mbart": ["q_proj", "v_proj"],
    "gpt2": ["c_attn"], "bert": ["query", "value"], "roberta": ["query", "value"], "xlm-roberta": ["query", "value"],
    "llama": ["q_proj", "v_proj"], "mistral": ["q_proj", "v_proj"], "qwen2": ["q_proj", "v_proj"],
    "distilbert": ["q_lin", "v_lin"],
}
TASK_TYPES = ("SEQ_CLS", "SEQ_2_SEQ_LM", "CAUSAL_LM", "TOKEN_CLS", "QUESTION_ANS", "FEATURE_EXTRACTION")
# PEFT adds these to modules_to_save for classification task types (PeftModelForSequenceClassification & co).
CLASSIFIER_MODULE_NAMES = ("classifier", "score")

# PEFT fields whose non-default values select features fxformers does not implement: (field, default).
_UNSUPPORTED = (
    ("use_dora", False), ("lora_bias", False), ("rank_pattern", {}), ("alpha_pattern", {}),
    ("layers_to_transform", None), ("layers_pattern", None), ("target_parameters", None),
    ("trainable_token_indices", None), ("layer_replication", None), ("use_qalora", False), ("exclude_modules", None),
)


@dataclasses.dataclass
class LoraConfig:
    """PEFT's ``LoraConfig`` (same names and meanings).

    r: adapter rank. lora_alpha: the update is scaled by ``lora_alpha / r`` (``lora_alpha / sqrt(r)`` with
    ``use_rslora``). lora_dropout: dropout on the adapter's input while training. target_modules: PyTorch module
    names matched as suffixes (``["q_proj", "v_proj"]``), a regex string matched against the whole module name, or
    ``"all-linear"`` (every Linear/Conv1D but the output layer); None uses PEFT's per-architecture default.
    modules_to_save: modules trained in full and saved with the adapter (e.g. a new ``classifier`` head).
    bias: only ``"none"`` is supported. init_lora_weights: True = PEFT's default (A Kaiming-uniform, B zero, so the
    adapted model starts equal to the base), False = both random (tests), ``"gaussian"`` = A normal(0, 1/r).
    task_type: ``"CAUSAL_LM"``, ``"SEQ_CLS"`` (adds ``classifier``/``score`` to modules_to_save, as PEFT does) …
    """

    r: int = 8
    lora_alpha: float = 8
    lora_dropout: float = 0.0
    target_modules: Optional[Union[list[str], str]] = None
    modules_to_save: Optional[list[str]] = None
    bias: str = "none"
    use_rslora: bool = False
    init_lora_weights: Union[bool, str] = True
    task_type: Optional[str] = None
    fan_in_fan_out: bool = False
    inference_mode: bool = False
    base_model_name_or_path: Optional[str] = None
    revision: Optional[str] = None
    peft_type: str = "LORA"

    def __post_init__(self):
        if isinstance(self.target_modules, (set, tuple)):
            self.target_modules = sorted(self.target_modules)
        if isinstance(self.modules_to_save, str):
            raise ValueError("modules_to_save is a list of module names, e.g. ['classifier'], not a string.")
        if self.modules_to_save is not None:
            self.modules_to_save = list(self.modules_to_save)
        if not isinstance(self.r, int) or self.r <= 0:
            raise ValueError(f"r must be a positive integer, got {self.r!r}.")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}.")
        if self.bias != "none":
            raise NotImplementedError(f"bias={self.bias!r} is not supported; use bias='none' (PEFT's default).")
        if self.init_lora_weights not in (True, False, "gaussian"):
            raise NotImplementedError(
                f"init_lora_weights={self.init_lora_weights!r} is not supported; use True, False or 'gaussian'."
            )
        if self.peft_type != "LORA":
            raise ValueError(f"Only LoRA adapters are supported, this config has peft_type={self.peft_type!r}.")
        if self.task_type is not None:
            self.task_type = getattr(self.task_type, "value", self.task_type)
            if self.task_type not in TASK_TYPES:
                raise ValueError(f"task_type must be one of {TASK_TYPES} or None, got {self.task_type!r}.")

    @property
    def scaling(self) -> float:
        """The factor on ``B @ A``: ``lora_alpha / r``, or ``lora_alpha / sqrt(r)`` with rsLoRA."""
        return self.lora_alpha / (self.r**0.5 if self.use_rslora else self.r)

    def effective_modules_to_save(self) -> list[str]:
        """modules_to_save plus the classifier names PEFT adds for SEQ_CLS / TOKEN_CLS."""
        names = list(self.modules_to_save or [])
        if self.task_type in ("SEQ_CLS", "TOKEN_CLS"):
            names += [n for n in CLASSIFIER_MODULE_NAMES if n not in names]
        return names

    # -- adapter_config.json ------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.update({"lora_bias": False, "use_dora": False, "rank_pattern": {}, "alpha_pattern": {},
                    "layers_to_transform": None, "layers_pattern": None, "exclude_modules": None})
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LoraConfig":
        """From an ``adapter_config.json`` dict; fields of features fxformers lacks must hold their defaults."""
        if data.get("peft_type", "LORA") != "LORA":
            raise ValueError(f"Only LoRA adapters are supported, got peft_type={data.get('peft_type')!r}.")
        used = [f"{k}={data[k]!r}" for k, default in _UNSUPPORTED if data.get(k, default) not in (default, None, {}, False)]
        if used:
            raise NotImplementedError(f"This adapter uses LoRA features fxformers does not implement: {', '.join(used)}.")
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def save_pretrained(self, save_directory: str | os.PathLike) -> None:
        config = self.to_dict()
        config["inference_mode"] = True  # as PEFT writes it
        Path(save_directory, ADAPTER_CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike) -> "LoraConfig":
        path = Path(folder, ADAPTER_CONFIG_NAME)
        if not path.is_file():
            raise FileNotFoundError(f"{folder} has no {ADAPTER_CONFIG_NAME}; point at a folder PEFT's save_pretrained wrote.")
        return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
