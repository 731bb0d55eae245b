"""Phi-3 (and Phi-3.5 / Phi-4-mini text): the Llama architecture with fused projections, partial rotary, LongRoPE.

``partial_rotary_factor`` (top level or inside the rope dict) rotates only the first fraction of each head;
LongRoPE reads ``short_factor``/``long_factor`` and the top-level ``original_max_position_embeddings``; the rope
types ``su`` and ``yarn`` of early Phi-3 checkpoints mean ``longrope``, as Transformers reads them. The sliding
window (when set) applies to every layer. ``embd_pdrop`` is carried but unused, as in Transformers.
"""

from __future__ import annotations

from typing import Optional

from ..llama.configuration import LlamaConfig


class Phi3Config(LlamaConfig):
    model_type = "phi3"
    defaults = {
        **LlamaConfig.defaults,
        "vocab_size": 32064,
        "hidden_size": 3072,
        "intermediate_size": 8192,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "resid_pdrop": 0.0,
        "embd_pdrop": 0.0,
        "max_position_embeddings": 4096,
        "original_max_position_embeddings": 4096,
        "rms_norm_eps": 1e-5,
        "bos_token_id": 1,
        "eos_token_id": 32000,
        "pad_token_id": 32000,
        "sliding_window": None,
        "partial_rotary_factor": None,
    }

    def __init__(self, **kwargs):
        for key in ("rope_parameters", "rope_scaling"):
            rope = kwargs.get(key)
            if isinstance(rope, dict) and rope.get("rope_type", rope.get("type")) in ("su", "yarn"):
                kwargs[key] = {**{k: v for k, v in rope.items() if k != "type"}, "rope_type": "longrope"}
        super().__init__(**kwargs)

    def qkv_bias(self) -> bool:
        return False

    def o_bias(self) -> bool:
        return False

    def layer_sliding_window(self, layer: int) -> Optional[int]:
        return self.sliding_window

    def fused_qkv_sizes(self) -> tuple[int, int, int]:
        """Output widths of the q, k and v parts of ``qkv_proj``."""
        h = self.head_dim
        return self.num_attention_heads * h, self.num_key_value_heads * h, self.num_key_value_heads * h
