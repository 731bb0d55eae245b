"""MPNet: BERT's post-norm encoder with a T5-style relative position bias shared by all layers, fairseq position
ids, and RoBERTa's heads.

Shapes: B batch, C choices, T sequence length, D hidden size, N heads, H head dim (D = N * H), V vocabulary,
L labels.
"""

from __future__ import annotations

from typing import Any, ClassVar

import jax.numpy as jnp
from flax import linen as nn

from ...ops.activations import get_activation
from ...ops.masks import padding_mask
from ...ops.unpadding import Packing
from ...losses import cross_entropy
from ...outputs import BaseModelOutputWithPooling, MaskedLMOutput
from ..bert.modeling import (
    BertAttention,
    BertEncoderHead,
    BertForMultipleChoiceModule,
    BertForQuestionAnsweringModule,
    BertForTokenClassificationModule,
    BertLayer,
    BertPreTrainedModel,
    dense,
    embed,
    layer_norm,
    multi_head_attention,
)
from ..roberta.modeling import RobertaForSequenceClassificationModule
from ..t5.modeling import relative_position_bucket
from .configuration import POSITION_BUCKETS, MPNetConfig

# Transformers' MPNetEmbeddings numbers positions from padding_idx + 1 with padding_idx fixed at 1 (not
# config.pad_token_id), and buckets relative positions up to this distance.
PADDING_IDX = 1
MAX_DISTANCE = 128


class MPNetEmbeddings(nn.Module):
    config: Any
    dtype: Any = jnp.float32

    def setup(self):
        c = self.config
        self.word_embeddings = embed(c, c.vocab_size, self.dtype)
        self.position_embeddings = embed(c, c.max_position_embeddings, self.dtype)
        self.LayerNorm = layer_norm(c, self.dtype)
        self.dropout = nn.Dropout(c.hidden_dropout_prob)

    def __call__(self, input_ids, position_ids, inputs_embeds=None, deterministic=True):
        if position_ids is None:
            if input_ids is None:
                position_ids = jnp.arange(inputs_embeds.shape[1])[None, :] + PADDING_IDX + 1  # [1, T]
            else:  # fairseq: count real tokens from padding_idx + 1, padding keeps padding_idx
                not_pad = (input_ids != PADDING_IDX).astype(jnp.int32)
                position_ids = jnp.cumsum(not_pad, axis=1) * not_pad + PADDING_IDX  # [B, T]
        x = self.word_embeddings(input_ids) if inputs_embeds is None else inputs_embeds.astype(self.dtype)  # [B, T, D]
        x = x + self.position_embeddings(position_ids)
        return self.dropout(self.LayerNorm(x), deterministic=deterministic)


class MPNetAttention(BertAttention):
    """BERT's attention block (q, k, v, o, residual LayerNorm) with the relative position bias added to the scores."""

    def __call__(self, x, mask, bias, deterministic=True, output_attentions=False, packing=None):
        c = self.config
        q, k, v = (proj(x) for proj in (self.query, self.key, self.value))  # [B, T, D] (or packed [N, D])
        rate = c.attention_probs_dropout_prob
        rng = None if deterministic or not rate else self.make_rng("dropout")
        context, weights = multi_head_attention(q, k, v, c.num_attention_heads, packing, mask=mask, bias=bias,
                                                dropout_rate=rate, dropout_rng=rng, return_weights=output_attentions)
        out = self.dropout(self.out(context), deterministic=deterministic)
        return self.LayerNorm(out + x), weights


class MPNetLayer(BertLayer):
    """BERT's layer (its feed-forward block reused) around MPNetAttention."""

    def setup(self):
        c = self.config
        self.attention = MPNetAttention(c, self.dtype)
        self.intermediate = dense(c, c.intermediate_size, self.dtype)
        self.output = dense(c, c.hidden_size, self.dtype)
        self.LayerNorm = layer_norm(c, self.dtype)
        self.dropout = nn.Dropout(c.hidden_dropout_prob)
        self.act = get_activation(c.hidden_act)

    def __call__(self, x, mask, bias, deterministic=True, output_attentions=False, packing=None):
        x, weights = self.attention(x, mask, bias, deterministic, output_attentions, packing)
        return self.feed_forward(x, deterministic), weights


