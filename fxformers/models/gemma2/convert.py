"""Gemma 2 conversion rules: Llama's key names plus the pre-/post-feed-forward norms."""

from ...convert import ConversionTable, Rule
from ..gemma import convert as _gemma
from ..llama import convert as _llama

partition_rules = _gemma.partition_rules  # Llama's `norm/weight` rule covers the extra norms


def base_table(config) -> ConversionTable:
    pt, fx = "layers.{i}.", "layers_{i}/"
    norms = [Rule(pt + f"{n}.weight", fx + f"{n}/weight") for n in ("pre_feedforward_layernorm", "post_feedforward_layernorm")]
    return _llama.base_table(config) + ConversionTable(norms)


def causal_lm_table(config) -> ConversionTable:
    return _gemma.causal_lm_table_over(base_table, config)


def sequence_classification_table(config) -> ConversionTable:
    return _gemma.sequence_classification_table(config, base_table)
