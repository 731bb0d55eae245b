"""Gemma 1/2/3 (text) parity with PyTorch transformers."""

import pytest
import transformers

import fxformers
from decoder_family import (build, check_bfloat16, check_logits_and_generation, check_loss_and_base_model,
                            check_partition_rules, check_save_round_trip, check_sequence_classification,
                            rewrite_config)

VOCAB, PAD = 99, 0
BASE = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, head_dim=16, max_position_embeddings=64, bos_token_id=1, eos_token_id=2,
            pad_token_id=PAD)

GEMMA = {
    "gqa-tied": dict(),
    "mha-untied-bias-odd-head_dim": dict(num_key_value_heads=4, head_dim=6, tie_word_embeddings=False,
                                         attention_bias=True, rope_parameters=dict(rope_type="default", rope_theta=100.0)),
}


def gemma(case="gqa-tied", auto="AutoModelForCausalLM"):
    return build("GemmaConfig", BASE, GEMMA[case], auto)


@pytest.mark.parametrize("case", list(GEMMA))
def test_gemma_logits_and_generation(tmp_path, case):
    check_logits_and_generation(gemma(case), tmp_path, VOCAB, PAD, beam=case == "gqa-tied")


def test_gemma_legacy_gelu_and_rope_spelling(tmp_path):
    """Released Gemma configs say hidden_act "gelu" (meaning tanh) and use rope_theta: both libraries agree."""
    gemma("mha-untied-bias-odd-head_dim").save_pretrained(tmp_path)

    def legacy(config):
        config["rope_theta"] = config.pop("rope_parameters")["rope_theta"]
        config["hidden_act"] = "gelu"

    rewrite_config(tmp_path, legacy)
    tm = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    check_logits_and_generation(tm, tmp_path / "re", VOCAB, PAD)


def test_gemma_heads_and_round_trip(tmp_path):
    check_loss_and_base_model(gemma(), tmp_path / "lm", VOCAB, PAD, "GemmaModel")
    check_sequence_classification(gemma(auto="AutoModelForSequenceClassification"), tmp_path / "cls", VOCAB, PAD)
    check_save_round_trip(gemma("mha-untied-bias-odd-head_dim"), tmp_path / "rt", VOCAB, PAD)


def test_gemma_bfloat16(tmp_path):
    check_bfloat16(gemma(), tmp_path, VOCAB, PAD)


def test_gemma_partition_rules(tmp_path):
    overrides = dict(attention_bias=True, tie_word_embeddings=False)  # so every rule has something to match
    build("GemmaConfig", BASE, overrides).save_pretrained(tmp_path / "lm")
    build("GemmaConfig", BASE, overrides, "AutoModelForSequenceClassification").save_pretrained(tmp_path / "cls")
    fx = [fxformers.AutoModel.from_pretrained(tmp_path / "lm"), fxformers.AutoModelForCausalLM.from_pretrained(tmp_path / "lm"),
          fxformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "cls")]
    check_partition_rules(fx, VOCAB, PAD)


# -- Gemma 2 -----------------------------------------------------------------------------------------------------------
GEMMA2 = {
    "softcaps-window-4": dict(sliding_window=4, attn_logit_softcapping=1.0, final_logit_softcapping=2.0,
                              query_pre_attn_scalar=24),
    "no-softcap-layer_types-mqa-odd-head_dim": dict(attn_logit_softcapping=None, final_logit_softcapping=None,
                                                    num_key_value_heads=1, head_dim=6, tie_word_embeddings=False,
                                                    sliding_window=3, layer_types=["full_attention", "sliding_attention"],
                                                    rope_parameters=dict(rope_type="linear", rope_theta=500.0, factor=2.0)),
}


def gemma2(case="softcaps-window-4", auto="AutoModelForCausalLM"):
    return build("Gemma2Config", BASE, GEMMA2[case], auto)


@pytest.mark.parametrize("case", list(GEMMA2))
def test_gemma2_logits_and_generation(tmp_path, case):
    check_logits_and_generation(gemma2(case), tmp_path, VOCAB, PAD, beam=case == "softcaps-window-4")


def test_gemma2_heads_and_round_trip(tmp_path):
    check_loss_and_base_model(gemma2(), tmp_path / "lm", VOCAB, PAD, "Gemma2Model")
    check_sequence_classification(gemma2(auto="AutoModelForSequenceClassification"), tmp_path / "cls", VOCAB, PAD)
    check_save_round_trip(gemma2("no-softcap-layer_types-mqa-odd-head_dim"), tmp_path / "rt", VOCAB, PAD)


def test_gemma2_partition_rules(tmp_path):
    overrides = dict(attention_bias=True, tie_word_embeddings=False)
    build("Gemma2Config", BASE, overrides).save_pretrained(tmp_path / "lm")
    build("Gemma2Config", BASE, overrides, "AutoModelForSequenceClassification").save_pretrained(tmp_path / "cls")
    fx = [fxformers.AutoModel.from_pretrained(tmp_path / "lm"), fxformers.AutoModelForCausalLM.from_pretrained(tmp_path / "lm"),
          fxformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "cls")]
    check_partition_rules(fx, VOCAB, PAD)