class MPNetEncoder(nn.Module):
    config: Any
    dtype: Any = jnp.float32

    def setup(self):
        c = self.config
        self.layer = [MPNetLayer(c, self.dtype) for _ in range(c.num_hidden_layers)]
        self.relative_attention_bias = nn.Embed(
            c.relative_attention_num_buckets, c.num_attention_heads, dtype=self.dtype,
            embedding_init=nn.initializers.normal(c.initializer_range),
        )

    def position_bias(self, length: int):
        """[1, N, T, T] bias from the bucketed ``key - query`` distance (positions 0..T-1, padding included)."""
        relative = jnp.arange(length)[None, :] - jnp.arange(length)[:, None]  # [T, T]
        buckets = relative_position_bucket(relative, True, POSITION_BUCKETS, MAX_DISTANCE)
        return self.relative_attention_bias(buckets).transpose(2, 0, 1)[None]  # [T, T, N] -> [1, N, T, T]

    def __call__(self, x, mask, deterministic=True, output_attentions=False, output_hidden_states=False, packing=None):
        unpack = (lambda a: a) if packing is None else packing.unpack
        length = x.shape[1] if packing is None else packing.length
        bias = self.position_bias(length)
        hidden_states, attentions = (unpack(x),), ()
        for layer in self.layer:
            x, weights = layer(x, mask, bias, deterministic, output_attentions, packing)
            hidden_states += (unpack(x),)
            attentions += (weights,)
        return (hidden_states[-1], hidden_states if output_hidden_states else None,
                attentions if output_attentions else None)


class MPNetModule(nn.Module):
    """The bare encoder: embeddings, layers and (optionally) the tanh pooler over the first token."""

    config: Any
    dtype: Any = jnp.float32
    add_pooling_layer: bool = True
    unpad_to: int = 0  # > 0: unpadded mode with this many packed token slots (see fxformers.ops.unpadding)

    def setup(self):
        self.embeddings = MPNetEmbeddings(self.config, self.dtype)
        self.encoder = MPNetEncoder(self.config, self.dtype)
        if self.add_pooling_layer:
            self.pooler = dense(self.config, self.config.hidden_size, self.dtype, name="pooler")

    def __call__(
        self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, inputs_embeds=None,
        deterministic=True, output_attentions=False, output_hidden_states=False,
    ):
        del token_type_ids  # MPNet has no token types; ignored, as Transformers does (a BERT tokenizer sends them)
        x = self.embeddings(input_ids, position_ids, inputs_embeds, deterministic)  # [B, T, D]
        if attention_mask is None:
            attention_mask = jnp.ones(x.shape[:2], jnp.int32)
        x, packing = Packing.start(x, attention_mask, self.unpad_to)
        x, hidden_states, attentions = self.encoder(
            x, padding_mask(attention_mask), deterministic, output_attentions, output_hidden_states, packing
        )
        pooled = jnp.tanh(self.pooler(x[:, 0])) if self.add_pooling_layer else None  # [B, D]
        return BaseModelOutputWithPooling(x, pooled, hidden_states, attentions)


class _MPNetHead:
    """Mixin: the encoder is MPNet's, saved under ``mpnet``; head dropout is always hidden_dropout_prob."""

    base_class: ClassVar[type] = MPNetModule
    base_name: ClassVar[str] = "mpnet"

    def dropout_rate(self) -> float:
        return self.config.hidden_dropout_prob


class MPNetForSequenceClassificationModule(_MPNetHead, RobertaForSequenceClassificationModule):
    pass  # classifier.dense -> tanh -> classifier.out_proj on the first token, as RoBERTa


class MPNetForTokenClassificationModule(_MPNetHead, BertForTokenClassificationModule):
    pass


class MPNetForQuestionAnsweringModule(_MPNetHead, BertForQuestionAnsweringModule):
    pass


