"""Phi-3: the Llama modules (q/k/v and gate/up kernels are the checkpoint's fused projections, split on load) with
dropout on both residual branches (``resid_pdrop``), partial rotary and LongRoPE from the config.

Shapes: B batch, T length, L cache slots, D hidden size, V vocabulary.

Generation under LongRoPE: Transformers drops the KV cache and re-encodes the whole sequence once, at the step where
the sequence grows past ``original_max_position_embeddings`` (``Phi3ForCausalLM.prepare_inputs_for_generation``), so
that every cached key is recomputed with the long factors. ``Phi3ForCausalLM.generation_step`` does the same inside
the compiled loop (a ``lax.cond`` between the one-token step and a full re-encode of the token history).
"""

from __future__ import annotations

from typing import Any, Optional

import jax
import jax.numpy as jnp
from flax import linen as nn

from ...generation.decoder_only import DecoderOnlyGenerationMixin
from ...ops.kv_cache import positions_from_mask
from ...ops.norms import RMSNorm
from ...ops.rotary import rope_parameters
from ...ops.remat import maybe_remat
from ..decoder_heads import DecoderForSequenceClassificationModule, SequenceClassificationMixin
from ..llama.modeling import LlamaDecoderLayer, LlamaForCausalLMModule, LlamaModule, LlamaPreTrainedModel
from . import convert as _convert
from .configuration import Phi3Config


class Phi3DecoderLayer(LlamaDecoderLayer):
    def setup(self):
        super().setup()
        self.resid_attn_dropout = nn.Dropout(self.config.resid_pdrop)
        self.resid_mlp_dropout = nn.Dropout(self.config.resid_pdrop)

    def __call__(self, x, cos, sin, key_mask, cache, cache_index, deterministic, output_attentions):
        h, cache, weights = self.self_attn(
            self.input_layernorm(x), cos, sin, key_mask, cache, cache_index, deterministic, output_attentions
        )
        x = x + self.resid_attn_dropout(h, deterministic=deterministic)
        h = self.mlp(self.post_attention_layernorm(x))
        return x + self.resid_mlp_dropout(h, deterministic=deterministic), cache, weights


class Phi3Module(LlamaModule):
    def setup(self):
        c = self.config
        self.embed_tokens = nn.Embed(
            c.vocab_size, c.hidden_size, dtype=self.dtype, embedding_init=nn.initializers.normal(c.initializer_range)
        )
        self.layers = [maybe_remat(Phi3DecoderLayer, c)(c, i, self.dtype) for i in range(c.num_hidden_layers)]
        self.norm = RMSNorm(c.rms_norm_eps, self.dtype)


class Phi3ForCausalLMModule(LlamaForCausalLMModule):
    base_module = Phi3Module


class Phi3ForSequenceClassificationModule(DecoderForSequenceClassificationModule):
    base_module = Phi3Module


# -- public classes -------------------------------------------------------------------------------------------------
class Phi3PreTrainedModel(LlamaPreTrainedModel):
    config_class = Phi3Config

    @classmethod
    def partition_rules(cls, config):
        return _convert.partition_rules(config)


class Phi3Model(Phi3PreTrainedModel):
    module_class = Phi3Module
    has_base_prefix = False

    @classmethod
    def conversion_table(cls, config):
        return _convert.base_table(config)


class Phi3ForCausalLM(DecoderOnlyGenerationMixin, Phi3PreTrainedModel):
    module_class = Phi3ForCausalLMModule
    needs_prompt_offset = True  # the generation loop passes the caller's prompt offset in the (bucketed) cache

    @classmethod
    def conversion_table(cls, config):
        return _convert.causal_lm_table(config)

    def _reencode_length(self) -> Optional[int]:
        """The sequence length past which the cache is rebuilt (LongRoPE only; other ropes give the same keys)."""
        p = rope_parameters(self.config)
        return p["original_max_position_embeddings"] if p["rope_type"] == "longrope" else None

    def prepare_generation(self, params: Any, input_ids, attention_mask, max_length: int, prompt_offset=0):
        logits, state = super().prepare_generation(params, input_ids, attention_mask, max_length)
        original = self._reencode_length()
        if original is not None and max_length > original:  # the crossing can happen: keep the token history
            b, t = input_ids.shape
            state["tokens"] = jnp.zeros((b, max_length), jnp.int32).at[:, :t].set(input_ids.astype(jnp.int32))  # [B, L]
            state["offset"] = jnp.full((b,), prompt_offset, jnp.int32)  # per row, so beam reordering carries it
        return logits, state

    def generation_step(self, params: Any, state: dict, tokens):
        if "tokens" not in state:
            return super().generation_step(params, state, tokens)
        index = state["index"][0]
        zero = jnp.zeros((), jnp.int32)
        history = jax.lax.dynamic_update_slice(state["tokens"], tokens[:, None].astype(jnp.int32), (zero, index))
        base = {k: state[k] for k in ("cache", "mask", "position", "index")}

        def reencode(st):
            b, length = history.shape
            mask = jax.lax.dynamic_update_slice(st["mask"], jnp.ones((b, 1), jnp.int32), (zero, index))  # [B, L]
            out = self.module.apply(
                {"params": params}, history, attention_mask=mask, position_ids=positions_from_mask(mask),
                cache=self.init_cache(b, length), cache_index=zero, only_last_logits=False,
            )
            logits = jax.lax.dynamic_index_in_dim(out.logits, index, axis=1, keepdims=False)  # [B, V]
            new = {"cache": out.past_key_values, "mask": mask, "position": st["position"] + 1, "index": st["index"] + 1}
            return logits.astype(jnp.float32), new

        # slot `index` holds user position index - offset; Transformers re-encodes when its input reaches
        # original + 1 tokens with at most `original` of them cached, i.e. when this token sits at user slot `original`
        crossing = index - state["offset"][0] == self._reencode_length()
        logits, new = jax.lax.cond(
            crossing, reencode, lambda st: DecoderOnlyGenerationMixin.generation_step(self, params, st, tokens), base
        )
        return logits, {**new, "tokens": history, "offset": state["offset"]}


class Phi3ForSequenceClassification(SequenceClassificationMixin, Phi3PreTrainedModel):
    module_class = Phi3ForSequenceClassificationModule

    @classmethod
    def conversion_table(cls, config):
        return _convert.base_table(config).prefixed("model.", "model/") + cls.head_table()
