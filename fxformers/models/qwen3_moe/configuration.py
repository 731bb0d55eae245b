"""Qwen3-MoE: Qwen3 attention (per-head q/k RMSNorm, no qkv bias) with sparse MoE feed-forwards.

A layer is sparse unless it is listed in ``mlp_only_layers`` or ``(layer + 1) % decoder_sparse_step != 0``; dense
layers use a gated MLP of ``intermediate_size``, experts one of ``moe_intermediate_size``. Transformers applies the
sliding window only when ``use_sliding_window`` is set, and then to every layer.
"""

from __future__ import annotations

from typing import Optional

from ..llama.configuration import LlamaConfig


class Qwen3MoeConfig(LlamaConfig):
    model_type = "qwen3_moe"
    attribute_map = {"num_experts": "num_local_experts"}  # Transformers' own alias; checkpoints say num_experts
    defaults = {
        **LlamaConfig.defaults,
        "vocab_size": 151936,
        "hidden_size": 2048,
        "intermediate_size": 6144,
        "num_hidden_layers": 24,
        "num_attention_heads": 32,
        "num_key_value_heads": 4,
        "max_position_embeddings": 32768,
        "bos_token_id": None,
        "eos_token_id": None,
        "use_sliding_window": False,
        "sliding_window": 4096,
        "max_window_layers": None,  # carried by some checkpoints; Transformers' Qwen3-MoE does not use it
        "decoder_sparse_step": 1,
        "moe_intermediate_size": 768,
        "num_experts_per_tok": 8,
        "num_local_experts": 128,
        "norm_topk_prob": False,
        "output_router_logits": False,
        "router_aux_loss_coef": 0.001,
        "mlp_only_layers": None,
    }

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if self.mlp_only_layers is None:
            self.mlp_only_layers = []

    def validate(self) -> None:
        super().validate()
        if self.num_local_experts and not 0 < self.num_experts_per_tok <= self.num_local_experts:
            raise ValueError(
                f"num_experts_per_tok={self.num_experts_per_tok} must be between 1 and num_experts="
                f"{self.num_local_experts}."
            )
        if self.decoder_sparse_step is None or self.decoder_sparse_step < 1:
            raise ValueError(f"decoder_sparse_step must be a positive integer, got {self.decoder_sparse_step!r}.")

    def qkv_bias(self) -> bool:
        return bool(self.attention_bias)

    def o_bias(self) -> bool:
        return bool(self.attention_bias)

    def qk_norm(self) -> bool:
        return True

    def layer_sliding_window(self, layer: int) -> Optional[int]:
        return self.sliding_window if self.use_sliding_window else None

    # -- the MoE block (see MixtralConfig) -------------------------------------------------------------------------
    def num_experts_total(self) -> int:
        return self.num_local_experts

    def expert_intermediate_size(self) -> int:
        return self.moe_intermediate_size

    def normalize_top_k(self) -> bool:
        return bool(self.norm_topk_prob)

    def is_sparse_layer(self, layer: int) -> bool:
        return (
            layer not in self.mlp_only_layers and self.num_local_experts > 0
            and (layer + 1) % self.decoder_sparse_step == 0
        )
