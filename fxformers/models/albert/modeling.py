"""ALBERT: factorised embeddings (width E, mapped to D inside the encoder) and cross-layer parameter sharing:
``num_hidden_groups`` parameter groups of ``inner_group_num`` layers each; step i of ``num_hidden_layers`` runs
group ``int(i / (num_hidden_layers / num_hidden_groups))``.

Shapes: B batch, C choices, T sequence length, E embedding size, D hidden size, F intermediate size, V vocabulary,
L labels.
"""

from __future__ import annotations

from typing import Any, ClassVar

import jax.numpy as jnp
from flax import linen as nn

from ...losses import cross_entropy
from ...ops.activations import get_activation
from ...ops.masks import padding_mask
from ...ops.unpadding import Packing
from ...outputs import BaseModelOutputWithPooling, MaskedLMOutput, ModelOutput
from ..bert.modeling import (
    BertEmbeddings,
    BertEncoderHead,
    BertForMultipleChoiceModule,
    BertForQuestionAnsweringModule,
    BertForSequenceClassificationModule,
    BertForTokenClassificationModule,
    BertModule,
    BertPreTrainedModel,
    apply_chunked,
    decode_vocab,
    dense,
    layer_norm,
    multi_head_attention,
)


class AlbertEmbeddings(BertEmbeddings):
    """BERT's embeddings at width E (``embedding_size``)."""

    def setup(self):
        c = self.config
        init = nn.initializers.normal(c.initializer_range)
        embed = lambda num: nn.Embed(num, c.embedding_size, dtype=self.dtype, embedding_init=init)
        self.word_embeddings = embed(c.vocab_size)
        self.position_embeddings = embed(c.max_position_embeddings)
        if c.type_vocab_size:
            self.token_type_embeddings = embed(c.type_vocab_size)
        self.LayerNorm = layer_norm(c, self.dtype)
        self.dropout = nn.Dropout(c.hidden_dropout_prob)


class AlbertAttention(nn.Module):
    config: Any
    dtype: Any = jnp.float32

    def setup(self):
        c = self.config
        self.query = dense(c, c.hidden_size, self.dtype)
        self.key = dense(c, c.hidden_size, self.dtype)
        self.value = dense(c, c.hidden_size, self.dtype)
        self.dense = dense(c, c.hidden_size, self.dtype)
        self.LayerNorm = layer_norm(c, self.dtype)
        self.dropout = nn.Dropout(c.hidden_dropout_prob)

    def __call__(self, x, mask, deterministic=True, output_attentions=False, packing=None):
        c = self.config
        q, k, v = (proj(x) for proj in (self.query, self.key, self.value))  # [B, T, D] (or packed [N, D])
        rate = c.attention_probs_dropout_prob
        rng = None if deterministic or not rate else self.make_rng("dropout")
        context, weights = multi_head_attention(q, k, v, c.num_attention_heads, packing, mask=mask, dropout_rate=rate,
                                                dropout_rng=rng, return_weights=output_attentions)
        out = self.dropout(self.dense(context), deterministic=deterministic)
        return self.LayerNorm(x + out), weights


class AlbertLayer(nn.Module):
    config: Any
    dtype: Any = jnp.float32

    def setup(self):
        c = self.config
        self.attention = AlbertAttention(c, self.dtype)
        self.ffn = dense(c, c.intermediate_size, self.dtype)
        self.ffn_output = dense(c, c.hidden_size, self.dtype)
        self.full_layer_layer_norm = layer_norm(c, self.dtype)
        self.act = get_activation(c.hidden_act)

    def __call__(self, x, mask, deterministic=True, output_attentions=False, packing=None):
        x, weights = self.attention(x, mask, deterministic, output_attentions, packing)
        # ALBERT applies no dropout to the feed-forward output (Transformers defines one and never calls it)
        h = apply_chunked(lambda part: self.ffn_output(self.act(self.ffn(part))), x, self.config.chunk_size_feed_forward)
        return self.full_layer_layer_norm(h + x), weights


class AlbertLayerGroup(nn.Module):
    config: Any
    dtype: Any = jnp.float32

    def setup(self):
        self.albert_layers = [AlbertLayer(self.config, self.dtype) for _ in range(self.config.inner_group_num)]

    def __call__(self, x, mask, deterministic=True, output_attentions=False, packing=None):
        """-> (x, the output of each inner layer, the attention weights of each)."""
        outputs, attentions = (), ()
        for layer in self.albert_layers:
            x, weights = layer(x, mask, deterministic, output_attentions, packing)
            outputs += (x,)
            attentions += (weights,)
        return x, outputs, attentions


