"""BART conversion rules: PyTorch state-dict keys <-> Flax parameter paths (mBART adds its final layer norms)."""

from jax.sharding import PartitionSpec as P

from ...convert import ConversionTable, Rule, embedding, layer_norm, linear
from ...sharding import COLUMN, COLUMN_BIAS, HIDDEN, MODEL, REPLICATED, ROW, VOCAB

# Copies of `shared.weight` that Transformers ties (stored by some checkpoints), and fairseq leftovers.
TIED = (r"(^|\.)encoder\.embed_tokens\.weight$", r"(^|\.)decoder\.embed_tokens\.weight$", r"(^|\.)version$")


def _attention(pt: str, fx: str) -> list[Rule]:
    rules = []
    for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
        rules += linear(f"{pt}.{name}", f"{fx}/{name}")
    return rules


def _layer(pt: str, fx: str, decoder: bool) -> list[Rule]:
    rules = (
        _attention(pt + "self_attn", fx + "self_attn")
        + layer_norm(pt + "self_attn_layer_norm", fx + "self_attn_layer_norm")
        + linear(pt + "fc1", fx + "fc1")
        + linear(pt + "fc2", fx + "fc2")
        + layer_norm(pt + "final_layer_norm", fx + "final_layer_norm")
    )
    if decoder:
        rules += _attention(pt + "encoder_attn", fx + "encoder_attn")
        rules += layer_norm(pt + "encoder_attn_layer_norm", fx + "encoder_attn_layer_norm")
    return rules


def model_table(config, final_layer_norms: bool = False) -> ConversionTable:
    """BartModel's keys (no prefix). ``final_layer_norms``: mBART's encoder/decoder ``layer_norm``."""
    rules = embedding("shared", "shared")
    for side in ("encoder", "decoder"):
        rules += embedding(f"{side}.embed_positions", f"{side}/embed_positions")
        rules += layer_norm(f"{side}.layernorm_embedding", f"{side}/layernorm_embedding")
        rules += _layer(f"{side}.layers.{{i}}.", f"{side}/layers_{{i}}/", side == "decoder")
        if final_layer_norms:
            rules += layer_norm(f"{side}.layer_norm", f"{side}/layer_norm")
    return ConversionTable(rules, TIED)


def lm_table(config, final_layer_norms: bool = False) -> ConversionTable:
    rules = [Rule("final_logits_bias", "final_logits_bias")]
    ignore = ()
    if config.tie_word_embeddings:
        ignore = (r"^lm_head\.weight$",)
    else:
        rules += linear("lm_head", "lm_head", bias=False)
    return model_table(config, final_layer_norms).prefixed("model.", "model/") + ConversionTable(rules, ignore)


def classification_table(config, final_layer_norms: bool = False) -> ConversionTable:
    rules = linear("classification_head.dense", "classification_head/dense")
    rules += linear("classification_head.out_proj", "classification_head/out_proj")
    return model_table(config, final_layer_norms).prefixed("model.", "model/") + ConversionTable(rules)


def partition_rules(config) -> tuple:
    """BART / mBART (every head): attention in-projections and fc1 column-parallel, out_proj and fc2 row-parallel."""
    untied = () if config.tie_word_embeddings else ((r"^lm_head/kernel$", COLUMN),)
    return untied + (
        (r"shared/embedding$", VOCAB),
        (r"embed_positions/embedding$", HIDDEN),
        (r"(self_attn|encoder_attn)/(q|k|v)_proj/kernel$", COLUMN),
        (r"(self_attn|encoder_attn)/(q|k|v)_proj/bias$", COLUMN_BIAS),
        (r"(self_attn|encoder_attn)/out_proj/kernel$", ROW),
        (r"fc1/kernel$", COLUMN),
        (r"fc1/bias$", COLUMN_BIAS),
        (r"fc2/kernel$", ROW),
        (r"^final_logits_bias$", P(None, MODEL)),  # [1, V]
        (r"classification_head/(dense|out_proj)/kernel$", COLUMN),
        (r"(layer_norm|layernorm_embedding)/(scale|bias)$", REPLICATED),
        (r"((self_attn|encoder_attn)/out_proj|fc2|classification_head/(dense|out_proj))/bias$", REPLICATED),
    )
