"""ELECTRA: BERT's encoder behind factorised embeddings (size E, projected to D when E != D), with the
discriminator (replaced-token detection) and generator (masked LM) heads and ELECTRA's own classification heads.

Shapes: B batch, C choices, T sequence length, E embedding size, D hidden size, V vocabulary, L labels.
"""

from __future__ import annotations

from typing import Any, ClassVar

import jax.numpy as jnp
from flax import linen as nn

from ...losses import cross_entropy
from ...ops.activations import get_activation
from ...ops.masks import padding_mask
from ...ops.unpadding import Packing
from ...outputs import BaseModelOutput, MaskedLMOutput, MultipleChoiceModelOutput, SequenceClassifierOutput
from ..bert.modeling import (
    BertEmbeddings,
    BertEncoder,
    BertEncoderHead,
    BertForQuestionAnsweringModule,
    BertForSequenceClassificationModule,
    BertForTokenClassificationModule,
    BertModule,
    BertPreTrainedModel,
    decode_vocab,
    dense,
)


def embedding_layer_norm(config, dtype, name=None) -> nn.LayerNorm:
    return nn.LayerNorm(epsilon=config.layer_norm_eps, dtype=dtype, name=name)


class ElectraEmbeddings(BertEmbeddings):
    """BERT's embeddings at width E (``embedding_size``) instead of D."""

    def setup(self):
        c = self.config
        init = nn.initializers.normal(c.initializer_range)
        embed = lambda num: nn.Embed(num, c.embedding_size, dtype=self.dtype, embedding_init=init)
        self.word_embeddings = embed(c.vocab_size)
        self.position_embeddings = embed(c.max_position_embeddings)
        if c.type_vocab_size:
            self.token_type_embeddings = embed(c.type_vocab_size)
        self.LayerNorm = embedding_layer_norm(c, self.dtype)
        self.dropout = nn.Dropout(c.hidden_dropout_prob)


class ElectraModule(BertModule):
    """Embeddings [B, T, E], ``embeddings_project`` to [B, T, D] when E != D, then BERT's layers; no pooler."""

    add_pooling_layer: bool = False  # ELECTRA has no pooler; the field stays for BertEncoderHead's call

    def setup(self):
        c = self.config
        self.embeddings = ElectraEmbeddings(c, self.dtype)
        if c.embedding_size != c.hidden_size:
            self.embeddings_project = dense(c, c.hidden_size, self.dtype)
        self.encoder = BertEncoder(c, self.dtype)

    def __call__(
        self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, inputs_embeds=None,
        deterministic=True, output_attentions=False, output_hidden_states=False,
    ):
        x = self.embeddings(input_ids, token_type_ids, position_ids, inputs_embeds, deterministic)  # [B, T, E]
        if self.config.embedding_size != self.config.hidden_size:
            x = self.embeddings_project(x)  # [B, T, D]
        if attention_mask is None:
            attention_mask = jnp.ones(x.shape[:2], jnp.int32)
        x, packing = Packing.start(x, attention_mask, self.unpad_to)
        x, hidden_states, attentions = self.encoder(
            x, padding_mask(attention_mask), deterministic, output_attentions, output_hidden_states, packing
        )
        return BaseModelOutput(x, hidden_states, attentions)


class _ElectraHead:
    """Mixin: the encoder is ELECTRA's, saved under ``electra``."""

    base_class: ClassVar[type] = ElectraModule
    base_name: ClassVar[str] = "electra"
    pooled: ClassVar[bool] = False


class ElectraForSequenceClassificationModule(_ElectraHead, BertForSequenceClassificationModule):
    pooled: ClassVar[bool] = False

    def classify(self, out, deterministic):
        """ElectraClassificationHead: dense -> gelu -> out_proj on the first token, dropout before each."""
        drop = nn.Dropout(self.dropout_rate())
        x = drop(out.last_hidden_state[:, 0], deterministic=deterministic)  # [B, D]
        x = get_activation("gelu")(dense(self.config, self.config.hidden_size, self.dtype, name="classifier_dense")(x))
        x = drop(x, deterministic=deterministic)
        return dense(self.config, self.config.num_labels, self.dtype, name="classifier_out_proj")(x)  # [B, L]