class AlbertTransformer(nn.Module):
    config: Any
    dtype: Any = jnp.float32

    def setup(self):
        c = self.config
        self.embedding_hidden_mapping_in = dense(c, c.hidden_size, self.dtype)
        self.albert_layer_groups = [AlbertLayerGroup(c, self.dtype) for _ in range(c.num_hidden_groups)]

    def __call__(self, x, attention_mask, unpad_to=0, deterministic=True, output_attentions=False,
                 output_hidden_states=False):
        """Embeddings [B, T, E] -> (last hidden state, hidden states, attentions): one hidden state per layer call
        (num_hidden_layers * inner_group_num) after the mapped embeddings, as Transformers records them."""
        c = self.config
        x = self.embedding_hidden_mapping_in(x)  # [B, T, D]
        x, packing = Packing.start(x, attention_mask, unpad_to)
        unpack = (lambda a: a) if packing is None else packing.unpack
        mask = padding_mask(attention_mask)
        hidden_states, attentions = (unpack(x),), ()
        for i in range(c.num_hidden_layers):
            group = self.albert_layer_groups[c.group_of_layer(i)]  # the same module, hence the same weights
            x, outputs, weights = group(x, mask, deterministic, output_attentions, packing)
            hidden_states += tuple(unpack(h) for h in outputs)
            attentions += weights
        return (hidden_states[-1], hidden_states if output_hidden_states else None,
                attentions if output_attentions else None)


class AlbertModule(BertModule):
    """Embeddings, the shared-layer transformer and the tanh pooler over the first token."""

    def setup(self):
        c = self.config
        self.embeddings = AlbertEmbeddings(c, self.dtype)
        self.encoder = AlbertTransformer(c, self.dtype)
        if self.add_pooling_layer:
            self.pooler = dense(c, c.hidden_size, self.dtype)

    def __call__(
        self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, inputs_embeds=None,
        deterministic=True, output_attentions=False, output_hidden_states=False,
    ):
        x = self.embeddings(input_ids, token_type_ids, position_ids, inputs_embeds, deterministic)  # [B, T, E]
        if attention_mask is None:
            attention_mask = jnp.ones(x.shape[:2], jnp.int32)
        x, hidden_states, attentions = self.encoder(x, attention_mask, self.unpad_to, deterministic, output_attentions,
                                                    output_hidden_states)
        pooled = jnp.tanh(self.pooler(x[:, 0])) if self.add_pooling_layer else None  # [B, D]
        return BaseModelOutputWithPooling(x, pooled, hidden_states, attentions)


class _AlbertHead:
    """Mixin: the encoder is ALBERT's, saved under ``albert``; heads drop out with ``classifier_dropout_prob``."""

    base_class: ClassVar[type] = AlbertModule
    base_name: ClassVar[str] = "albert"

    def dropout_rate(self) -> float:
        c = self.config
        return c.classifier_dropout_prob if c.classifier_dropout_prob is not None else c.hidden_dropout_prob


class AlbertForSequenceClassificationModule(_AlbertHead, BertForSequenceClassificationModule):
    pass


class AlbertForTokenClassificationModule(_AlbertHead, BertForTokenClassificationModule):
    pass


class AlbertForQuestionAnsweringModule(_AlbertHead, BertForQuestionAnsweringModule):
    pass


class AlbertForMultipleChoiceModule(_AlbertHead, BertForMultipleChoiceModule):
    pass


def predict_tokens(module: nn.Module, x, word_embeddings):
    """AlbertMLMHead: dense to E -> hidden_act -> LayerNorm -> decoder onto the vocabulary (tied) + bias."""
    c = module.config
    x = get_activation(c.hidden_act)(dense(c, c.embedding_size, module.dtype, name="predictions_dense")(x))
    x = layer_norm(c, module.dtype, name="predictions_LayerNorm")(x)  # [B, T, E]
    if c.tie_word_embeddings:
        return decode_vocab(module, x, word_embeddings).astype(jnp.float32)  # [B, T, V]
    # untied, the decoder adds its own bias; Transformers still stores predictions.bias, unused: keep it to save it
    module.param("bias", nn.initializers.zeros, (c.vocab_size,))
    return nn.Dense(c.vocab_size, dtype=module.dtype, name="decoder")(x).astype(jnp.float32)


