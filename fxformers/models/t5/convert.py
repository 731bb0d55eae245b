"""T5 conversion rules: PyTorch state-dict keys <-> Flax parameter paths (the names are the same, dots to slashes)."""

from ...convert import ConversionTable, Rule, embedding, linear
from ...sharding import COLUMN, REPLICATED, ROW, VOCAB

# Tied copies of `shared.weight` Transformers may store, and a cross-attention bias old checkpoints carry unused.
TIED = (r"^encoder\.embed_tokens\.weight$", r"^decoder\.embed_tokens\.weight$")
UNUSED = (r"^decoder\.block\.0\.layer\.1\.EncDecAttention\.relative_attention_bias\.weight$",)


def _attention(pt: str, fx: str) -> list[Rule]:
    rules = []
    for name in ("q", "k", "v", "o"):
        rules += linear(f"{pt}.{name}", f"{fx}/{name}", bias=False)
    return rules


def _stack(name: str, config, decoder: bool) -> list[Rule]:
    pt, fx = f"{name}.block.{{i}}.layer.", f"{name}/block_{{i}}/layer_"
    ff = 2 if decoder else 1
    rules = (
        _attention(pt + "0.SelfAttention", fx + "0/SelfAttention")
        + [Rule(pt + "0.layer_norm.weight", fx + "0/layer_norm/weight")]
        + [Rule(f"{name}.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
                f"{name}/block_0/layer_0/SelfAttention/relative_attention_bias/embedding")]
        + [Rule(pt + f"{ff}.layer_norm.weight", fx + f"{ff}/layer_norm/weight")]
        + [Rule(f"{name}.final_layer_norm.weight", f"{name}/final_layer_norm/weight")]
    )
    names = ("wi_0", "wi_1", "wo") if config.is_gated_act else ("wi", "wo")
    for n in names:
        rules += linear(pt + f"{ff}.DenseReluDense.{n}", fx + f"{ff}/DenseReluDense/{n}", bias=False)
    if decoder:
        rules += _attention(pt + "1.EncDecAttention", fx + "1/EncDecAttention")
        rules += [Rule(pt + "1.layer_norm.weight", fx + "1/layer_norm/weight")]
    return rules


def t5_table(config, decoder: bool, lm_head: bool) -> ConversionTable:
    rules = embedding("shared", "shared") + _stack("encoder", config, False)
    ignore = TIED
    if decoder:
        rules += _stack("decoder", config, True)
        ignore += UNUSED
    else:
        ignore += (r"^decoder\.", r"^lm_head\.")  # T5EncoderModel from a full checkpoint
    if lm_head and not config.tie_word_embeddings:
        rules += linear("lm_head", "lm_head", bias=False)
    else:
        ignore += (r"^lm_head\.weight$",)  # the tied copy
    return ConversionTable(rules, ignore)


def partition_rules(config) -> tuple:
    """T5 / mT5: q/k/v and wi column-parallel, o and wo row-parallel, the shared embedding over the vocabulary."""
    untied = () if config.tie_word_embeddings else ((r"^lm_head/kernel$", COLUMN),)
    return untied + (
        (r"shared/embedding$", VOCAB),
        (r"(SelfAttention|EncDecAttention)/(q|k|v)/kernel$", COLUMN),
        (r"(SelfAttention|EncDecAttention)/o/kernel$", ROW),
        (r"relative_attention_bias/embedding$", REPLICATED),  # [buckets, N]: tiny
        (r"DenseReluDense/wi(_\d+)?/kernel$", COLUMN),
        (r"DenseReluDense/wo/kernel$", ROW),
        (r"layer_norm/weight$", REPLICATED),
    )
