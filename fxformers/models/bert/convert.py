"""BERT conversion rules: PyTorch state-dict keys <-> Flax parameter paths."""

import re

from ...convert import ConversionTable, Rule, embedding, layer_norm, linear
from ...sharding import COLUMN, COLUMN_BIAS, HIDDEN, REPLICATED, ROW, VOCAB

# Buffers older checkpoints carry; never weights.
BUFFERS = (r"embeddings\.position_ids$", r"embeddings\.token_type_ids$")


def encoder_table(pooler: bool) -> ConversionTable:
    """The bare encoder (BertModel and RobertaModel share these keys), without the base-model prefix."""
    pt, fx = "encoder.layer.{i}.", "encoder/layer_{i}/"
    rules = (
        embedding("embeddings.word_embeddings", "embeddings/word_embeddings")
        + embedding("embeddings.position_embeddings", "embeddings/position_embeddings")
        + embedding("embeddings.token_type_embeddings", "embeddings/token_type_embeddings")
        + layer_norm("embeddings.LayerNorm", "embeddings/LayerNorm")
        + linear(pt + "attention.self.query", fx + "attention/query")
        + linear(pt + "attention.self.key", fx + "attention/key")
        + linear(pt + "attention.self.value", fx + "attention/value")
        + linear(pt + "attention.output.dense", fx + "attention/out")
        + layer_norm(pt + "attention.output.LayerNorm", fx + "attention/LayerNorm")
        + linear(pt + "intermediate.dense", fx + "intermediate")
        + linear(pt + "output.dense", fx + "output")
        + layer_norm(pt + "output.LayerNorm", fx + "LayerNorm")
    )
    if pooler:
        rules += linear("pooler.dense", "pooler")
    return ConversionTable(rules, BUFFERS)


def head_table(prefix: str, pooler: bool, head_rules: list, ignore: tuple = ()) -> ConversionTable:
    """A task model's table: the encoder under ``prefix`` plus the head's own rules."""
    return encoder_table(pooler).prefixed(f"{prefix}.", f"{prefix}/") + ConversionTable(head_rules, ignore)


def vocab_head_rules(config, pt: str, bias_key: str) -> tuple[list, tuple]:
    """The vocabulary projection: tied to the word embeddings (not stored) or an untied ``decoder``; plus its bias."""
    rules = [Rule(bias_key, "bias")]
    key = re.escape(pt)
    ignore = (rf"^{key}\.decoder\.bias$",)  # Transformers ties decoder.bias to the bias parameter
    if config.tie_word_embeddings:
        return rules, ignore + (rf"^{key}\.decoder\.weight$",)
    return rules + linear(f"{pt}.decoder", "decoder", bias=False), ignore


def masked_lm_table(config) -> ConversionTable:
    rules, ignore = vocab_head_rules(config, "cls.predictions", "cls.predictions.bias")
    rules += linear("cls.predictions.transform.dense", "transform_dense")
    rules += layer_norm("cls.predictions.transform.LayerNorm", "transform_LayerNorm")
    return head_table("bert", False, rules, ignore)


def partition_rules(config) -> tuple:
    """BERT and RoBERTa (every head): q/k/v and intermediate column-parallel, attention output and FFN output
    row-parallel, word embeddings (and the MLM bias) over the vocabulary; heads split on their inputs over fsdp."""
    untied = () if config.tie_word_embeddings else ((r"^decoder/kernel$", COLUMN),)  # untied MLM decoder [D, V]
    return untied + (
        (r"word_embeddings/embedding$", VOCAB),
        (r"(position|token_type)_embeddings/embedding$", HIDDEN),
        (r"attention/(query|key|value)/kernel$", COLUMN),
        (r"attention/(query|key|value)/bias$", COLUMN_BIAS),
        (r"attention/out/kernel$", ROW),
        (r"layer_\d+/intermediate/kernel$", COLUMN),
        (r"layer_\d+/intermediate/bias$", COLUMN_BIAS),
        (r"layer_\d+/output/kernel$", ROW),
        (r"^bias$", COLUMN_BIAS),  # MLM output bias [V]
        (r"(pooler|transform_dense|lm_head_dense|classifier|classifier_dense|classifier_out_proj|qa_outputs)/kernel$",
         COLUMN),
        (r"(LayerNorm|layer_norm)/(scale|bias)$", REPLICATED),
        (r"(attention/out|layer_\d+/output|pooler|transform_dense|lm_head_dense|classifier|classifier_dense|"
         r"classifier_out_proj|qa_outputs)/bias$", REPLICATED),
    )
