"""Gemma 3 text conversion rules: Gemma 2's key names plus the per-head q/k norms."""

from ...convert import ConversionTable, Rule
from ..gemma import convert as _gemma
from ..gemma2 import convert as _gemma2

partition_rules = _gemma.partition_rules  # Llama's `norm/weight` rule covers q_norm/k_norm too


def base_table(config) -> ConversionTable:
    pt, fx = "layers.{i}.self_attn.", "layers_{i}/self_attn/"
    norms = [Rule(pt + "q_norm.weight", fx + "q_norm/weight"), Rule(pt + "k_norm.weight", fx + "k_norm/weight")]
    return _gemma2.base_table(config) + ConversionTable(norms)


def causal_lm_table(config) -> ConversionTable:
    return _gemma.causal_lm_table_over(base_table, config)


def sequence_classification_table(config) -> ConversionTable:
    return _gemma.sequence_classification_table(config, base_table)
