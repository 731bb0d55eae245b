"""Marian conversion rules and partition rules: PyTorch state-dict keys <-> Flax parameter paths.

The layers are BART's (same key names); the differences are the embeddings (one ``shared`` table, or separate
``encoder.embed_tokens`` / ``decoder.embed_tokens``), no ``layernorm_embedding``, and sinusoidal position tables,
which are computed, never loaded.
"""

from ...convert import ConversionTable, Rule, embedding, linear
from jax.sharding import PartitionSpec as P

from ...sharding import COLUMN, COLUMN_BIAS, MODEL, REPLICATED, ROW, VOCAB
from ..bart.convert import _layer

# Sinusoidal tables (computed from the config) and fairseq leftovers.
BUFFERS = (r"(^|\.)embed_positions\.weight$", r"(^|\.)version$")


def model_table(config) -> ConversionTable:
    """MarianModel's keys (no prefix)."""
    ignore, rules = BUFFERS, []
    if config.share_encoder_decoder_embeddings:
        rules += embedding("shared", "shared")
    if config.one_embedding_table():
        ignore += (r"(^|\.)encoder\.embed_tokens\.weight$", r"(^|\.)decoder\.embed_tokens\.weight$")  # tied copies
    else:
        rules += embedding("encoder.embed_tokens", "encoder_embed_tokens")
        rules += embedding("decoder.embed_tokens", "decoder_embed_tokens")
    for side in ("encoder", "decoder"):
        rules += _layer(f"{side}.layers.{{i}}.", f"{side}/layers_{{i}}/", side == "decoder")
    return ConversionTable(rules, ignore)


def lm_table(config) -> ConversionTable:
    rules = [Rule("final_logits_bias", "final_logits_bias")]
    ignore = ()
    if config.tie_word_embeddings:
        ignore = (r"^lm_head\.weight$",)
    else:
        rules += linear("lm_head", "lm_head", bias=False)
    return model_table(config).prefixed("model.", "model/") + ConversionTable(rules, ignore)


def partition_rules(config) -> tuple:
    """Megatron-style: q/k/v and fc1 split on their outputs over `model`, out_proj and fc2 on their inputs; the
    vocabulary (embeddings, LM head, final_logits_bias) over `model`."""
    untied = () if config.tie_word_embeddings else ((r"^lm_head/kernel$", COLUMN),)
    return untied + (
        (r"(shared|embed_tokens)/embedding$", VOCAB),
        (r"(self_attn|encoder_attn)/(q_proj|k_proj|v_proj)/kernel$", COLUMN),
        (r"(self_attn|encoder_attn)/(q_proj|k_proj|v_proj)/bias$", COLUMN_BIAS),
        (r"(self_attn|encoder_attn)/out_proj/kernel$", ROW),
        (r"fc1/kernel$", COLUMN),
        (r"fc1/bias$", COLUMN_BIAS),
        (r"fc2/kernel$", ROW),
        (r"^final_logits_bias$", P(None, MODEL)),  # [1, V]
        (r"(out_proj/bias|fc2/bias|layer_norm/(scale|bias))$", REPLICATED),
    )
