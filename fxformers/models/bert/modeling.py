"""BERT: the encoder and its task heads.

Shapes: B batch, C choices, T sequence length, D hidden size, N heads, H head dim (D = N * H), F intermediate
size, V vocabulary, L labels. RoBERTa reuses everything here but the position ids and two heads.
"""

from __future__ import annotations

from typing import Any, ClassVar

import jax.numpy as jnp
from flax import linen as nn

from ...losses import cross_entropy, sequence_classification_loss, span_loss
from ...ops.activations import get_activation
from ...ops.attention import dot_product_attention
from ...ops.masks import padding_mask
from ...ops.unpadding import Packing
from ...ops.remat import maybe_remat
from ...outputs import (
    BaseModelOutputWithPooling,
    MaskedLMOutput,
    MultipleChoiceModelOutput,
    QuestionAnsweringModelOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)


def dense(config, features: int, dtype, name: str | None = None) -> nn.Dense:
    return nn.Dense(features, dtype=dtype, kernel_init=nn.initializers.normal(config.initializer_range), name=name)


def embed(config, num: int, dtype, name: str | None = None) -> nn.Embed:
    return nn.Embed(num, config.hidden_size, dtype=dtype, embedding_init=nn.initializers.normal(config.initializer_range), name=name)


def layer_norm(config, dtype, name: str | None = None) -> nn.LayerNorm:
    return nn.LayerNorm(epsilon=config.layer_norm_eps, dtype=dtype, name=name)


class BertEmbeddings(nn.Module):
    config: Any
    dtype: Any = jnp.float32

    def setup(self):
        c = self.config
        self.word_embeddings = embed(c, c.vocab_size, self.dtype)
        self.position_embeddings = embed(c, c.max_position_embeddings, self.dtype)
        if c.type_vocab_size:
            self.token_type_embeddings = embed(c, c.type_vocab_size, self.dtype)
        self.LayerNorm = layer_norm(c, self.dtype)
        self.dropout = nn.Dropout(c.hidden_dropout_prob)

    def default_position_ids(self, input_ids, inputs_embeds):
        length = (input_ids if input_ids is not None else inputs_embeds[..., 0]).shape[1]
        return jnp.arange(length)[None, :]  # [1, T]

    def __call__(self, input_ids, token_type_ids, position_ids, inputs_embeds=None, deterministic=True):
        x = self.word_embeddings(input_ids) if inputs_embeds is None else inputs_embeds.astype(self.dtype)  # [B, T, D]
        if position_ids is None:
            position_ids = self.default_position_ids(input_ids, inputs_embeds)
        x = x + self.position_embeddings(position_ids)
        if self.config.type_vocab_size:
            if token_type_ids is None:
                token_type_ids = jnp.zeros(x.shape[:2], jnp.int32)
            x = x + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.LayerNorm(x), deterministic=deterministic)


class BertAttention(nn.Module):
    config: Any
    dtype: Any = jnp.float32

    def setup(self):
        c = self.config
        self.query = dense(c, c.hidden_size, self.dtype)
        self.key = dense(c, c.hidden_size, self.dtype)
        self.value = dense(c, c.hidden_size, self.dtype)
        self.out = dense(c, c.hidden_size, self.dtype)
        self.LayerNorm = layer_norm(c, self.dtype)
        self.dropout = nn.Dropout(c.hidden_dropout_prob)

    def __call__(self, x, mask, deterministic=True, output_attentions=False, packing=None):
        c = self.config
        q, k, v = (proj(x) for proj in (self.query, self.key, self.value))  # [B, T, D] (or packed [N, D])
        rate = c.attention_probs_dropout_prob
        rng = None if deterministic or not rate else self.make_rng("dropout")
        context, weights = multi_head_attention(q, k, v, c.num_attention_heads, packing, mask=mask, dropout_rate=rate,
                                                dropout_rng=rng, return_weights=output_attentions)
        out = self.dropout(self.out(context), deterministic=deterministic)  # [B, T, D] (or [N, D])
        return self.LayerNorm(out + x), weights


