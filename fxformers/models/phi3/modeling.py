"""Phi-3: the Llama modules (q/k/v and gate/up kernels are the checkpoint's fused projections, split on load) with
dropout on both residual branches (``resid_pdrop``), partial rotary and LongRoPE from the config.

Shapes: B batch, T length, D hidden size. Generation note: Transformers drops the KV cache and re-encodes the whole
sequence once, at the step where a generated sequence grows past ``original_max_position_embeddings`` under
LongRoPE; fxformers keeps its cache, so tokens generated after that crossing can differ (the forward pass itself
switches between short and long factors exactly as Transformers does).
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import linen as nn

from ...generation.decoder_only import DecoderOnlyGenerationMixin
from ...ops.norms import RMSNorm
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
        self.layers = [Phi3DecoderLayer(c, i, self.dtype) for i in range(c.num_hidden_layers)]
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

    @classmethod
    def conversion_table(cls, config):
        return _convert.causal_lm_table(config)


class Phi3ForSequenceClassification(SequenceClassificationMixin, Phi3PreTrainedModel):
    module_class = Phi3ForSequenceClassificationModule

    @classmethod
    def conversion_table(cls, config):
        return _convert.base_table(config).prefixed("model.", "model/") + cls.head_table()
