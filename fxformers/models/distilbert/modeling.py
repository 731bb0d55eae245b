"""DistilBERT: a 6-layer BERT without token types or pooler, and its task heads.

Shapes: B batch, C choices, T sequence length, D dim, N heads, H head dim, F hidden_dim, V vocabulary, L labels.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from ...losses import cross_entropy, sequence_classification_loss, span_loss
from ...modeling import PreTrainedModel
from ...ops.activations import get_activation
from ...ops.masks import padding_mask
from ...ops.unpadding import Packing
from ...ops.remat import maybe_remat
from ...outputs import (
    BaseModelOutput,
    MaskedLMOutput,
    MultipleChoiceModelOutput,
    QuestionAnsweringModelOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)
from ..bert.modeling import apply_chunked, decode_vocab, multi_head_attention, run_layers
from . import convert
from .configuration import DistilBertConfig

LN_EPS = 1e-12  # DistilBERT hard-codes its LayerNorm epsilon


def _dense(config, features, dtype, name=None):
    return nn.Dense(features, dtype=dtype, kernel_init=nn.initializers.normal(config.initializer_range), name=name)


def sinusoidal_init(key, shape, dtype=jnp.float32):
    """DistilBERT's fixed sinusoidal position table (used when sinusoidal_pos_embds is set)."""
    n_pos, dim = shape
    angles = np.array([[pos / np.power(10000, 2 * (j // 2) / dim) for j in range(dim)] for pos in range(n_pos)])
    table = np.zeros(shape, np.float32)
    table[:, 0::2], table[:, 1::2] = np.sin(angles[:, 0::2]), np.cos(angles[:, 1::2])
    return jnp.asarray(table, dtype)


class DistilBertEmbeddings(nn.Module):
    config: Any
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, input_ids, position_ids=None, inputs_embeds=None, deterministic=True):
        c = self.config
        normal = nn.initializers.normal(c.initializer_range)
        if inputs_embeds is None:
            inputs_embeds = nn.Embed(c.vocab_size, c.dim, dtype=self.dtype, embedding_init=normal, name="word_embeddings")(input_ids)
        if position_ids is None:
            position_ids = jnp.arange(inputs_embeds.shape[1])[None, :]  # [1, T]
        pos_init = sinusoidal_init if c.sinusoidal_pos_embds else normal
        positions = nn.Embed(c.max_position_embeddings, c.dim, dtype=self.dtype, embedding_init=pos_init, name="position_embeddings")
        x = inputs_embeds.astype(self.dtype) + positions(position_ids)  # [B, T, D]
        x = nn.LayerNorm(epsilon=LN_EPS, dtype=self.dtype, name="LayerNorm")(x)
        return nn.Dropout(c.dropout)(x, deterministic=deterministic)


class DistilBertAttention(nn.Module):
    config: Any
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, mask, deterministic=True, output_attentions=False, packing=None):
        c = self.config
        d = x.shape[-1]
        q, k, v = (_dense(c, d, self.dtype, name)(x) for name in ("q_lin", "k_lin", "v_lin"))  # [B, T, D] or [N, D]
        rng = None if deterministic or not c.attention_dropout else self.make_rng("dropout")
        context, weights = multi_head_attention(q, k, v, c.n_heads, packing, mask=mask, dropout_rate=c.attention_dropout,
                                                dropout_rng=rng, return_weights=output_attentions)
        return _dense(c, d, self.dtype, "out_lin")(context), weights


class TransformerBlock(nn.Module):
    config: Any
    dtype: Any = jnp.float32

    def setup(self):
        c = self.config
        self.attention = DistilBertAttention(c, self.dtype)
        self.sa_layer_norm = nn.LayerNorm(epsilon=LN_EPS, dtype=self.dtype)
        self.lin1 = _dense(c, c.hidden_dim, self.dtype)
        self.lin2 = _dense(c, c.dim, self.dtype)
        self.output_layer_norm = nn.LayerNorm(epsilon=LN_EPS, dtype=self.dtype)
        self.dropout = nn.Dropout(c.dropout)
        self.act = get_activation(c.activation)

    def ffn(self, x, deterministic):
        return self.dropout(self.lin2(self.act(self.lin1(x))), deterministic=deterministic)  # [B, T, F] -> [B, T, D]

    def __call__(self, x, mask, deterministic=True, output_attentions=False, packing=None):
        attn, weights = self.attention(x, mask, deterministic, output_attentions, packing)
        x = self.sa_layer_norm(attn + x)
        ffn = apply_chunked(lambda part: self.ffn(part, deterministic), x, self.config.chunk_size_feed_forward)
        return self.output_layer_norm(ffn + x), weights


class DistilBertModule(nn.Module):
    config: Any
    dtype: Any = jnp.float32
    unpad_to: int = 0  # > 0: unpadded mode with this many packed token slots (see fxformers.ops.unpadding)

    def setup(self):
        self.embeddings = DistilBertEmbeddings(self.config, self.dtype)
        self.transformer = Transformer(self.config, self.dtype)

    def __call__(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None, deterministic=True,
                 output_attentions=False, output_hidden_states=False):
        x = self.embeddings(input_ids, position_ids, inputs_embeds, deterministic)
        if attention_mask is None:
            attention_mask = jnp.ones(x.shape[:2], jnp.int32)
        x, packing = Packing.start(x, attention_mask, self.unpad_to)
        return self.transformer(x, padding_mask(attention_mask), deterministic, output_attentions, output_hidden_states,
                                packing)


class Transformer(nn.Module):
    config: Any
    dtype: Any = jnp.float32

    def setup(self):
        self.layer = [maybe_remat(TransformerBlock, self.config)(self.config, self.dtype) for _ in range(self.config.n_layers)]

    def __call__(self, x, mask, deterministic=True, output_attentions=False, output_hidden_states=False, packing=None):
        return BaseModelOutput(*run_layers(self.layer, x, mask, deterministic, output_attentions, output_hidden_states, packing))


class DistilBertHead(nn.Module):
    """Base of the task heads: the encoder runs under the checkpoint name ``distilbert``."""

    config: Any
    dtype: Any = jnp.float32
    unpad_to: int = 0  # passed to the encoder (see DistilBertModule)

    def encode(self, input_ids, attention_mask, position_ids, inputs_embeds, deterministic, output_attentions,
               output_hidden_states):
        return DistilBertModule(self.config, self.dtype, unpad_to=self.unpad_to, name="distilbert")(
            input_ids, attention_mask, position_ids, inputs_embeds, deterministic, output_attentions, output_hidden_states
        )

    def first_token_classifier(self, hidden, features, deterministic):
        """pre_classifier -> ReLU -> dropout -> classifier on the first token."""
        c = self.config
        x = nn.relu(_dense(c, c.dim, self.dtype, "pre_classifier")(hidden[:, 0]))  # [B, D]
        x = nn.Dropout(c.seq_classif_dropout)(x, deterministic=deterministic)
        return _dense(c, features, self.dtype, "classifier")(x).astype(jnp.float32)


class DistilBertForSequenceClassificationModule(DistilBertHead):
    @nn.compact
    def __call__(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None, labels=None,
                 deterministic=True, output_attentions=False, output_hidden_states=False):
        out = self.encode(input_ids, attention_mask, position_ids, inputs_embeds, deterministic, output_attentions,
                          output_hidden_states)
        c = self.config
        logits = self.first_token_classifier(out.last_hidden_state, c.num_labels, deterministic)  # [B, L]
        loss = None if labels is None else sequence_classification_loss(logits, labels, c.num_labels, c.problem_type)
        return SequenceClassifierOutput(loss, logits, out.hidden_states, out.attentions)


class DistilBertForTokenClassificationModule(DistilBertHead):
    @nn.compact
    def __call__(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None, labels=None,
                 deterministic=True, output_attentions=False, output_hidden_states=False):
        out = self.encode(input_ids, attention_mask, position_ids, inputs_embeds, deterministic, output_attentions,
                          output_hidden_states)
        c = self.config
        x = nn.Dropout(c.dropout)(out.last_hidden_state, deterministic=deterministic)
        logits = _dense(c, c.num_labels, self.dtype, "classifier")(x).astype(jnp.float32)  # [B, T, L]
        loss = None if labels is None else cross_entropy(logits.reshape(-1, c.num_labels), labels.reshape(-1))
        return TokenClassifierOutput(loss, logits, out.hidden_states, out.attentions)


class DistilBertForQuestionAnsweringModule(DistilBertHead):
    @nn.compact
    def __call__(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None,
                 start_positions=None, end_positions=None, deterministic=True, output_attentions=False,
                 output_hidden_states=False):
        out = self.encode(input_ids, attention_mask, position_ids, inputs_embeds, deterministic, output_attentions,
                          output_hidden_states)
        c = self.config
        x = nn.Dropout(c.qa_dropout)(out.last_hidden_state, deterministic=deterministic)
        logits = _dense(c, c.num_labels, self.dtype, "qa_outputs")(x).astype(jnp.float32)  # [B, T, 2]
        start, end = logits[..., 0], logits[..., 1]
        loss = None
        if start_positions is not None and end_positions is not None:
            loss = span_loss(start, end, start_positions, end_positions)
        return QuestionAnsweringModelOutput(loss, start, end, out.hidden_states, out.attentions)


class DistilBertForMultipleChoiceModule(DistilBertHead):
    @nn.compact
    def __call__(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None, labels=None,
                 deterministic=True, output_attentions=False, output_hidden_states=False):
        ref = input_ids if input_ids is not None else inputs_embeds[..., 0]
        b, num_choices = ref.shape[:2]
        flat = lambda a: None if a is None else a.reshape((b * num_choices,) + a.shape[2:])  # [B, C, T] -> [B*C, T]
        out = self.encode(flat(input_ids), flat(attention_mask), flat(position_ids), flat(inputs_embeds),
                          deterministic, output_attentions, output_hidden_states)
        logits = self.first_token_classifier(out.last_hidden_state, 1, deterministic).reshape(b, num_choices)
        loss = None if labels is None else cross_entropy(logits, labels)
        return MultipleChoiceModelOutput(loss, logits, out.hidden_states, out.attentions)


class DistilBertForMaskedLMModule(DistilBertHead):
    @nn.compact
    def __call__(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None, labels=None,
                 deterministic=True, output_attentions=False, output_hidden_states=False):
        out = self.encode(input_ids, attention_mask, position_ids, inputs_embeds, deterministic, output_attentions,
                          output_hidden_states)
        c = self.config
        x = get_activation(c.activation)(_dense(c, c.dim, self.dtype, "vocab_transform")(out.last_hidden_state))
        x = nn.LayerNorm(epsilon=LN_EPS, dtype=self.dtype, name="vocab_layer_norm")(x)
        embeddings = self.variables["params"]["distilbert"]["embeddings"]["word_embeddings"]["embedding"]
        logits = decode_vocab(self, x, embeddings).astype(jnp.float32)  # [B, T, V]
        loss = None if labels is None else cross_entropy(logits.reshape(-1, c.vocab_size), labels.reshape(-1))
        return MaskedLMOutput(loss, logits, out.hidden_states, out.attentions)


# -- public classes ----------------------------------------------------------------------------------------------
class DistilBertPreTrainedModel(PreTrainedModel):
    config_class = DistilBertConfig
    base_model_prefix = "distilbert"
    has_base_prefix = True
    vocab_params = ((r"word_embeddings/embedding$", 0), (r"^bias$", 0), (r"^decoder/kernel$", 1))

    @classmethod
    def partition_rules(cls, config):
        return convert.partition_rules(config)

    def validate_inputs(self, inputs: dict) -> None:
        if "token_type_ids" in inputs:
            raise ValueError("DistilBERT takes no token_type_ids; drop them (the tokenizer returns none for it).")
        super().validate_inputs(inputs)


def _table(rules_fn):
    return classmethod(lambda cls, config: rules_fn(config))


class DistilBertModel(DistilBertPreTrainedModel):
    module_class = DistilBertModule
    has_base_prefix = False
    conversion_table = _table(lambda config: convert.encoder_table())


class DistilBertForSequenceClassification(DistilBertPreTrainedModel):
    module_class = DistilBertForSequenceClassificationModule
    conversion_table = _table(lambda config: convert.head_table(convert.classifier_rules()))


class DistilBertForTokenClassification(DistilBertPreTrainedModel):
    module_class = DistilBertForTokenClassificationModule
    conversion_table = _table(lambda config: convert.head_table(convert.linear("classifier", "classifier")))


class DistilBertForQuestionAnswering(DistilBertPreTrainedModel):
    module_class = DistilBertForQuestionAnsweringModule
    conversion_table = _table(lambda config: convert.head_table(convert.linear("qa_outputs", "qa_outputs")))


class DistilBertForMultipleChoice(DistilBertPreTrainedModel):
    module_class = DistilBertForMultipleChoiceModule
    conversion_table = _table(lambda config: convert.head_table(convert.classifier_rules()))

    def dummy_inputs(self):
        ids = jnp.ones((1, 2, 8), jnp.int32)
        return {"input_ids": ids, "attention_mask": ids}


class DistilBertForMaskedLM(DistilBertPreTrainedModel):
    module_class = DistilBertForMaskedLMModule
    conversion_table = _table(convert.masked_lm_table)