def multi_head_attention(q, k, v, num_heads: int, packing=None, **attention_kwargs):
    """Projected q, k, v [B, T, D] -> context [B, T, D] through the attention op; packed [N, D] inputs (unpadded
    mode) go back to the [B, T] layout for the attention and are packed again after it."""
    if packing is not None:
        q, k, v = packing.unpack(q), packing.unpack(k), packing.unpack(v)
    b, t, d = q.shape
    heads = lambda a: a.reshape(b, t, num_heads, d // num_heads)  # [B, T, N, H]
    context, weights = dot_product_attention(heads(q), heads(k), heads(v), **attention_kwargs)
    context = context.reshape(b, t, d)
    return (context if packing is None else packing.pack(context)), weights


class BertLayer(nn.Module):
    config: Any
    dtype: Any = jnp.float32

    def setup(self):
        c = self.config
        self.attention = BertAttention(c, self.dtype)
        self.intermediate = dense(c, c.intermediate_size, self.dtype)
        self.output = dense(c, c.hidden_size, self.dtype)
        self.LayerNorm = layer_norm(c, self.dtype)
        self.dropout = nn.Dropout(c.hidden_dropout_prob)
        self.act = get_activation(c.hidden_act)

    def feed_forward(self, x, deterministic):
        h = self.output(self.act(self.intermediate(x)))  # [B, T, F] -> [B, T, D]
        return self.LayerNorm(self.dropout(h, deterministic=deterministic) + x)

    def __call__(self, x, mask, deterministic=True, output_attentions=False, packing=None):
        x, weights = self.attention(x, mask, deterministic, output_attentions, packing)
        return apply_chunked(lambda part: self.feed_forward(part, deterministic), x, self.config.chunk_size_feed_forward), weights


def apply_chunked(fn, x, chunk_size: int):
    """Transformers' feed-forward chunking: apply fn to [B, chunk, D] slices along T (same result, less memory).

    The last chunk may be shorter: the result is position-wise, so any split gives the same output. Packed [N, D]
    inputs (unpadded mode) are not chunked: they hold only real tokens already.
    """
    t = x.shape[1]
    if not chunk_size or t <= chunk_size or x.ndim < 3:
        return fn(x)
    return jnp.concatenate([fn(x[:, i : i + chunk_size]) for i in range(0, t, chunk_size)], axis=1)


class BertEncoder(nn.Module):
    config: Any
    dtype: Any = jnp.float32
    layer_class: ClassVar[type] = BertLayer

    def setup(self):
        layer = maybe_remat(self.layer_class, self.config)
        self.layer = [layer(self.config, self.dtype) for _ in range(self.config.num_hidden_layers)]

    def __call__(self, x, mask, deterministic=True, output_attentions=False, output_hidden_states=False, packing=None):
        return run_layers(self.layer, x, mask, deterministic, output_attentions, output_hidden_states, packing)


def run_layers(layers, x, mask, deterministic, output_attentions, output_hidden_states, packing=None):
    """Run the layer stack -> (last hidden state, hidden states or None, attentions or None), all [B, T, ...]:
    in unpadded mode the input is packed [N, D] here and every hidden state goes back to [B, T, D]."""
    unpack = (lambda a: a) if packing is None else packing.unpack
    hidden_states, attentions = (unpack(x),), ()
    for layer in layers:
        x, weights = layer(x, mask, deterministic, output_attentions, packing)
        hidden_states += (unpack(x),)
        attentions += (weights,)
    return hidden_states[-1], (hidden_states if output_hidden_states else None), (attentions if output_attentions else None)


class BertModule(nn.Module):
    """The bare encoder: embeddings, layers and (optionally) the tanh pooler over the first token."""

    config: Any
    dtype: Any = jnp.float32
    add_pooling_layer: bool = True
    unpad_to: int = 0  # > 0: unpadded mode with this many packed token slots (see fxformers.ops.unpadding)
    embeddings_class: ClassVar[type] = BertEmbeddings

    def setup(self):
        self.embeddings = self.embeddings_class(self.config, self.dtype)
        self.encoder = BertEncoder(self.config, self.dtype)
        if self.add_pooling_layer:
            self.pooler = dense(self.config, self.config.hidden_size, self.dtype, name="pooler")

    def __call__(
        self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, inputs_embeds=None,
        deterministic=True, output_attentions=False, output_hidden_states=False,
    ):
        x = self.embeddings(input_ids, token_type_ids, position_ids, inputs_embeds, deterministic)  # [B, T, D]
        if attention_mask is None:
            attention_mask = jnp.ones(x.shape[:2], jnp.int32)
        x, packing = Packing.start(x, attention_mask, self.unpad_to)
        x, hidden_states, attentions = self.encoder(
            x, padding_mask(attention_mask), deterministic, output_attentions, output_hidden_states, packing
        )
        pooled = jnp.tanh(self.pooler(x[:, 0])) if self.add_pooling_layer else None  # [B, D]
        return BaseModelOutputWithPooling(x, pooled, hidden_states, attentions)


class BertEncoderHead(nn.Module):
    """Base of the task heads: runs the encoder under its checkpoint name (``bert``, ``roberta`` ...)."""

    config: Any
    dtype: Any = jnp.float32
    unpad_to: int = 0  # passed to the encoder (see BertModule)
    base_class: ClassVar[type] = BertModule
    base_name: ClassVar[str] = "bert"
    pooled: ClassVar[bool] = False

    def encode(self, input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, deterministic,
               output_attentions, output_hidden_states):
        base = self.base_class(self.config, self.dtype, add_pooling_layer=self.pooled, unpad_to=self.unpad_to,
                               name=self.base_name)
        return base(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, deterministic,
                    output_attentions, output_hidden_states)

    def dropout_rate(self) -> float:
        c = self.config
        return c.classifier_dropout if c.classifier_dropout is not None else c.hidden_dropout_prob


class BertForSequenceClassificationModule(BertEncoderHead):
    pooled: ClassVar[bool] = True

    def classify(self, out, deterministic):
        x = nn.Dropout(self.dropout_rate())(out.pooler_output, deterministic=deterministic)
        return dense(self.config, self.config.num_labels, self.dtype, name="classifier")(x)  # [B, L]

    @nn.compact
    def __call__(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, inputs_embeds=None,
                 labels=None, deterministic=True, output_attentions=False, output_hidden_states=False):
        out = self.encode(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, deterministic,
                          output_attentions, output_hidden_states)
        logits = self.classify(out, deterministic).astype(jnp.float32)
        c = self.config
        loss = None if labels is None else sequence_classification_loss(logits, labels, c.num_labels, c.problem_type)
        return SequenceClassifierOutput(loss, logits, out.hidden_states, out.attentions)


class BertForTokenClassificationModule(BertEncoderHead):
    @nn.compact
    def __call__(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, inputs_embeds=None,
                 labels=None, deterministic=True, output_attentions=False, output_hidden_states=False):
        out = self.encode(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, deterministic,
                          output_attentions, output_hidden_states)
        x = nn.Dropout(self.dropout_rate())(out.last_hidden_state, deterministic=deterministic)
        logits = dense(self.config, self.config.num_labels, self.dtype, name="classifier")(x).astype(jnp.float32)
        loss = None if labels is None else cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
        return TokenClassifierOutput(loss, logits, out.hidden_states, out.attentions)


class BertForQuestionAnsweringModule(BertEncoderHead):
    @nn.compact
    def __call__(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, inputs_embeds=None,
                 start_positions=None, end_positions=None, deterministic=True, output_attentions=False,
                 output_hidden_states=False):
        out = self.encode(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, deterministic,
                          output_attentions, output_hidden_states)
        logits = dense(self.config, self.config.num_labels, self.dtype, name="qa_outputs")(out.last_hidden_state).astype(jnp.float32)
        start, end = logits[..., 0], logits[..., 1]  # [B, T] each
        loss = None
        if start_positions is not None and end_positions is not None:
            loss = span_loss(start, end, start_positions, end_positions)
        return QuestionAnsweringModelOutput(loss, start, end, out.hidden_states, out.attentions)


class BertForMultipleChoiceModule(BertEncoderHead):
    pooled: ClassVar[bool] = True

    @nn.compact
    def __call__(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, inputs_embeds=None,
                 labels=None, deterministic=True, output_attentions=False, output_hidden_states=False):
        ref = input_ids if input_ids is not None else inputs_embeds[..., 0]
        b, num_choices = ref.shape[:2]
        flat = lambda a: None if a is None else a.reshape((b * num_choices,) + a.shape[2:])  # [B, C, T] -> [B*C, T]
        out = self.encode(flat(input_ids), flat(attention_mask), flat(token_type_ids), flat(position_ids),
                          flat(inputs_embeds), deterministic, output_attentions, output_hidden_states)
        x = nn.Dropout(self.dropout_rate())(out.pooler_output, deterministic=deterministic)
        logits = dense(self.config, 1, self.dtype, name="classifier")(x).reshape(b, num_choices).astype(jnp.float32)
        loss = None if labels is None else cross_entropy(logits, labels)
        return MultipleChoiceModelOutput(loss, logits, out.hidden_states, out.attentions)


class BertForMaskedLMModule(BertEncoderHead):
    def predict(self, x, word_embeddings):
        """cls.predictions: transform (dense, act, LayerNorm), then the decoder tied to the word embeddings."""
        c = self.config
        x = dense(c, c.hidden_size, self.dtype, name="transform_dense")(x)
        x = layer_norm(c, self.dtype, name="transform_LayerNorm")(get_activation(c.hidden_act)(x))
        return decode_vocab(self, x, word_embeddings)

    @nn.compact
    def __call__(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, inputs_embeds=None,
                 labels=None, deterministic=True, output_attentions=False, output_hidden_states=False):
        out = self.encode(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, deterministic,
                          output_attentions, output_hidden_states)
        embeddings = self.variables["params"][self.base_name]["embeddings"]["word_embeddings"]["embedding"]
        logits = self.predict(out.last_hidden_state, embeddings).astype(jnp.float32)  # [B, T, V]
        loss = None if labels is None else cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
        return MaskedLMOutput(loss, logits, out.hidden_states, out.attentions)


def decode_vocab(module: nn.Module, x, word_embeddings):
    """Project [B, T, D] onto the vocabulary: tied to the input embeddings, or an untied ``decoder``; plus ``bias``."""
    c = module.config
    if getattr(c, "tie_word_embeddings", True):
        logits = x @ word_embeddings.astype(module.dtype).T  # [B, T, V]
    else:
        logits = nn.Dense(c.vocab_size, use_bias=False, dtype=module.dtype, name="decoder")(x)
    bias = module.param("bias", nn.initializers.zeros, (c.vocab_size,))
    return logits + bias.astype(module.dtype)


# -- public classes: module + conversion table + config ---------------------------------------------------------
from ...modeling import PreTrainedModel  # noqa: E402
from . import convert as _convert  # noqa: E402
from .configuration import BertConfig  # noqa: E402


class BertPreTrainedModel(PreTrainedModel):
    config_class = BertConfig
    base_model_prefix = "bert"
    has_base_prefix = True
    vocab_params = ((r"word_embeddings/embedding$", 0), (r"^bias$", 0), (r"^decoder/kernel$", 1))

    @classmethod
    def partition_rules(cls, config):
        return _convert.partition_rules(config)


class BertModel(BertPreTrainedModel):
    module_class = BertModule
    has_base_prefix = False
    optional_weights = (r"^pooler/",)

    @classmethod
    def conversion_table(cls, config):
        return _convert.encoder_table(pooler=True)


class BertForSequenceClassification(BertPreTrainedModel):
    module_class = BertForSequenceClassificationModule

    @classmethod
    def conversion_table(cls, config):
        return _convert.head_table("bert", True, _convert.linear("classifier", "classifier"))


class BertForTokenClassification(BertPreTrainedModel):
    module_class = BertForTokenClassificationModule

    @classmethod
    def conversion_table(cls, config):
        return _convert.head_table("bert", False, _convert.linear("classifier", "classifier"))


class BertForQuestionAnswering(BertPreTrainedModel):
    module_class = BertForQuestionAnsweringModule

    @classmethod
    def conversion_table(cls, config):
        return _convert.head_table("bert", False, _convert.linear("qa_outputs", "qa_outputs"))


class BertForMultipleChoice(BertPreTrainedModel):
    module_class = BertForMultipleChoiceModule

    def dummy_inputs(self):
        ids = jnp.ones((1, 2, 8), jnp.int32)
        return {"input_ids": ids, "attention_mask": ids}

    @classmethod
    def conversion_table(cls, config):
        return _convert.head_table("bert", True, _convert.linear("classifier", "classifier"))


class BertForMaskedLM(BertPreTrainedModel):
    module_class = BertForMaskedLMModule

    @classmethod
    def conversion_table(cls, config):
        return _convert.masked_lm_table(config)
