"""Text generation: one jit-compiled loop (greedy, sampling, beam search) for every model in the library.

The loop lives here; models plug in through a two-method protocol documented in :mod:`.protocol`:

* ``model.prepare_generation(params, input_ids [B, T], attention_mask [B, T], max_length) -> (logits [B, V] f32, state)``
* ``model.generation_step(params, state, tokens [B]) -> (logits [B, V] f32, state)``

with every leaf of ``state`` batch-leading, so beam search reorders it with ``jnp.take(leaf, idx, axis=0)`` and
expands it with ``jnp.repeat``. Decoder-only output is ``[prompt | new]``; encoder-decoder
(``config.is_encoder_decoder``) output is ``[decoder_start_token_id | new]``.
"""

from .protocol import GenerationModel

__all__ = ["GenerationModel"]
