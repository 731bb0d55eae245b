"""GPT-2 conversion rules: PyTorch state-dict keys <-> Flax parameter paths (Conv1D weights are already [in, out])."""

from ...convert import ConversionTable, conv1d, embedding, layer_norm, linear
from ...sharding import COLUMN, COLUMN_BIAS, HIDDEN, REPLICATED, ROW, VOCAB

# Buffers older checkpoints carry (the causal mask), never weights.
BUFFERS = (r"\.attn\.bias$", r"\.attn\.masked_bias$")


def base_table() -> ConversionTable:
    pt, fx = "h.{i}.", "h_{i}/"
    rules = (
        embedding("wte", "wte")
        + embedding("wpe", "wpe")
        + layer_norm(pt + "ln_1", fx + "ln_1")
        + conv1d(pt + "attn.c_attn", fx + "attn/c_attn")
        + conv1d(pt + "attn.c_proj", fx + "attn/c_proj")
        + layer_norm(pt + "ln_2", fx + "ln_2")
        + conv1d(pt + "mlp.c_fc", fx + "mlp/c_fc")
        + conv1d(pt + "mlp.c_proj", fx + "mlp/c_proj")
        + layer_norm("ln_f", "ln_f")
    )
    return ConversionTable(rules, BUFFERS)


def lm_head_table(config) -> ConversionTable:
    table = base_table().prefixed("transformer.", "transformer/")
    if config.tie_word_embeddings:
        return table + ConversionTable([], (r"^lm_head\.weight$",))
    return table + ConversionTable(linear("lm_head", "lm_head", bias=False))


def sequence_classification_table() -> ConversionTable:
    return base_table().prefixed("transformer.", "transformer/") + ConversionTable(linear("score", "score", bias=False))


def partition_rules(config) -> tuple:
    """GPT-2: the fused c_attn and c_fc column-parallel, both c_proj row-parallel, wte over the vocabulary."""
    del config
    return (
        (r"wte/embedding$", VOCAB),
        (r"wpe/embedding$", HIDDEN),
        (r"(attn/c_attn|mlp/c_fc)/kernel$", COLUMN),
        (r"(attn/c_attn|mlp/c_fc)/bias$", COLUMN_BIAS),
        (r"(attn|mlp)/c_proj/kernel$", ROW),
        (r"^(lm_head|score)/kernel$", COLUMN),
        (r"((attn|mlp)/c_proj/bias|ln_\d+/(scale|bias)|ln_f/(scale|bias)|score/bias)$", REPLICATED),
    )
