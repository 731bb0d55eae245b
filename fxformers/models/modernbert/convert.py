"""ModernBERT conversion rules and partition rules."""

from ...convert import ConversionTable, Rule, embedding, layer_norm, linear
from ...sharding import COLUMN, COLUMN_BIAS, REPLICATED, ROW, VOCAB


def model_table(config) -> ConversionTable:
    """ModernBertModel's keys without the ``model.`` prefix (layer 0 has no attn_norm)."""
    pt, fx, nb = "layers.{i}.", "layers_{i}/", bool(config.norm_bias)
    rules = (
        embedding("embeddings.tok_embeddings", "embeddings/tok_embeddings")
        + layer_norm("embeddings.norm", "embeddings/norm", nb)
        + layer_norm(pt + "attn_norm", fx + "attn_norm", nb)
        + linear(pt + "attn.Wqkv", fx + "attn/Wqkv", bool(config.attention_bias))
        + linear(pt + "attn.Wo", fx + "attn/Wo", bool(config.attention_bias))
        + layer_norm(pt + "mlp_norm", fx + "mlp_norm", nb)
        + linear(pt + "mlp.Wi", fx + "mlp/Wi", bool(config.mlp_bias))
        + linear(pt + "mlp.Wo", fx + "mlp/Wo", bool(config.mlp_bias))
        + layer_norm("final_norm", "final_norm", nb)
    )
    return ConversionTable(rules)


def head_table(config, head_rules: list, ignore: tuple = ()) -> ConversionTable:
    rules = linear("head.dense", "head/dense", bool(config.classifier_bias)) + layer_norm("head.norm", "head/norm", bool(config.norm_bias))
    return model_table(config).prefixed("model.", "model/") + ConversionTable(rules + head_rules, ignore)


def masked_lm_table(config) -> ConversionTable:
    rules = linear("decoder", "decoder", False) if not config.tie_word_embeddings else []
    if config.decoder_bias:
        rules += [Rule("decoder.bias", "decoder_bias")]
    ignore = (r"^decoder\.weight$",) if config.tie_word_embeddings else ()
    return head_table(config, rules, ignore)


def partition_rules(config) -> tuple:
    """Megatron-style: the fused Wqkv and Wi split on their outputs over `model`, the two Wo on their inputs."""
    optional = (() if config.tie_word_embeddings else ((r"^decoder/kernel$", COLUMN),)) + (
        ((r"attn/Wqkv/bias$", COLUMN_BIAS),) if config.attention_bias else ()) + (
        ((r"mlp/Wi/bias$", COLUMN_BIAS),) if config.mlp_bias else ()) + (
        ((r"^decoder_bias$", COLUMN_BIAS),) if config.decoder_bias else ())
    return optional + (
        (r"tok_embeddings/embedding$", VOCAB),
        (r"(attn/Wqkv|mlp/Wi)/kernel$", COLUMN),
        (r"(attn|mlp)/Wo/kernel$", ROW),
        (r"(head/dense|classifier)/kernel$", COLUMN),
        (r"(head/dense|classifier)/bias$", COLUMN_BIAS),
        (r"(norm/(scale|bias)|(attn|mlp)/Wo/bias)$", REPLICATED),
    )
