"""ELECTRA conversion rules and partition rules: BERT's encoder keys, the embedding projection, ELECTRA's heads."""

from ...convert import ConversionTable, Rule, layer_norm, linear
from ...sharding import COLUMN, COLUMN_BIAS, HIDDEN, REPLICATED, ROW, VOCAB
from ..bert.convert import encoder_table as bert_encoder_table


def encoder_table(config) -> ConversionTable:
    """ElectraModel's keys (no pooler); ``embeddings_project`` exists when embedding_size != hidden_size."""
    table = bert_encoder_table(pooler=False)
    if config.embedding_size != config.hidden_size:
        table += ConversionTable(linear("embeddings_project", "embeddings_project"))
    return table


def head_table(config, head_rules: list, ignore: tuple = ()) -> ConversionTable:
    return encoder_table(config).prefixed("electra.", "electra/") + ConversionTable(head_rules, ignore)


def sequence_classification_rules() -> list:
    return linear("classifier.dense", "classifier_dense") + linear("classifier.out_proj", "classifier_out_proj")


def multiple_choice_rules(config) -> list:
    rules = linear("classifier", "classifier")
    if config.summary_use_proj:
        rules += linear("sequence_summary.summary", "sequence_summary")
    return rules


def pretraining_rules() -> list:
    return linear("discriminator_predictions.dense", "discriminator_dense") + linear(
        "discriminator_predictions.dense_prediction", "discriminator_dense_prediction"
    )


def masked_lm_table(config) -> ConversionTable:
    """generator_predictions (dense to embedding_size, gelu, LayerNorm) and generator_lm_head, tied to the word
    embeddings unless tie_word_embeddings is False; its bias is always stored."""
    rules = (
        linear("generator_predictions.dense", "generator_dense")
        + layer_norm("generator_predictions.LayerNorm", "generator_LayerNorm")
        + [Rule("generator_lm_head.bias", "bias")]
    )
    ignore: tuple = ()
    if config.tie_word_embeddings:
        ignore = (r"^generator_lm_head\.weight$",)
    else:
        rules += linear("generator_lm_head", "decoder", bias=False)
    return head_table(config, rules, ignore)


def partition_rules(config) -> tuple:
    """Megatron-style over BERT's layout: q/k/v and the FFN in-projection split on their outputs over `model`, the
    attention output and FFN out-projection on their inputs; the vocabulary over `model`. Built from the config so
    that every rule matches a parameter (the projection and the untied generator decoder exist only in some)."""
    project = config.embedding_size != config.hidden_size
    heads = "classifier_dense|classifier_out_proj|classifier|qa_outputs|sequence_summary|discriminator_dense|" \
            "discriminator_dense_prediction|generator_dense"
    rules = (
        (r"word_embeddings/embedding$", VOCAB),
        (r"(position|token_type)_embeddings/embedding$", HIDDEN),
        (r"attention/(query|key|value)/kernel$", COLUMN),
        (r"attention/(query|key|value)/bias$", COLUMN_BIAS),
        (r"attention/out/kernel$", ROW),
        (r"layer_\d+/intermediate/kernel$", COLUMN),
        (r"layer_\d+/intermediate/bias$", COLUMN_BIAS),
        (r"layer_\d+/output/kernel$", ROW),
        (r"^bias$", COLUMN_BIAS),  # the vocabulary bias of the generator head
        (rf"({heads})/kernel$", COLUMN),
        (r"LayerNorm/(scale|bias)$", REPLICATED),
        (rf"(attention/out|layer_\d+/output|{heads})/bias$", REPLICATED),
    )
    if project:
        rules += ((r"embeddings_project/kernel$", COLUMN), (r"embeddings_project/bias$", COLUMN_BIAS))
    if not config.tie_word_embeddings:
        rules += ((r"^decoder/kernel$", COLUMN),)  # the untied generator decoder [E, V]
    return rules
