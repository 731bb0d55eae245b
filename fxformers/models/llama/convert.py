"""Llama-family conversion rules (Llama, Mistral, Qwen2 share the key names)."""

from ...convert import ConversionTable, Rule, embedding, linear
from ...sharding import COLUMN, COLUMN_BIAS, REPLICATED, ROW, VOCAB

BUFFERS = (r"rotary_emb\.inv_freq$",)


def attention_rules(config, pt: str = "layers.{i}.", fx: str = "layers_{i}/") -> list:
    """One decoder layer's attention and its two norms (shared by the families built on Llama's layers), with the
    per-head q/k norms when the config has them."""
    qkv, o = config.qkv_bias(), config.o_bias()
    rules = (
        linear(pt + "self_attn.q_proj", fx + "self_attn/q_proj", qkv)
        + linear(pt + "self_attn.k_proj", fx + "self_attn/k_proj", qkv)
        + linear(pt + "self_attn.v_proj", fx + "self_attn/v_proj", qkv)
        + linear(pt + "self_attn.o_proj", fx + "self_attn/o_proj", o)
        + [Rule(pt + "input_layernorm.weight", fx + "input_layernorm/weight"),
           Rule(pt + "post_attention_layernorm.weight", fx + "post_attention_layernorm/weight")]
    )
    if config.qk_norm():
        rules += [Rule(pt + "self_attn.q_norm.weight", fx + "self_attn/q_norm/weight"),
                  Rule(pt + "self_attn.k_norm.weight", fx + "self_attn/k_norm/weight")]
    return rules


def base_table(config) -> ConversionTable:
    pt, fx = "layers.{i}.", "layers_{i}/"
    mlp = bool(config.mlp_bias)
    rules = (
        embedding("embed_tokens", "embed_tokens")
        + attention_rules(config, pt, fx)
        + linear(pt + "mlp.gate_proj", fx + "mlp/gate_proj", mlp)
        + linear(pt + "mlp.up_proj", fx + "mlp/up_proj", mlp)
        + linear(pt + "mlp.down_proj", fx + "mlp/down_proj", mlp)
        + [Rule("norm.weight", "norm/weight")]
    )
    return ConversionTable(rules, BUFFERS)


def causal_lm_table(config) -> ConversionTable:
    table = base_table(config).prefixed("model.", "model/")
    if config.tie_word_embeddings:
        return table + ConversionTable([], (r"^lm_head\.weight$",))
    return table + ConversionTable(linear("lm_head", "lm_head", bias=False))


def partition_rules(config) -> tuple:
    """Megatron-style: q/k/v and gate/up split on their outputs over `model`, o/down on their inputs."""
    qkv, o, mlp = config.qkv_bias(), config.o_bias(), bool(config.mlp_bias)
    rules = [
        (r"embed_tokens/embedding$", VOCAB),
        (r"self_attn/(q|k|v)_proj/kernel$", COLUMN),
        (r"self_attn/o_proj/kernel$", ROW),
        (r"mlp/(gate|up)_proj/kernel$", COLUMN),
        (r"mlp/down_proj/kernel$", ROW),
        (r"norm/weight$", REPLICATED),
    ]
    if not config.tie_word_embeddings:
        rules.append((r"^lm_head/kernel$", COLUMN))
    if qkv:
        rules.append((r"self_attn/(q|k|v)_proj/bias$", COLUMN_BIAS))
    if mlp:
        rules += [(r"mlp/(gate|up)_proj/bias$", COLUMN_BIAS), (r"mlp/down_proj/bias$", REPLICATED)]
    if o:
        rules.append((r"self_attn/o_proj/bias$", REPLICATED))
    return tuple(rules)
