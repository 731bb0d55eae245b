"""ALBERT conversion rules and partition rules."""

from ...convert import ConversionTable, Rule, embedding, layer_norm, linear
from ...sharding import COLUMN, COLUMN_BIAS, HIDDEN, REPLICATED, ROW, VOCAB
from ..bert.convert import BUFFERS, vocab_head_rules


def encoder_table(pooler: bool) -> ConversionTable:
    """AlbertModel's keys, without the base-model prefix; one set of layer weights per (group g, inner layer j)."""
    pt, fx = "encoder.albert_layer_groups.{g}.albert_layers.{j}.", "encoder/albert_layer_groups_{g}/albert_layers_{j}/"
    rules = (
        embedding("embeddings.word_embeddings", "embeddings/word_embeddings")
        + embedding("embeddings.position_embeddings", "embeddings/position_embeddings")
        + embedding("embeddings.token_type_embeddings", "embeddings/token_type_embeddings")
        + layer_norm("embeddings.LayerNorm", "embeddings/LayerNorm")
        + linear("encoder.embedding_hidden_mapping_in", "encoder/embedding_hidden_mapping_in")
        + linear(pt + "attention.query", fx + "attention/query")
        + linear(pt + "attention.key", fx + "attention/key")
        + linear(pt + "attention.value", fx + "attention/value")
        + linear(pt + "attention.dense", fx + "attention/dense")
        + layer_norm(pt + "attention.LayerNorm", fx + "attention/LayerNorm")
        + linear(pt + "ffn", fx + "ffn")
        + linear(pt + "ffn_output", fx + "ffn_output")
        + layer_norm(pt + "full_layer_layer_norm", fx + "full_layer_layer_norm")
    )
    if pooler:
        rules += linear("pooler", "pooler")
    return ConversionTable(rules, BUFFERS)


def head_table(pooler: bool, head_rules: list, ignore: tuple = ()) -> ConversionTable:
    return encoder_table(pooler).prefixed("albert.", "albert/") + ConversionTable(head_rules, ignore)


def mlm_rules(config) -> tuple[list, tuple]:
    """predictions: dense to embedding_size, activation, LayerNorm, decoder (tied to the word embeddings) + bias."""
    if config.tie_word_embeddings:
        rules, ignore = vocab_head_rules(config, "predictions", "predictions.bias")
    else:  # the untied decoder has its own bias (predictions.bias is stored but unused)
        rules, ignore = [Rule("predictions.bias", "bias")] + linear("predictions.decoder", "decoder"), ()
    rules += linear("predictions.dense", "predictions_dense") + layer_norm("predictions.LayerNorm", "predictions_LayerNorm")
    return rules, ignore


def masked_lm_table(config) -> ConversionTable:
    return head_table(False, *mlm_rules(config))


def pretraining_table(config) -> ConversionTable:
    rules, ignore = mlm_rules(config)
    return head_table(True, rules + linear("sop_classifier.classifier", "sop_classifier"), ignore)


def partition_rules(config) -> tuple:
    """Megatron-style: q/k/v and ffn split on their outputs over `model`, attention.dense and ffn_output on their
    inputs; the vocabulary over `model`. The same table serves shared (grouped) layers; built from the config so
    that every rule matches a parameter (the untied decoder exists only in some)."""
    heads = "embedding_hidden_mapping_in|pooler|predictions_dense|sop_classifier|classifier|qa_outputs"
    rules = (
        (r"word_embeddings/embedding$", VOCAB),
        (r"(position|token_type)_embeddings/embedding$", HIDDEN),
        (r"attention/(query|key|value)/kernel$", COLUMN),
        (r"attention/(query|key|value)/bias$", COLUMN_BIAS),
        (r"attention/dense/kernel$", ROW),
        (r"albert_layers_\d+/ffn/kernel$", COLUMN),
        (r"albert_layers_\d+/ffn/bias$", COLUMN_BIAS),
        (r"albert_layers_\d+/ffn_output/kernel$", ROW),
        (r"^bias$", COLUMN_BIAS),  # the vocabulary bias of the MLM head
        (rf"({heads})/kernel$", COLUMN),
        (r"(LayerNorm|layer_norm)/(scale|bias)$", REPLICATED),
        (rf"(attention/dense|ffn_output|{heads})/bias$", REPLICATED),
    )
    if not config.tie_word_embeddings:  # the untied decoder [E, V] and its own bias
        rules += ((r"^decoder/kernel$", COLUMN), (r"^decoder/bias$", COLUMN_BIAS))
    return rules
