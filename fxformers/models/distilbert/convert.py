"""DistilBERT conversion rules: PyTorch state-dict keys <-> Flax parameter paths."""

from ...convert import ConversionTable, Rule, embedding, layer_norm, linear
from ...sharding import COLUMN, COLUMN_BIAS, HIDDEN, REPLICATED, ROW, VOCAB

BUFFERS = (r"embeddings\.position_ids$",)


def encoder_table() -> ConversionTable:
    pt, fx = "transformer.layer.{i}.", "transformer/layer_{i}/"
    rules = (
        embedding("embeddings.word_embeddings", "embeddings/word_embeddings")
        + embedding("embeddings.position_embeddings", "embeddings/position_embeddings")
        + layer_norm("embeddings.LayerNorm", "embeddings/LayerNorm")
        + linear(pt + "attention.q_lin", fx + "attention/q_lin")
        + linear(pt + "attention.k_lin", fx + "attention/k_lin")
        + linear(pt + "attention.v_lin", fx + "attention/v_lin")
        + linear(pt + "attention.out_lin", fx + "attention/out_lin")
        + layer_norm(pt + "sa_layer_norm", fx + "sa_layer_norm")
        + linear(pt + "ffn.lin1", fx + "lin1")
        + linear(pt + "ffn.lin2", fx + "lin2")
        + layer_norm(pt + "output_layer_norm", fx + "output_layer_norm")
    )
    return ConversionTable(rules, BUFFERS)


def head_table(head_rules: list, ignore: tuple = ()) -> ConversionTable:
    return encoder_table().prefixed("distilbert.", "distilbert/") + ConversionTable(head_rules, ignore)


def classifier_rules() -> list:
    return linear("pre_classifier", "pre_classifier") + linear("classifier", "classifier")


def masked_lm_table(config) -> ConversionTable:
    """vocab_projector: weight tied to the word embeddings (not stored) or an untied ``decoder``; bias always."""
    rules = linear("vocab_transform", "vocab_transform") + layer_norm("vocab_layer_norm", "vocab_layer_norm")
    rules += [Rule("vocab_projector.bias", "bias")]
    if config.tie_word_embeddings:
        return head_table(rules, (r"^vocab_projector\.weight$",))
    return head_table(rules + linear("vocab_projector", "decoder", bias=False))


def partition_rules(config) -> tuple:
    """DistilBERT (every head): q/k/v and lin1 column-parallel, out_lin and lin2 row-parallel."""
    untied = () if config.tie_word_embeddings else ((r"^decoder/kernel$", COLUMN),)  # untied MLM decoder [D, V]
    return untied + (
        (r"word_embeddings/embedding$", VOCAB),
        (r"position_embeddings/embedding$", HIDDEN),
        (r"attention/(q|k|v)_lin/kernel$", COLUMN),
        (r"attention/(q|k|v)_lin/bias$", COLUMN_BIAS),
        (r"attention/out_lin/kernel$", ROW),
        (r"lin1/kernel$", COLUMN),
        (r"lin1/bias$", COLUMN_BIAS),
        (r"lin2/kernel$", ROW),
        (r"^bias$", COLUMN_BIAS),  # MLM output bias [V]
        (r"(pre_classifier|classifier|qa_outputs|vocab_transform)/kernel$", COLUMN),
        (r"(LayerNorm|layer_norm)/(scale|bias)$", REPLICATED),
        (r"(out_lin|lin2|pre_classifier|classifier|qa_outputs|vocab_transform)/bias$", REPLICATED),
    )