class ElectraForTokenClassificationModule(_ElectraHead, BertForTokenClassificationModule):
    pass


class ElectraForQuestionAnsweringModule(_ElectraHead, BertForQuestionAnsweringModule):
    pass


def sequence_summary(module: nn.Module, x, deterministic: bool, cls_index=None):
    """ElectraSequenceSummary: reduce [B, T, D] to [B, D'] by ``summary_type``, then the optional projection
    (to L when summary_proj_to_labels, else D), activation and dropouts."""
    c = module.config
    if c.summary_type == "last":
        x = x[:, -1]
    elif c.summary_type == "first":
        x = x[:, 0]
    elif c.summary_type == "mean":
        x = x.mean(axis=1)
    else:  # cls_index: the given position per row, the last one when none is given
        index = jnp.full(x.shape[:1], x.shape[1] - 1) if cls_index is None else cls_index.reshape(-1)
        x = jnp.take_along_axis(x, index[:, None, None], axis=1)[:, 0]  # [B, D]
    if c.summary_first_dropout:
        x = nn.Dropout(c.summary_first_dropout)(x, deterministic=deterministic)
    if c.summary_use_proj:
        to_labels = c.summary_proj_to_labels and c.num_labels > 0
        x = dense(c, c.num_labels if to_labels else c.hidden_size, module.dtype, name="sequence_summary")(x)
    if c.summary_activation:
        x = get_activation(c.summary_activation)(x)
    if c.summary_last_dropout:
        x = nn.Dropout(c.summary_last_dropout)(x, deterministic=deterministic)
    return x


class ElectraForMultipleChoiceModule(_ElectraHead, BertEncoderHead):
    @nn.compact
    def __call__(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, inputs_embeds=None,
                 labels=None, deterministic=True, output_attentions=False, output_hidden_states=False):
        ref = input_ids if input_ids is not None else inputs_embeds[..., 0]
        b, num_choices = ref.shape[:2]
        flat = lambda a: None if a is None else a.reshape((b * num_choices,) + a.shape[2:])  # [B, C, T] -> [B*C, T]
        out = self.encode(flat(input_ids), flat(attention_mask), flat(token_type_ids), flat(position_ids),
                          flat(inputs_embeds), deterministic, output_attentions, output_hidden_states)
        x = sequence_summary(self, out.last_hidden_state, deterministic)  # [B*C, D]
        logits = dense(self.config, 1, self.dtype, name="classifier")(x).reshape(b, num_choices).astype(jnp.float32)
        loss = None if labels is None else cross_entropy(logits, labels)
        return MultipleChoiceModelOutput(loss, logits, out.hidden_states, out.attentions)


class ElectraForPreTrainingOutput(SequenceClassifierOutput):
    """loss, logits [B, T] (one replaced-token score per token), hidden_states, attentions."""


def replaced_token_loss(logits, labels, attention_mask):
    """Binary cross-entropy over the real tokens (attention_mask == 1), as ElectraForPreTraining computes it."""
    logits, labels = logits.astype(jnp.float32), labels.astype(jnp.float32)
    per_token = jnp.maximum(logits, 0) - logits * labels + jnp.log1p(jnp.exp(-jnp.abs(logits)))  # [B, T]
    if attention_mask is None:
        return per_token.mean()
    active = attention_mask == 1
    return jnp.where(active, per_token, 0.0).sum() / active.sum()


