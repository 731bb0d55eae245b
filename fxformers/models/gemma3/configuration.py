"""Gemma 3 text config (``gemma3_text``): Gemma 2's fields, q/k norms, and separate rotary settings per layer type.

Rotary settings come in two spellings, read as Transformers 5 reads them:

- Transformers 5: ``rope_parameters = {"full_attention": {...}, "sliding_attention": {...}}``;
- Transformers 4 (the Hub's configs): ``rope_theta`` (global layers, default 1e6), ``rope_local_base_freq``
  (sliding layers, default 1e4) and ``rope_scaling`` (global layers only, e.g. ``{"rope_type": "linear",
  "factor": 8.0}``).

Without ``layer_types``, every ``sliding_window_pattern``-th layer (default 6) is global and the rest slide.
``use_bidirectional_attention`` (EmbeddingGemma) makes attention non-causal, sliding layers seeing |q - k| <
``sliding_window // 2 + 1``.
"""

from __future__ import annotations

import copy
import types
from typing import Any, Optional

from ...ops.rotary import rope_parameters
from ..gemma2.configuration import LAYER_TYPES, Gemma2Config

DEFAULT_THETA = {"full_attention": 1_000_000.0, "sliding_attention": 10_000.0}


class Gemma3TextConfig(Gemma2Config):
    model_type = "gemma3_text"
    defaults = {
        **Gemma2Config.defaults,
        "vocab_size": 262208,
        "max_position_embeddings": 131072,
        "final_logit_softcapping": None,
        "attn_logit_softcapping": None,
        "use_bidirectional_attention": False,
        "rope_local_base_freq": None,
        "sliding_window_pattern": 6,
    }

    def __init__(self, **kwargs):
        theta_given = kwargs.get("rope_theta") is not None
        super().__init__(**kwargs)
        if not self.rope_parameters and not theta_given:
            # Gemma 3's default bases differ by layer type (1e6 global, 1e4 local), so a single-rope default a parent
            # config may fill in would be wrong: write them out by layer type, the spelling Transformers 5 saves.
            self.rope_theta = None
            self.rope_parameters = self.layer_type_rope_parameters()

    def default_layer_types(self) -> list[str]:
        pattern = self.sliding_window_pattern
        if not isinstance(pattern, int) or pattern < 1:
            raise ValueError(f"sliding_window_pattern must be a positive integer when layer_types is absent, got {pattern!r}.")
        return ["sliding_attention" if (i + 1) % pattern else "full_attention" for i in range(self.num_hidden_layers)]

    def layer_type_rope_parameters(self) -> dict[str, dict]:
        """{layer type: rope dict}, filled in exactly as Transformers' ``convert_rope_params_to_dict``."""
        params = copy.deepcopy(self.rope_parameters) or {t: {"rope_type": "default"} for t in LAYER_TYPES}
        if not any(t in params for t in LAYER_TYPES):
            raise ValueError(
                "gemma3_text rope_parameters must be keyed by layer type, e.g. {'full_attention': {...}, "
                f"'sliding_attention': {{...}}}}; got {self.rope_parameters!r}. Use rope_theta, rope_local_base_freq "
                "and rope_scaling for the older flat spelling."
            )
        full = params.get("full_attention") or {"rope_type": "default"}
        if self.rope_scaling is not None:
            full.update(self.rope_scaling)
        full.setdefault("rope_theta", self.rope_theta or DEFAULT_THETA["full_attention"])
        sliding = params.get("sliding_attention") or {"rope_type": "default"}
        sliding.setdefault("rope_theta", self.rope_local_base_freq or DEFAULT_THETA["sliding_attention"])
        return {"full_attention": full, "sliding_attention": sliding}

    def rope_view(self, layer_type: str) -> Any:
        """A config-like object carrying one layer type's rope settings, for ``ops.rotary``."""
        return types.SimpleNamespace(
            rope_parameters=self.layer_type_rope_parameters()[layer_type], rope_scaling=None, rope_theta=None,
            partial_rotary_factor=None, max_position_embeddings=self.max_position_embeddings,
        )

    def validate(self) -> None:
        super().validate()
        for layer_type in LAYER_TYPES:
            rope_parameters(self.rope_view(layer_type))  # raises on an unsupported or incomplete rope type

    def check_bidirectional(self) -> None:
        pass  # Gemma 3 implements use_bidirectional_attention (EmbeddingGemma), see layer_sliding_window

    def layer_sliding_window(self, layer: int) -> Optional[int]:
        window = super().layer_sliding_window(layer)
        if window is not None and self.use_bidirectional_attention:
            # Transformers stores w // 2 + 1 and masks |q - k| < that: a centred window of w (w odd) keys
            return window // 2 + 1
        return window

    def attention_softcap(self) -> None:
        # Transformers' Gemma 3 attention stores attn_logit_softcapping but never passes it on: no capping.
        return None

    def layer_rope(self, layer: int) -> tuple[str, Any]:
        layer_type = self.all_layer_types()[layer]
        return layer_type, self.rope_view(layer_type)
