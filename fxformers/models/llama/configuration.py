"""Configs of the Llama family: Llama 2/3/3.1/3.2, Mistral and Qwen2 share one architecture and differ in fields.

Rope settings are read in both spellings (``rope_parameters`` of Transformers 5, ``rope_theta`` + ``rope_scaling``
before it); ``layer_sliding_window(i)`` says which window, if any, layer i attends with.
"""

from __future__ import annotations

from typing import Optional

from ...configuration import PretrainedConfig
from ...ops.rotary import rope_parameters


class LlamaConfig(PretrainedConfig):
    model_type = "llama"
    defaults = {
        "vocab_size": 32000,
        "hidden_size": 4096,
        "intermediate_size": 11008,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": None,
        "head_dim": None,
        "hidden_act": "silu",
        "max_position_embeddings": 2048,
        "initializer_range": 0.02,
        "rms_norm_eps": 1e-6,
        "use_cache": True,
        "pad_token_id": None,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pretraining_tp": 1,
        "tie_word_embeddings": False,
        "rope_theta": None,
        "rope_parameters": None,
        "rope_scaling": None,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
    }

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        if self.head_dim is None:
            self.head_dim = self.hidden_size // self.num_attention_heads
        if self.rope_theta is None and not self.rope_parameters:
            # the default base, written out: a config made from scratch must save a rope base that Transformers 5
            # reads (it finds no default when both spellings are null)
            self.rope_theta = rope_parameters(self)["rope_theta"]

    def validate(self) -> None:
        kv = getattr(self, "num_key_value_heads", None) or self.num_attention_heads
        if self.num_attention_heads % kv:
            raise ValueError(
                f"num_attention_heads {self.num_attention_heads} is not a multiple of num_key_value_heads {kv}."
            )
        if getattr(self, "head_dim", None) is None and self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not a multiple of num_attention_heads {self.num_attention_heads}; "
                "set head_dim explicitly."
            )
        rope_parameters(self)  # raises on an unsupported or incomplete rope type

    # q/k/v and o projection biases
    def qkv_bias(self) -> bool:
        return bool(self.attention_bias)

    def o_bias(self) -> bool:
        return bool(self.attention_bias)

    def layer_sliding_window(self, layer: int) -> Optional[int]:
        return None

    # RMSNorm over each head's head_dim on queries and keys, before rotary (Qwen3, Qwen3-MoE)
    def qk_norm(self) -> bool:
        return False


class MistralConfig(LlamaConfig):
    model_type = "mistral"
    defaults = {
        **LlamaConfig.defaults,
        "intermediate_size": 14336,
        "num_key_value_heads": 8,
        "max_position_embeddings": 4096 * 32,
        "sliding_window": 4096,
    }

    def qkv_bias(self) -> bool:
        return False

    def o_bias(self) -> bool:
        return False

    def layer_sliding_window(self, layer: int) -> Optional[int]:
        return self.sliding_window


class Qwen2Config(LlamaConfig):
    model_type = "qwen2"
    defaults = {
        **LlamaConfig.defaults,
        "vocab_size": 151936,
        "intermediate_size": 22016,
        "num_key_value_heads": 32,
        "max_position_embeddings": 32768,
        "bos_token_id": None,
        "eos_token_id": None,
        "use_sliding_window": False,
        "sliding_window": 4096,
        "max_window_layers": 28,
        "layer_types": None,
    }

    def qkv_bias(self) -> bool:
        return True

    def o_bias(self) -> bool:
        return False

    def layer_sliding_window(self, layer: int) -> Optional[int]:
        types = self.layer_types
        if types is None:
            use = self.use_sliding_window and self.sliding_window is not None and layer >= self.max_window_layers
        else:
            use = types[layer] == "sliding_attention"
        return self.sliding_window if use else None
