"""The generation protocol (:mod:`.protocol`) for decoder-only models, written once for all of them.

A decoder-only linen module plugs in by accepting, besides ``input_ids`` / ``attention_mask`` / ``position_ids``:

* ``cache``: a sequence (one entry per layer) of ``{"key", "value"}`` arrays ``[B, L, K, H]``, or None;
* ``cache_index``: int32 scalar, the cache slot of the first token of this call;
* ``only_last_logits``: bool (static), project only the last position onto the vocabulary;

and returning an output with ``logits`` and ``past_key_values`` (the updated cache). With a cache,
``attention_mask`` is ``[B, L]`` over cache slots (the current tokens' slots included). The model class supplies
``cache_spec() -> (num_layers, kv_heads, head_dim)``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from ..ops.kv_cache import init_layer_cache, positions_from_mask
from .utils import GenerationMixin


class DecoderOnlyGenerationMixin(GenerationMixin):
    """prepare_generation / generation_step for modules following the decoder-only cache convention above."""

    def init_cache(self, batch: int, max_length: int) -> list[dict]:
        layers, kv_heads, head_dim = self.cache_spec()
        return [init_layer_cache(batch, max_length, kv_heads, head_dim, self.dtype) for _ in range(layers)]

    def prepare_generation(self, params: Any, input_ids, attention_mask, max_length: int):
        b, t = input_ids.shape
        if max_length < t:
            raise ValueError(f"max_length {max_length} is shorter than the prompt ({t} tokens).")
        attention_mask = attention_mask.astype(jnp.int32)
        cache_mask = jnp.zeros((b, max_length), jnp.int32).at[:, :t].set(attention_mask)  # [B, L]
        position_ids = positions_from_mask(attention_mask)  # [B, T]
        out = self.module.apply(
            {"params": params}, input_ids, attention_mask=cache_mask, position_ids=position_ids,
            cache=self.init_cache(b, max_length), cache_index=jnp.zeros((), jnp.int32), only_last_logits=True,
        )
        state = {
            "cache": out.past_key_values,
            "mask": cache_mask,
            "position": position_ids[:, -1] + 1,  # [B] next position id
            "index": jnp.full((b,), t, jnp.int32),  # [B] next cache slot (same for every row)
        }
        return out.logits[:, -1].astype(jnp.float32), state

    def generation_step(self, params: Any, state: dict, tokens):
        index = state["index"][0]
        b = tokens.shape[0]
        mask = jax.lax.dynamic_update_slice(state["mask"], jnp.ones((b, 1), jnp.int32), (jnp.zeros((), jnp.int32), index))
        out = self.module.apply(
            {"params": params}, tokens[:, None].astype(jnp.int32), attention_mask=mask,
            position_ids=state["position"][:, None], cache=state["cache"], cache_index=index, only_last_logits=True,
        )
        new_state = {"cache": out.past_key_values, "mask": mask, "position": state["position"] + 1, "index": state["index"] + 1}
        return out.logits[:, -1].astype(jnp.float32), new_state