class ElectraForPreTrainingModule(_ElectraHead, BertEncoderHead):
    """The discriminator: dense -> hidden_act -> dense_prediction, one logit per token."""

    @nn.compact
    def __call__(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, inputs_embeds=None,
                 labels=None, deterministic=True, output_attentions=False, output_hidden_states=False):
        out = self.encode(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, deterministic,
                          output_attentions, output_hidden_states)
        c = self.config
        x = get_activation(c.hidden_act)(dense(c, c.hidden_size, self.dtype, name="discriminator_dense")(out.last_hidden_state))
        logits = dense(c, 1, self.dtype, name="discriminator_dense_prediction")(x)[..., 0].astype(jnp.float32)  # [B, T]
        loss = None if labels is None else replaced_token_loss(logits, labels, attention_mask)
        return ElectraForPreTrainingOutput(loss, logits, out.hidden_states, out.attentions)


class ElectraForMaskedLMModule(_ElectraHead, BertEncoderHead):
    """The generator: dense to E -> gelu -> LayerNorm, then generator_lm_head onto the vocabulary (tied)."""

    @nn.compact
    def __call__(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, inputs_embeds=None,
                 labels=None, deterministic=True, output_attentions=False, output_hidden_states=False):
        out = self.encode(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, deterministic,
                          output_attentions, output_hidden_states)
        c = self.config
        x = get_activation("gelu")(dense(c, c.embedding_size, self.dtype, name="generator_dense")(out.last_hidden_state))
        x = embedding_layer_norm(c, self.dtype, name="generator_LayerNorm")(x)  # [B, T, E]
        embeddings = self.variables["params"][self.base_name]["embeddings"]["word_embeddings"]["embedding"]
        logits = decode_vocab(self, x, embeddings).astype(jnp.float32)  # [B, T, V]
        loss = None if labels is None else cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
        return MaskedLMOutput(loss, logits, out.hidden_states, out.attentions)


# -- public classes ----------------------------------------------------------------------------------------------
from . import convert as _convert  # noqa: E402
from .configuration import ElectraConfig  # noqa: E402


class ElectraPreTrainedModel(BertPreTrainedModel):
    config_class = ElectraConfig
    base_model_prefix = "electra"
    bucket_safe = False  # the discriminator's [B, T] logits and the multiple-choice summary ("mean") see every position

    @classmethod
    def partition_rules(cls, config):
        return _convert.partition_rules(config)


def _head(rules):
    return classmethod(lambda cls, config: _convert.head_table(config, rules(config)))


class ElectraModel(ElectraPreTrainedModel):
    module_class = ElectraModule
    has_base_prefix = False

    @classmethod
    def conversion_table(cls, config):
        return _convert.encoder_table(config)


class ElectraForSequenceClassification(ElectraPreTrainedModel):
    module_class = ElectraForSequenceClassificationModule
    conversion_table = _head(lambda config: _convert.sequence_classification_rules())


class ElectraForTokenClassification(ElectraPreTrainedModel):
    module_class = ElectraForTokenClassificationModule
    conversion_table = _head(lambda config: _convert.linear("classifier", "classifier"))


class ElectraForQuestionAnswering(ElectraPreTrainedModel):
    module_class = ElectraForQuestionAnsweringModule
    conversion_table = _head(lambda config: _convert.linear("qa_outputs", "qa_outputs"))


class ElectraForMultipleChoice(ElectraPreTrainedModel):
    module_class = ElectraForMultipleChoiceModule
    conversion_table = _head(_convert.multiple_choice_rules)

    def dummy_inputs(self):
        ids = jnp.ones((1, 2, 8), jnp.int32)
        return {"input_ids": ids, "attention_mask": ids}


class ElectraForPreTraining(ElectraPreTrainedModel):
    module_class = ElectraForPreTrainingModule
    conversion_table = _head(lambda config: _convert.pretraining_rules())


class ElectraForMaskedLM(ElectraPreTrainedModel):
    module_class = ElectraForMaskedLMModule

    @classmethod
    def conversion_table(cls, config):
        return _convert.masked_lm_table(config)
