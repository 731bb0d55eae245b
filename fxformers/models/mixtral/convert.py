"""Mixtral conversion rules and the MoE partition rules (shared with Qwen3-MoE).

Checkpoints store each expert as three Linears (``block_sparse_moe.experts.{e}.w1/w2/w3``: gate, down, up), as
Transformers writes them; fxformers stacks them into one ``[E, in, out]`` kernel each (``stacked_linears``).
"""

from jax.sharding import PartitionSpec as P

from ...convert import ConversionTable, Rule, embedding, linear, stacked_linears
from ...sharding import COLUMN, COLUMN_BIAS, FSDP, MODEL, REPLICATED, ROW, VOCAB
from ..llama.convert import BUFFERS, attention_rules

# expert stacks: experts over `model` (expert parallelism), the hidden axis over `fsdp`
EXPERTS_IN = P(MODEL, FSDP, None)  # gate_proj / up_proj [E, D, F]
EXPERTS_OUT = P(MODEL, None, FSDP)  # down_proj [E, F, D]


def moe_rules(config, pt_block: str, gate: str, up: str, down: str, fx: str = "layers_{i}/mlp/") -> list:
    """Router ``{pt_block}.gate`` and experts ``{pt_block}.experts.{e}.{gate|up|down}`` for layer placeholder {i}."""
    e = config.num_experts_total()
    return (
        linear(pt_block + ".gate", fx + "gate", bias=False)
        + stacked_linears(pt_block + ".experts.{e}." + gate, e, fx + "experts/gate_proj")
        + stacked_linears(pt_block + ".experts.{e}." + up, e, fx + "experts/up_proj")
        + stacked_linears(pt_block + ".experts.{e}." + down, e, fx + "experts/down_proj")
    )


def base_table(config) -> ConversionTable:
    rules = (
        embedding("embed_tokens", "embed_tokens")
        + attention_rules(config)
        + moe_rules(config, "layers.{i}.block_sparse_moe", "w1", "w3", "w2")
        + [Rule("norm.weight", "norm/weight")]
    )
    return ConversionTable(rules, BUFFERS)


def causal_lm_table(config) -> ConversionTable:
    table = base_table(config).prefixed("model.", "model/")
    if config.tie_word_embeddings:
        return table + ConversionTable([], (r"^lm_head\.weight$",))
    return table + ConversionTable(linear("lm_head", "lm_head", bias=False))


def partition_rules(config) -> tuple:
    """Megatron-style attention (as Llama), expert parallelism for the expert stacks, a replicated router.

    Rules for parameters a config cannot have (projection biases, dense MLP layers) are left out, so a family's
    table matches exactly the parameters of its models.
    """
    rules = [
        (r"embed_tokens/embedding$", VOCAB),
        (r"self_attn/(q|k|v)_proj/kernel$", COLUMN),
        (r"self_attn/o_proj/kernel$", ROW),
    ]
    if any(config.is_sparse_layer(i) for i in range(config.num_hidden_layers)):
        rules += [
            (r"mlp/experts/(gate|up)_proj$", EXPERTS_IN),
            (r"mlp/experts/down_proj$", EXPERTS_OUT),
            (r"mlp/gate/kernel$", REPLICATED),  # the router [D, E] is small; every device routes its own tokens
        ]
    if any(not config.is_sparse_layer(i) for i in range(config.num_hidden_layers)):
        rules += [(r"mlp/(gate|up)_proj/kernel$", COLUMN), (r"mlp/down_proj/kernel$", ROW)]
    if config.qkv_bias():
        rules.append((r"self_attn/(q|k|v)_proj/bias$", COLUMN_BIAS))
    if config.o_bias():
        rules.append((r"self_attn/o_proj/bias$", REPLICATED))
    if not config.tie_word_embeddings:
        rules.append((r"^lm_head/kernel$", COLUMN))
    rules += [(r"^score/kernel$", COLUMN), (r"norm/weight$", REPLICATED)]
    return tuple(rules)
