"""BERT conversion rules: PyTorch state-dict keys <-> Flax parameter paths."""

import re

from ...convert import ConversionTable, Rule, embedding, layer_norm, linear

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
