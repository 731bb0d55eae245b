"""DeBERTa-v2 conversion rules and partition rules."""

import numpy as np
from jax.sharding import PartitionSpec as P

from ...convert import ConversionTable, Rule, Transform, embedding, layer_norm, linear
from ...sharding import COLUMN, COLUMN_BIAS, FSDP, HIDDEN, MODEL, REPLICATED, ROW, VOCAB

# torch Conv1d weight [out, in / groups, k] <-> flax Conv kernel [k, in / groups, out]
CONV1D = Transform("conv1d", lambda a: np.ascontiguousarray(a.transpose(2, 1, 0)), lambda a: np.ascontiguousarray(a.transpose(2, 1, 0)))

P_CONV = P(None, FSDP, MODEL)  # conv kernel [k, in / groups, out]: output channels over `model`, as a column layer

BUFFERS = (r"embeddings\.position_ids$",)


def encoder_table(config) -> ConversionTable:
    """DebertaV2Model's keys, without the base-model prefix; only the weights this config creates."""
    pt, fx = "encoder.layer.{i}.", "encoder/layer_{i}/"
    rules = embedding("embeddings.word_embeddings", "embeddings/word_embeddings") + layer_norm(
        "embeddings.LayerNorm", "embeddings/LayerNorm")
    ignore = BUFFERS
    if config.position_biased_input:
        rules += embedding("embeddings.position_embeddings", "embeddings/position_embeddings")
    else:  # Transformers ignores a stored table it does not use
        ignore += (r"embeddings\.position_embeddings\.weight$",)
    if config.type_vocab_size > 0:
        rules += embedding("embeddings.token_type_embeddings", "embeddings/token_type_embeddings")
    if config.embedding_width != config.hidden_size:
        rules += linear("embeddings.embed_proj", "embeddings/embed_proj", bias=False)
    for name in ("query_proj", "key_proj", "value_proj"):
        rules += linear(pt + f"attention.self.{name}", fx + f"attention/{name}")
    if config.relative_attention and not config.share_att_key:
        if "c2p" in config.pos_att:
            rules += linear(pt + "attention.self.pos_key_proj", fx + "attention/pos_key_proj")
        if "p2c" in config.pos_att:
            rules += linear(pt + "attention.self.pos_query_proj", fx + "attention/pos_query_proj")
    rules += (
        linear(pt + "attention.output.dense", fx + "attention/dense")
        + layer_norm(pt + "attention.output.LayerNorm", fx + "attention/LayerNorm")
        + linear(pt + "intermediate.dense", fx + "intermediate")
        + linear(pt + "output.dense", fx + "output")
        + layer_norm(pt + "output.LayerNorm", fx + "LayerNorm")
    )
    if config.relative_attention:
        rules += embedding("encoder.rel_embeddings", "encoder/rel_embeddings")
    if "layer_norm" in config.norm_rel_ebd_types:
        rules += layer_norm("encoder.LayerNorm", "encoder/LayerNorm")
    if config.conv_kernel_size > 0:
        rules += [Rule("encoder.conv.conv.weight", "encoder/conv/conv/kernel", CONV1D),
                  Rule("encoder.conv.conv.bias", "encoder/conv/conv/bias")]
        rules += layer_norm("encoder.conv.LayerNorm", "encoder/conv/LayerNorm")
    return ConversionTable(rules, ignore)


def head_table(config, head_rules: list, ignore: tuple = ()) -> ConversionTable:
    return encoder_table(config).prefixed("deberta.", "deberta/") + ConversionTable(head_rules, ignore)


def pooled_rules(config) -> list:
    return linear("pooler.dense", "pooler") + linear("classifier", "classifier")


def masked_lm_table(config) -> ConversionTable:
    """legacy: cls.predictions (transform to embedding_size, decoder tied to the word embeddings + bias);
    otherwise lm_predictions.lm_head (transform at hidden_size, then the word embeddings + bias)."""
    ignore = (r"^mask_predictions\.",)  # the RTD head of some checkpoints; Transformers ignores it
    if not config.legacy:
        rules = (linear("lm_predictions.lm_head.dense", "transform_dense")
                 + layer_norm("lm_predictions.lm_head.LayerNorm", "transform_LayerNorm")
                 + [Rule("lm_predictions.lm_head.bias", "bias")])
        return head_table(config, rules, ignore)
    rules = (linear("cls.predictions.transform.dense", "transform_dense")
             + layer_norm("cls.predictions.transform.LayerNorm", "transform_LayerNorm")
             + [Rule("cls.predictions.bias", "bias")])
    if config.tie_word_embeddings:
        ignore += (r"^cls\.predictions\.decoder\.(weight|bias)$",)
    else:  # the untied decoder adds its own bias (cls.predictions.bias is stored but unused)
        rules += linear("cls.predictions.decoder", "decoder")
    return head_table(config, rules, ignore)


def partition_rules(config) -> tuple:
    """Megatron-style: q/k/v (and the position projections) split on their outputs over `model`, the attention
    output and FFN out-projection on their inputs; the vocabulary over `model`. Built from the config so that every
    rule matches a parameter (position tables, projections, the conv layer and the decoder exist only in some)."""
    heads = "pooler|classifier|qa_outputs|transform_dense"
    projections = "query|key|value"
    if config.relative_attention and not config.share_att_key:
        projections += "".join(f"|{name}" for t, name in (("c2p", "pos_key"), ("p2c", "pos_query")) if t in config.pos_att)
    tables = [name for name, present in (("position", config.position_biased_input), ("token_type", config.type_vocab_size > 0)) if present]
    rules = (
        (r"word_embeddings/embedding$", VOCAB),
        (rf"attention/({projections})_proj/kernel$", COLUMN),
        (rf"attention/({projections})_proj/bias$", COLUMN_BIAS),
        (r"attention/dense/kernel$", ROW),
        (r"layer_\d+/intermediate/kernel$", COLUMN),
        (r"layer_\d+/intermediate/bias$", COLUMN_BIAS),
        (r"layer_\d+/output/kernel$", ROW),
        (r"^bias$", COLUMN_BIAS),  # the vocabulary bias of the MLM head
        (rf"({heads})/kernel$", COLUMN),
        (r"LayerNorm/(scale|bias)$", REPLICATED),
        (rf"(attention/dense|layer_\d+/output|{heads})/bias$", REPLICATED),
    )
    if tables:
        rules += ((rf"({'|'.join(tables)})_embeddings/embedding$", HIDDEN),)
    if config.relative_attention:
        rules += ((r"rel_embeddings/embedding$", HIDDEN),)
    if config.embedding_width != config.hidden_size:
        rules += ((r"embeddings/embed_proj/kernel$", COLUMN),)
    if config.conv_kernel_size > 0:
        rules += ((r"conv/conv/kernel$", P_CONV), (r"conv/conv/bias$", COLUMN_BIAS))
    if config.legacy and not config.tie_word_embeddings:  # the untied legacy decoder [E, V] and its own bias
        rules += ((r"^decoder/kernel$", COLUMN), (r"^decoder/bias$", COLUMN_BIAS))
    return rules
