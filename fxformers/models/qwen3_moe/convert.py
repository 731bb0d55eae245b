"""Qwen3-MoE conversion rules: Qwen3 attention (q/k norms), experts ``mlp.experts.{e}.{gate,up,down}_proj``,
router ``mlp.gate``, and dense ``mlp.{gate,up,down}_proj`` in the layers that are not sparse."""

from ...convert import ConversionTable, Rule, embedding, linear
from ..mixtral.convert import BUFFERS, attention_rules, moe_rules
from ..mixtral.convert import partition_rules as partition_rules  # one MoE table serves both families


def base_table(config) -> ConversionTable:
    """One rule per weight kind with a layer placeholder: a layer's params decide which kinds it holds."""
    layers = range(config.num_hidden_layers)
    rules = embedding("embed_tokens", "embed_tokens") + [Rule("norm.weight", "norm/weight")] + attention_rules(config)
    if any(config.is_sparse_layer(i) for i in layers):
        rules += moe_rules(config, "layers.{i}.mlp", "gate_proj", "up_proj", "down_proj")
    if not all(config.is_sparse_layer(i) for i in layers):
        rules += [r for name in ("gate_proj", "up_proj", "down_proj")
                  for r in linear(f"layers.{{i}}.mlp.{name}", f"layers_{{i}}/mlp/{name}", bias=False)]
    return ConversionTable(rules, BUFFERS)


def causal_lm_table(config) -> ConversionTable:
    table = base_table(config).prefixed("model.", "model/")
    if config.tie_word_embeddings:
        return table + ConversionTable([], (r"^lm_head\.weight$",))
    return table + ConversionTable(linear("lm_head", "lm_head", bias=False))
