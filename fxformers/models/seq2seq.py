"""What every encoder-decoder (T5, BART, ...) shares on the model side: input checks and the generation protocol.

The generation protocol (``fxformers.generation.protocol``) needs two pure methods; an encoder-decoder module
provides ``generation_prefill(input_ids, attention_mask, max_length, decoder_start_token_id)`` (encode once,
precompute cross-attention K/V, feed the start token) and ``generation_decode(state, tokens)`` (one decoder step
over a [B, L, N, H] self-attention cache), and this mixin exposes them as ``prepare_generation`` /
``generation_step``.
"""

from __future__ import annotations

from typing import Any, Optional

import jax
import numpy as np

from ..generation.utils import GenerationMixin
from ..modeling import check_ids


def resolve_decoder_start_token_id(model: Any, override: Optional[int] = None) -> int:
    """The token the decoder starts from: an explicit value, the generation config's, the config's, else bos."""
    candidates = [override]
    generation_config = getattr(model, "generation_config", None)
    if generation_config is not None:
        candidates.append(getattr(generation_config, "decoder_start_token_id", None))
    candidates += [getattr(model.config, "decoder_start_token_id", None), getattr(model.config, "bos_token_id", None)]
    for value in candidates:
        if value is not None:
            return int(value[0] if isinstance(value, (list, tuple)) else value)
    raise ValueError(
        f"{type(model).__name__} has no decoder_start_token_id (nor bos_token_id) in its config; pass "
        "decoder_start_token_id=... to generate()."
    )


def check_seq2seq_inputs(model: Any, inputs: dict) -> None:
    """Host-side checks of the decoder inputs (ids in range, labels in range or -100, masks shaped like their ids)."""
    vocab = getattr(model.config, "vocab_size", None)
    dec = inputs.get("decoder_input_ids")
    if dec is not None:
        check_ids(dec, "decoder_input_ids", vocab)
        mask = inputs.get("decoder_attention_mask")
        if mask is not None and mask.shape != dec.shape:
            raise ValueError(f"decoder_attention_mask has shape {mask.shape}, decoder_input_ids has {dec.shape}.")
    labels = inputs.get("labels")
    if labels is not None and labels.ndim == 2 and jax.numpy.issubdtype(labels.dtype, jax.numpy.integer):
        host = np.asarray(labels)
        bad = host[(host != -100) & ((host < 0) | (host >= (vocab or np.iinfo(np.int64).max)))]
        if bad.size:
            raise ValueError(f"labels hold {bad[0]}, outside [0, {vocab}) and not -100 (the ignored index).")


class Seq2SeqGenerationMixin(GenerationMixin):
    """``prepare_generation`` / ``generation_step`` for modules with ``generation_prefill`` / ``generation_decode``."""

    def prepare_generation(self, params, input_ids, attention_mask, max_length: int,
                           decoder_start_token_id: Optional[int] = None):
        """Encode ``input_ids`` [B, S] once and run the decoder on the start token: (logits [B, V] f32, state)."""
        start = resolve_decoder_start_token_id(self, decoder_start_token_id)
        return self.module.apply(
            {"params": params}, input_ids, attention_mask, max_length, start,
            method=type(self.module).generation_prefill,
        )

    def generation_step(self, params, state, tokens):
        """Feed ``tokens`` [B] at the next decoder position: (logits [B, V] f32, state)."""
        return self.module.apply({"params": params}, state, tokens, method=type(self.module).generation_decode)

