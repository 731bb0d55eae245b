"""Gemma 2 config: Gemma's fields plus soft-capping, ``query_pre_attn_scalar`` and alternating sliding windows.

``layer_types`` names each layer ``"sliding_attention"`` or ``"full_attention"``; without it, even-numbered layers
(0, 2, ...) slide, as Transformers fills it in. The MLP reads ``hidden_activation`` (``hidden_act`` is Gemma 1's).
"""

from __future__ import annotations

from typing import Any, Optional

from ..gemma.configuration import GemmaConfig

LAYER_TYPES = ("full_attention", "sliding_attention")


class Gemma2Config(GemmaConfig):
    model_type = "gemma2"
    defaults = {
        **GemmaConfig.defaults,
        "hidden_size": 2304,
        "intermediate_size": 9216,
        "num_hidden_layers": 26,
        "num_attention_heads": 8,
        "num_key_value_heads": 4,
        "hidden_activation": "gelu_pytorch_tanh",
        "query_pre_attn_scalar": 256,
        "sliding_window": 4096,
        "layer_types": None,
        "final_logit_softcapping": 30.0,
        "attn_logit_softcapping": 50.0,
    }

    def default_layer_types(self) -> list[str]:
        return ["sliding_attention" if (i + 1) % 2 else "full_attention" for i in range(self.num_hidden_layers)]

    def all_layer_types(self) -> list[str]:
        return list(self.layer_types) if self.layer_types is not None else self.default_layer_types()

    def validate(self) -> None:
        super().validate()
        types = self.all_layer_types()
        if len(types) != self.num_hidden_layers:
            raise ValueError(
                f"layer_types has {len(types)} entries but num_hidden_layers is {self.num_hidden_layers}; "
                "give one type per layer."
            )
        unknown = sorted(set(types) - set(LAYER_TYPES))
        if unknown:
            raise ValueError(f"layer_types has unknown entries {unknown}; use one of {LAYER_TYPES}.")
        if "sliding_attention" in types and not self.sliding_window:
            raise ValueError("layer_types has sliding layers but sliding_window is not set; give it a window size.")

    def layer_sliding_window(self, layer: int) -> Optional[int]:
        return self.sliding_window if self.all_layer_types()[layer] == "sliding_attention" else None

    def attention_softcap(self) -> Optional[float]:
        return self.attn_logit_softcapping

    def layer_rope(self, layer: int) -> tuple[str, Any]:
        """(a key shared by layers with the same rotary settings, a config-like object ops.rotary reads)."""
        return "all", self
