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


class GenerateBeamDecoderOnlyOutput(ModelOutput):
    """Beam search: sequences [B * num_return_sequences, T + new]; sequences_scores [B * nrs] (length-penalised
    log-probability, with ``output_scores``); scores / logits: one [B * num_beams, V] array per step (processed
    log-probs of every beam; raw logits); beam_indices [B * nrs, new] (source beam of each token, -1 after the end)."""

    sequences: Any = None
    sequences_scores: Any = None
    scores: Optional[tuple] = None
    logits: Optional[tuple] = None
    beam_indices: Any = None
    attentions: Optional[tuple] = None
    hidden_states: Optional[tuple] = None
    past_key_values: Any = None


class GenerateBeamEncoderDecoderOutput(ModelOutput):
    sequences: Any = None
    sequences_scores: Any = None
    scores: Optional[tuple] = None
    logits: Optional[tuple] = None
    beam_indices: Any = None
    encoder_attentions: Optional[tuple] = None
    encoder_hidden_states: Optional[tuple] = None
    decoder_attentions: Optional[tuple] = None
    cross_attentions: Optional[tuple] = None
    decoder_hidden_states: Optional[tuple] = None
    past_key_values: Any = None
