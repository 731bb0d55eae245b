"""LoRA adapters (PEFT-compatible) for every fxformers architecture: config, targeting by param path, the adapted
forward, training of the adapter tree only, QLoRA-style quantised bases, and PEFT's file format both ways."""

from .config import LoraConfig
from .layers import LoraRuntime
from .model import PeftModel, base_memory_bytes, get_peft_model

__all__ = ["LoraConfig", "LoraRuntime", "PeftModel", "base_memory_bytes", "get_peft_model"]
