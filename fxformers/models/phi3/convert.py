"""Phi-3 conversion: the fused ``qkv_proj`` and ``gate_up_proj`` of the checkpoint split into the Llama modules'
q/k/v and gate/up kernels on load and fused back on save (``fused_linear``); partition rules are Llama's."""

from ...convert import ConversionTable, Rule, embedding, fused_linear, linear
from ...sharding import COLUMN
from ..llama.convert import partition_rules as _llama_partition_rules

BUFFERS = (r"rotary_emb\.inv_freq$", r"rotary_emb\.original_inv_freq$", r"rotary_emb\.long_inv_freq$")


def base_table(config) -> ConversionTable:
    pt, fx = "layers.{i}.", "layers_{i}/"
    attn, mlp = fx + "self_attn/", fx + "mlp/"
    f = config.intermediate_size
    rules = (
        embedding("embed_tokens", "embed_tokens")
        + fused_linear(pt + "self_attn.qkv_proj", [attn + "q_proj", attn + "k_proj", attn + "v_proj"],
                       config.fused_qkv_sizes())
        + linear(pt + "self_attn.o_proj", attn + "o_proj", bias=False)
        + fused_linear(pt + "mlp.gate_up_proj", [mlp + "gate_proj", mlp + "up_proj"], (f, f))  # gate first
        + linear(pt + "mlp.down_proj", mlp + "down_proj", bias=False)
        + [Rule(pt + "input_layernorm.weight", fx + "input_layernorm/weight"),
           Rule(pt + "post_attention_layernorm.weight", fx + "post_attention_layernorm/weight"),
           Rule("norm.weight", "norm/weight")]
    )
    return ConversionTable(rules, BUFFERS)


def causal_lm_table(config) -> ConversionTable:
    table = base_table(config).prefixed("model.", "model/")
    if config.tie_word_embeddings:
        return table + ConversionTable([], (r"^lm_head\.weight$",))
    return table + ConversionTable(linear("lm_head", "lm_head", bias=False))


def partition_rules(config) -> tuple:
    """Llama's table (the fused projections are split into Llama's kernels) plus the classifier head."""
    return _llama_partition_rules(config) + ((r"^score/kernel$", COLUMN),)
