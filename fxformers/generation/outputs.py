"""What ``generate(..., return_dict_in_generate=True)`` returns, with Transformers' class and field names."""

from __future__ import annotations

from typing import Any, Optional

from ..outputs import ModelOutput


class GenerateDecoderOnlyOutput(ModelOutput):
    """sequences [B, T + new]; scores / logits: one [B, V] float32 array per generated step (processed scores, as
    sampled or argmax'ed from; raw logits) when ``output_scores`` / ``output_logits`` ask for them."""

    sequences: Any = None
    scores: Optional[tuple] = None
    logits: Optional[tuple] = None
    attentions: Optional[tuple] = None
    hidden_states: Optional[tuple] = None
    past_key_values: Any = None


class GenerateEncoderDecoderOutput(ModelOutput):
    sequences: Any = None
    scores: Optional[tuple] = None
    logits: Optional[tuple] = None
    encoder_attentions: Optional[tuple] = None
    encoder_hidden_states: Optional[tuple] = None
    decoder_attentions: Optional[tuple] = None
    cross_attentions: Optional[tuple] = None
    decoder_hidden_states: Optional[tuple] = None
    past_key_values: Any = None
