"""The model-side protocol of the one generation loop (``fxformers.generation``).

A model that can ``generate()`` mixes in :class:`~fxformers.generation.GenerationMixin` and implements the two pure
methods below. The loop calls them inside ONE ``jax.jit`` (prefill, then a ``lax.while_loop`` of steps), so both
must be traceable: no host round trips, no Python branching on array values, static shapes.

Shapes: B batch rows (already expanded to ``batch * num_beams`` or ``batch * num_return_sequences`` when the loop
calls them), T prompt / encoder length (bucketed by the loop), L ``max_length`` (decoder positions to provision),
V vocabulary.

``prepare_generation(params, input_ids [B, T] int32, attention_mask [B, T] int32, max_length: int)``
    -> ``(logits [B, V] float32, state)``

    * decoder-only: ``input_ids`` is the prompt, LEFT-padded (``attention_mask`` 0 on pads; the loop may add extra
      left padding to reach a bucketed length, so pads can be many and a row may start with several). Run the prompt,
      filling a KV cache sized for ``max_length`` positions (``max_length >= T``; the loop will feed at most
      ``max_length - T`` more tokens), with position ids ``cumsum(attention_mask) - 1`` as Transformers does, and
      return the logits of the LAST prompt position (index ``T - 1``, a real token for every row since padding is on
      the left).
    * encoder-decoder (``config.is_encoder_decoder``): ``input_ids`` is the encoder input, RIGHT-padded by the loop's
      bucketing (``attention_mask`` 0 on pads; honour it). Run the encoder once, precompute the cross-attention K/V,
      feed ``decoder_start_token_id`` at decoder position 0, and return the logits for the first generated token.
      The loop passes the start token it resolved as the keyword ``decoder_start_token_id`` (generate() may override
      the config's), so an encoder-decoder's ``prepare_generation`` accepts it.
      ``max_length`` counts decoder positions including the start token (the loop feeds at most ``max_length - 1``
      more tokens).

``generation_step(params, state, tokens [B] int32)`` -> ``(logits [B, V] float32, state)``

    Feed the tokens chosen at the previous step (one per row) at the next position, update the cache, return the
    next-token logits. Rows that have finished still receive tokens (``pad_token_id``); their logits are ignored.

Rules for ``state`` (any pytree the model likes: dicts of arrays are simplest):

    * EVERY leaf has the batch as its leading axis, so the loop can reorder beams with ``jnp.take(leaf, idx, axis=0)``
      and expand a batch for beams / return sequences with ``jnp.repeat(leaf, n, axis=0)`` without knowing the model.
      Per-batch scalars (a cache write index) are stored per row, e.g. ``[B]`` int32 holding the same value.
    * Shapes and dtypes are identical on every step (it is a ``lax.while_loop`` carry).
    * The KV cache is ``[B, L, K, H]`` per layer (K kv heads, H head dim), written with ``lax.dynamic_update_slice``.
    * Logits are float32 whatever the compute dtype.

``params`` is the model's params pytree, passed explicitly so the jitted program takes it as an argument (no
constants baked in, one compilation serves any weights of the same shapes).

Everything else (output layout, logits processors, greedy / sampling / beam search, stopping, padding after EOS) is
the loop's job: decoder-only output is ``[prompt | new]``, encoder-decoder output is ``[decoder_start | new]``, and
processors see that sequence, as in Transformers.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import jax


@runtime_checkable
class GenerationModel(Protocol):
    """What ``GenerationMixin.generate`` needs from a model (see the module docstring for the contract)."""

    config: Any  # PretrainedConfig: is_encoder_decoder, decoder_start_token_id, vocab_size, pad/bos/eos ids
    params: Any

    def prepare_generation(
        self, params: Any, input_ids: jax.Array, attention_mask: jax.Array, max_length: int
    ) -> tuple[jax.Array, Any]:
        """Prefill (decoder-only) or encode + first decoder step (encoder-decoder); returns ([B, V] f32, state)."""
        ...

    def generation_step(self, params: Any, state: Any, tokens: jax.Array) -> tuple[jax.Array, Any]:
        """Feed ``tokens`` [B] int32 at the next position; returns ([B, V] float32 logits, new state)."""
        ...


# Optional hook: a model with a hard position limit (learned position embeddings, e.g. GPT-2's n_positions) defines
#     def generation_max_positions(self) -> int | None
# returning the number of positions it can embed; generate() then raises a clear error when
# prompt length + new tokens would exceed it. Models without it (rotary embeddings) are not limited by the loop.