class MPNetForMultipleChoiceModule(_MPNetHead, BertForMultipleChoiceModule):
    pass  # the pooler output, dropout, a 1-unit classifier


class MPNetForMaskedLMModule(_MPNetHead, BertEncoderHead):
    """lm_head: dense -> exact gelu -> layer_norm -> decoder.

    Tied (the usual case): the word embeddings plus ``lm_head.bias`` (Transformers ties ``decoder.bias`` to it).
    Untied: Transformers 5 ties neither, so the decoder adds its own ``decoder.bias``; ``lm_head.bias`` is kept
    (unused) so that the checkpoint round-trips.
    """

    @nn.compact
    def __call__(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, inputs_embeds=None,
                 labels=None, deterministic=True, output_attentions=False, output_hidden_states=False):
        out = self.encode(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, deterministic,
                          output_attentions, output_hidden_states)
        c = self.config
        x = dense(c, c.hidden_size, self.dtype, name="lm_head_dense")(out.last_hidden_state)
        x = layer_norm(c, self.dtype, name="lm_head_layer_norm")(nn.gelu(x, approximate=False))  # exact gelu
        bias = self.param("bias", nn.initializers.zeros, (c.vocab_size,))
        if c.tie_word_embeddings:
            embeddings = self.variables["params"][self.base_name]["embeddings"]["word_embeddings"]["embedding"]
            logits = x @ embeddings.astype(self.dtype).T + bias.astype(self.dtype)  # [B, T, V]
        else:
            logits = nn.Dense(c.vocab_size, dtype=self.dtype, bias_init=nn.initializers.zeros, name="decoder")(x)
        logits = logits.astype(jnp.float32)
        loss = None if labels is None else cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
        return MaskedLMOutput(loss, logits, out.hidden_states, out.attentions)


# -- public classes ----------------------------------------------------------------------------------------------
from . import convert as _convert  # noqa: E402
from ...convert import linear  # noqa: E402


class MPNetPreTrainedModel(BertPreTrainedModel):
    config_class = MPNetConfig
    base_model_prefix = "mpnet"
    vocab_params = BertPreTrainedModel.vocab_params + ((r"^decoder/bias$", 0),)

    @classmethod
    def partition_rules(cls, config):
        return _convert.partition_rules(config)

    def max_input_length(self):
        # positions start at padding_idx + 1 = 2
        return self.config.max_position_embeddings - PADDING_IDX - 1


def _head(pooler: bool, rules: list, ignore: tuple = ()):
    return classmethod(lambda cls, config: _convert.head_table(pooler, rules, ignore))


class MPNetModel(MPNetPreTrainedModel):
    module_class = MPNetModule
    has_base_prefix = False
    optional_weights = (r"^pooler/",)

    @classmethod
    def conversion_table(cls, config):
        return _convert.encoder_table(pooler=True)


class MPNetForSequenceClassification(MPNetPreTrainedModel):
    module_class = MPNetForSequenceClassificationModule
    conversion_table = _head(False, linear("classifier.dense", "classifier_dense") + linear("classifier.out_proj", "classifier_out_proj"))


class MPNetForTokenClassification(MPNetPreTrainedModel):
    module_class = MPNetForTokenClassificationModule
    conversion_table = _head(False, linear("classifier", "classifier"))


class MPNetForQuestionAnswering(MPNetPreTrainedModel):
    module_class = MPNetForQuestionAnsweringModule
    conversion_table = _head(False, linear("qa_outputs", "qa_outputs"))


class MPNetForMultipleChoice(MPNetPreTrainedModel):
    module_class = MPNetForMultipleChoiceModule
    conversion_table = _head(True, linear("classifier", "classifier"))

    def dummy_inputs(self):
        ids = jnp.ones((1, 2, 8), jnp.int32)
        return {"input_ids": ids, "attention_mask": ids}


class MPNetForMaskedLM(MPNetPreTrainedModel):
    module_class = MPNetForMaskedLMModule

    @classmethod
    def conversion_table(cls, config):
        return _convert.masked_lm_table(config)
