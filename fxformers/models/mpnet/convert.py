"""MPNet conversion rules and partition rules: PyTorch state-dict keys <-> Flax parameter paths."""

from ...convert import ConversionTable, Rule, embedding, layer_norm, linear
from ...sharding import COLUMN, COLUMN_BIAS, HIDDEN, REPLICATED, ROW, VOCAB
from ..bert.convert import vocab_head_rules

BUFFERS = (r"embeddings\.position_ids$",)


def encoder_table(pooler: bool) -> ConversionTable:
    """MPNetModel's keys without the ``mpnet.`` prefix; layers keep BERT's flax names."""
    pt, fx = "encoder.layer.{i}.", "encoder/layer_{i}/"
    rules = (
        embedding("embeddings.word_embeddings", "embeddings/word_embeddings")
        + embedding("embeddings.position_embeddings", "embeddings/position_embeddings")
        + layer_norm("embeddings.LayerNorm", "embeddings/LayerNorm")
        + embedding("encoder.relative_attention_bias", "encoder/relative_attention_bias")
        + linear(pt + "attention.attn.q", fx + "attention/query")
        + linear(pt + "attention.attn.k", fx + "attention/key")
        + linear(pt + "attention.attn.v", fx + "attention/value")
        + linear(pt + "attention.attn.o", fx + "attention/out")
        + layer_norm(pt + "attention.LayerNorm", fx + "attention/LayerNorm")
        + linear(pt + "intermediate.dense", fx + "intermediate")
        + linear(pt + "output.dense", fx + "output")
        + layer_norm(pt + "output.LayerNorm", fx + "LayerNorm")
    )
    if pooler:
        rules += linear("pooler.dense", "pooler")
    return ConversionTable(rules, BUFFERS)


def head_table(pooler: bool, head_rules: list, ignore: tuple = ()) -> ConversionTable:
    return encoder_table(pooler).prefixed("mpnet.", "mpnet/") + ConversionTable(head_rules, ignore)


def masked_lm_table(config) -> ConversionTable:
    if config.tie_word_embeddings:
        rules, ignore = vocab_head_rules(config, "lm_head", "lm_head.bias")
    else:  # Transformers 5 unties decoder.bias too: both biases are stored
        rules, ignore = [Rule("lm_head.bias", "bias")] + linear("lm_head.decoder", "decoder"), ()
    rules += linear("lm_head.dense", "lm_head_dense") + layer_norm("lm_head.layer_norm", "lm_head_layer_norm")
    return head_table(False, rules, ignore)


def partition_rules(config) -> tuple:
    """Megatron-style: q/k/v, the FFN input and the head projections split on their outputs over `model`, the
    attention output and FFN output on their inputs; the vocabulary over `model`."""
    untied = () if config.tie_word_embeddings else ((r"^decoder/kernel$", COLUMN),)  # untied vocabulary projection
    return untied + (
        (r"word_embeddings/embedding$", VOCAB),
        (r"position_embeddings/embedding$", HIDDEN),
        (r"relative_attention_bias/embedding$", REPLICATED),  # [32, N]: tiny
        (r"attention/(query|key|value)/kernel$", COLUMN),
        (r"attention/(query|key|value)/bias$", COLUMN_BIAS),
        (r"attention/out/kernel$", ROW),
        (r"layer_\d+/intermediate/kernel$", COLUMN),
        (r"layer_\d+/intermediate/bias$", COLUMN_BIAS),
        (r"layer_\d+/output/kernel$", ROW),
        (r"(pooler|lm_head_dense|classifier|classifier_dense|classifier_out_proj|qa_outputs)/kernel$", COLUMN),
        (r"(pooler|lm_head_dense|classifier|classifier_dense|classifier_out_proj|qa_outputs)/bias$", COLUMN_BIAS),
        (r"^(decoder/bias|bias)$", COLUMN_BIAS),  # the vocabulary biases [V]
        (r"(LayerNorm|layer_norm)/(scale|bias)$", REPLICATED),
        (r"(attention/out|layer_\d+/output)/bias$", REPLICATED),
    )