class AlbertForMaskedLMModule(_AlbertHead, BertEncoderHead):
    @nn.compact
    def __call__(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, inputs_embeds=None,
                 labels=None, deterministic=True, output_attentions=False, output_hidden_states=False):
        out = self.encode(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, deterministic,
                          output_attentions, output_hidden_states)
        embeddings = self.variables["params"][self.base_name]["embeddings"]["word_embeddings"]["embedding"]
        logits = predict_tokens(self, out.last_hidden_state, embeddings)
        loss = None if labels is None else cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
        return MaskedLMOutput(loss, logits, out.hidden_states, out.attentions)


class AlbertForPreTrainingOutput(ModelOutput):
    loss: Any = None
    prediction_logits: Any = None  # [B, T, V]
    sop_logits: Any = None  # [B, L] sentence-order prediction
    hidden_states: Any = None
    attentions: Any = None


class AlbertForPreTrainingModule(_AlbertHead, BertEncoderHead):
    """Masked LM plus sentence-order prediction on the pooled output; the loss needs both label sets."""

    pooled: ClassVar[bool] = True

    @nn.compact
    def __call__(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, inputs_embeds=None,
                 labels=None, sentence_order_label=None, deterministic=True, output_attentions=False,
                 output_hidden_states=False):
        out = self.encode(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, deterministic,
                          output_attentions, output_hidden_states)
        embeddings = self.variables["params"][self.base_name]["embeddings"]["word_embeddings"]["embedding"]
        logits = predict_tokens(self, out.last_hidden_state, embeddings)
        x = nn.Dropout(self.config.classifier_dropout_prob)(out.pooler_output, deterministic=deterministic)
        sop = dense(self.config, self.config.num_labels, self.dtype, name="sop_classifier")(x).astype(jnp.float32)
        loss = None
        if labels is not None and sentence_order_label is not None:
            loss = cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1)) + cross_entropy(
                sop.reshape(-1, 2), sentence_order_label.reshape(-1))
        return AlbertForPreTrainingOutput(loss, logits, sop, out.hidden_states, out.attentions)


# -- public classes ----------------------------------------------------------------------------------------------
from . import convert as _convert  # noqa: E402
from .configuration import AlbertConfig  # noqa: E402


class AlbertPreTrainedModel(BertPreTrainedModel):
    config_class = AlbertConfig
    base_model_prefix = "albert"
    bucket_safe = False  # ForPreTraining returns prediction_logits [B, T, V], which the bucket cut does not know
    vocab_params = BertPreTrainedModel.vocab_params + ((r"^decoder/bias$", 0),)

    @classmethod
    def partition_rules(cls, config):
        return _convert.partition_rules(config)


def _head(pooler: bool, rules: list):
    return classmethod(lambda cls, config: _convert.head_table(pooler, rules))


class AlbertModel(AlbertPreTrainedModel):
    module_class = AlbertModule
    has_base_prefix = False
    optional_weights = (r"^pooler/",)

    @classmethod
    def conversion_table(cls, config):
        return _convert.encoder_table(pooler=True)


class AlbertForSequenceClassification(AlbertPreTrainedModel):
    module_class = AlbertForSequenceClassificationModule
    conversion_table = _head(True, _convert.linear("classifier", "classifier"))


class AlbertForTokenClassification(AlbertPreTrainedModel):
    module_class = AlbertForTokenClassificationModule
    conversion_table = _head(False, _convert.linear("classifier", "classifier"))


class AlbertForQuestionAnswering(AlbertPreTrainedModel):
    module_class = AlbertForQuestionAnsweringModule
    conversion_table = _head(False, _convert.linear("qa_outputs", "qa_outputs"))


class AlbertForMultipleChoice(AlbertPreTrainedModel):
    module_class = AlbertForMultipleChoiceModule
    conversion_table = _head(True, _convert.linear("classifier", "classifier"))

    def dummy_inputs(self):
        ids = jnp.ones((1, 2, 8), jnp.int32)
        return {"input_ids": ids, "attention_mask": ids}


class AlbertForMaskedLM(AlbertPreTrainedModel):
    module_class = AlbertForMaskedLMModule

    @classmethod
    def conversion_table(cls, config):
        return _convert.masked_lm_table(config)


class AlbertForPreTraining(AlbertPreTrainedModel):
    module_class = AlbertForPreTrainingModule

    @classmethod
    def conversion_table(cls, config):
        return _convert.pretraining_table(config)
