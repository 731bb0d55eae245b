"""Qwen3 (dense) config: the Llama field set plus per-layer sliding windows, q/k RMSNorm and no qkv bias by default.

Rope settings are read in both spellings (``rope_parameters`` of Transformers 5, ``rope_theta`` + ``rope_scaling``
before it). A layer slides only when ``use_sliding_window`` is true — Transformers drops ``sliding_window`` otherwise,
whatever ``layer_types`` says — and then when ``layer_types[i] == "sliding_attention"`` (or, without ``layer_types``,
when ``i >= max_window_layers``).
"""

from __future__ import annotations

from typing import Optional

from ..llama.configuration import LlamaConfig


class Qwen3Config(LlamaConfig):
    model_type = "qwen3"
    defaults = {
        **LlamaConfig.defaults,
        "vocab_size": 151936,
        "intermediate_size": 22016,
        "num_key_value_heads": 32,
        "head_dim": 128,
        "max_position_embeddings": 32768,
        "bos_token_id": None,
        "eos_token_id": None,
        "use_sliding_window": False,
        "sliding_window": 4096,
        "max_window_layers": 28,
        "layer_types": None,
    }

    def validate(self) -> None:
        super().validate()
        types = self.layer_types
        if types is not None:
            if len(types) != self.num_hidden_layers:
                raise ValueError(
                    f"layer_types has {len(types)} entries but num_hidden_layers is {self.num_hidden_layers}; "
                    "give one type per layer."
                )
            unknown = sorted(set(types) - {"full_attention", "sliding_attention"})
            if unknown:
                raise ValueError(f"layer_types has unknown entries {unknown}; use 'full_attention' or 'sliding_attention'.")

    def qk_norm(self) -> bool:
        return True  # an RMSNorm over each query and key head (head_dim), before rotary

    def layer_sliding_window(self, layer: int) -> Optional[int]:
        if not self.use_sliding_window or self.sliding_window is None:
            return None
        types = self.layer_types
        sliding = layer >= self.max_window_layers if types is None else types[layer] == "sliding_attention"
        return self.sliding_window if sliding else None
