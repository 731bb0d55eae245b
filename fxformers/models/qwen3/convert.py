"""Qwen3 conversion rules: Llama's (with the per-head q/k norms ``Qwen3Config.qk_norm()`` turns on) plus the
classifier's ``score``."""

from ...convert import ConversionTable, linear
from ...sharding import COLUMN
from ..llama import convert as _llama

base_table = _llama.base_table
causal_lm_table = _llama.causal_lm_table


def sequence_classification_table(config) -> ConversionTable:
    return base_table(config).prefixed("model.", "model/") + ConversionTable(linear("score", "score", bias=False))


def partition_rules(config) -> tuple:
    """Llama's Megatron-style table (its ``norm/weight`` rule covers q_norm/k_norm too) plus the classifier head."""
    return _llama.partition_rules(config) + ((r"^score/kernel$", COLUMN),)
