"""Gemma (1) conversion rules: Llama's key names (the norms store ``weight`` zero-centred), plus the classifier."""

from ...convert import ConversionTable, linear
from ...sharding import COLUMN
from ..llama import convert as _llama

base_table = _llama.base_table


def sequence_classification_table(config, base=base_table) -> ConversionTable:
    return base(config).prefixed("model.", "model/") + ConversionTable(linear("score", "score", bias=False))


def causal_lm_table_over(base, config) -> ConversionTable:
    """The causal-LM table over any Gemma-family base table: tied (no lm_head key) or untied head."""
    table = base(config).prefixed("model.", "model/")
    if config.tie_word_embeddings:
        return table + ConversionTable([], (r"^lm_head\.weight$",))
    return table + ConversionTable(linear("lm_head", "lm_head", bias=False))


def causal_lm_table(config) -> ConversionTable:
    return causal_lm_table_over(base_table, config)


def partition_rules(config) -> tuple:
    """Llama's Megatron-style table (its ``norm/weight`` rule covers every Gemma norm) plus the classifier head."""
    return _llama.partition_rules(config) + ((r"^score/kernel$", COLUMN),)
