"""Mixtral: the Mistral decoder with a sparse mixture-of-experts feed-forward in every layer.

The MoE settings are read through methods (``num_experts_total``, ``expert_intermediate_size``, ``normalize_top_k``,
``is_sparse_layer``) that the shared MoE modules use, so Qwen3-MoE plugs its own field names into the same modules.
"""

from __future__ import annotations

from typing import Optional

from ..llama.configuration import LlamaConfig


class MixtralConfig(LlamaConfig):
    model_type = "mixtral"
    attribute_map = {"num_experts": "num_local_experts"}
    defaults = {
        **LlamaConfig.defaults,
        "intermediate_size": 14336,
        "num_key_value_heads": 8,
        "max_position_embeddings": 4096 * 32,
        "rms_norm_eps": 1e-5,
        "rope_theta": 1e6,  # Mixtral's default_theta when a config carries no rope settings
        "sliding_window": None,
        "num_experts_per_tok": 2,
        "num_local_experts": 8,
        "output_router_logits": False,
        "router_aux_loss_coef": 0.001,
        "router_jitter_noise": 0.0,
    }

    def validate(self) -> None:
        super().validate()
        if not 0 < self.num_experts_per_tok <= self.num_local_experts:
            raise ValueError(
                f"num_experts_per_tok={self.num_experts_per_tok} must be between 1 and num_local_experts="
                f"{self.num_local_experts}."
            )

    def qkv_bias(self) -> bool:
        return False

    def o_bias(self) -> bool:
        return False

    def layer_sliding_window(self, layer: int) -> Optional[int]:
        return self.sliding_window

    # -- the MoE block -----------------------------------------------------------------------------------------
    def num_experts_total(self) -> int:
        return self.num_local_experts

    def expert_intermediate_size(self) -> int:
        return self.intermediate_size

    def normalize_top_k(self) -> bool:
        return True  # Mixtral's router always renormalises the top-k probabilities

    def is_sparse_layer(self, layer: int) -> bool:
        return True
