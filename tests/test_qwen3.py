"""Qwen3 (dense) parity with PyTorch transformers: q/k norms, GQA, odd head_dim, sliding windows, tied/untied."""

import pytest

import fxformers
from decoder_family import (build, check_bfloat16, check_logits_and_generation, check_loss_and_base_model,
                            check_partition_rules, check_save_round_trip, check_sequence_classification,
                            rewrite_config)

VOCAB, PAD = 99, 0
BASE = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, head_dim=16, max_position_embeddings=64, bos_token_id=1, eos_token_id=2,
            pad_token_id=PAD, tie_word_embeddings=False)

CASES = {
    "gqa-untied": dict(),
    "mha-tied-bias-odd-head_dim": dict(num_key_value_heads=4, head_dim=6, tie_word_embeddings=True, attention_bias=True),
    "mqa-window-by-max_window_layers": dict(num_key_value_heads=1, use_sliding_window=True, sliding_window=4,
                                            max_window_layers=1),
    "window-by-layer_types-linear-rope": dict(use_sliding_window=True, sliding_window=3,
                                              layer_types=["sliding_attention", "full_attention"],
                                              rope_parameters=dict(rope_type="linear", rope_theta=1000.0, factor=2.0)),
}


def model(case="gqa-untied", auto="AutoModelForCausalLM"):
    return build("Qwen3Config", BASE, CASES[case], auto)


@pytest.mark.parametrize("case", list(CASES))
def test_logits_and_generation_match(tmp_path, case):
    check_logits_and_generation(model(case), tmp_path, VOCAB, PAD, sample=case == "gqa-untied")


def test_legacy_rope_spelling(tmp_path):
    """A Transformers 4 config (rope_theta + rope_scaling {"type": ...}) loads to the same model in both libraries."""
    tm = model("window-by-layer_types-linear-rope")
    tm.save_pretrained(tmp_path)

    def legacy(config):
        params = config.pop("rope_parameters")
        config["rope_theta"] = params.pop("rope_theta")
        config["rope_scaling"] = {"type": params["rope_type"], "factor": params["factor"]}

    rewrite_config(tmp_path, legacy)
    import transformers
    check_logits_and_generation(transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval(), tmp_path / "re",
                                VOCAB, PAD, greedy=False)
    assert fxformers.AutoConfig.from_pretrained(tmp_path).rope_scaling["factor"] == 2.0


def test_loss_and_base_model(tmp_path):
    check_loss_and_base_model(model(), tmp_path, VOCAB, PAD, "Qwen3Model")


def test_sequence_classification(tmp_path):
    check_sequence_classification(model("mqa-window-by-max_window_layers", "AutoModelForSequenceClassification"),
                                  tmp_path, VOCAB, PAD)


@pytest.mark.parametrize("case", ["gqa-untied", "mha-tied-bias-odd-head_dim"])
def test_save_round_trip(tmp_path, case):
    check_save_round_trip(model(case), tmp_path, VOCAB, PAD)


def test_bfloat16(tmp_path):
    check_bfloat16(model(), tmp_path, VOCAB, PAD, generate=False)


@pytest.mark.mesh
def test_partition_rules(tmp_path):
    overrides = dict(attention_bias=True)  # so the bias rule has something to match
    build("Qwen3Config", BASE, overrides).save_pretrained(tmp_path / "lm")
    build("Qwen3Config", BASE, overrides, "AutoModelForSequenceClassification").save_pretrained(tmp_path / "cls")
    fx = [fxformers.AutoModel.from_pretrained(tmp_path / "lm"), fxformers.AutoModelForCausalLM.from_pretrained(tmp_path / "lm"),
          fxformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "cls")]
    check_partition_rules(fx, VOCAB, PAD)
