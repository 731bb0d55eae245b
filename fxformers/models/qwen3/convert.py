"""Qwen3 conversion rules: the Llama key names plus the per-head q/k norms and the classifier's ``score``."""

from ...convert import ConversionTable, Rule, linear
from ...sharding import COLUMN
from ..llama import convert as _llama

def base_table(config) -> ConversionTable:
    pt, fx = "layers.{i}.self_attn.", "layers_{i}/self_attn/"
    norms = [Rule(pt + "q_norm.weight", fx + "q_norm/weight"), Rule(pt + "k_norm.weight", fx + "k_norm/weight")]
    return _llama.base_table(config) + ConversionTable(norms)


def causal_lm_table(config) -> ConversionTable:
    table = base_table(config).prefixed("model.", "model/")
    if config.tie_word_embeddings:
        return table + ConversionTable([], (r"^lm_head\.weight$",))
    return table + ConversionTable(linear("lm_head", "lm_head", bias=False))


def sequence_classification_table(config) -> ConversionTable:
    return base_table(config).prefixed("model.", "model/") + ConversionTable(linear("score", "score", bias=False))


def partition_rules(config) -> tuple:
    """Llama's Megatron-style table (its ``norm/weight`` rule covers q_norm/k_norm too) plus the classifier head."""
    return _llama.partition_rules(config) + ((r"^score/kernel$", COLUMN),)
