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
    check_logits_and_generation(gemma(case), tmp_path, VOCAB, PAD)


def test_gemma_legacy_gelu_and_rope_spelling(tmp_path):
    """Released Gemma configs say hidden_act "gelu" (meaning tanh) and use rope_theta: both libraries agree."""
    gemma("mha-untied-bias-odd-head_dim").save_pretrained(tmp_path)

    def legacy(config):
        config["rope_theta"] = config.pop("rope_parameters")["rope_theta"]
        config["hidden_act"] = "gelu"

    rewrite_config(tmp_path, legacy)
    tm = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    check_logits_and_generation(tm, tmp_path / "re", VOCAB, PAD, greedy=False)


def test_gemma_heads_and_round_trip(tmp_path):
    check_loss_and_base_model(gemma(), tmp_path / "lm", VOCAB, PAD, "GemmaModel")
    check_sequence_classification(gemma(auto="AutoModelForSequenceClassification"), tmp_path / "cls", VOCAB, PAD)
    check_save_round_trip(gemma("mha-untied-bias-odd-head_dim"), tmp_path / "rt", VOCAB, PAD)


def test_gemma_bfloat16(tmp_path):
    check_bfloat16(gemma(), tmp_path, VOCAB, PAD, generate=False)


@pytest.mark.mesh
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
    check_logits_and_generation(gemma2(case), tmp_path, VOCAB, PAD)


def test_gemma2_heads_and_round_trip(tmp_path):
    check_loss_and_base_model(gemma2(), tmp_path / "lm", VOCAB, PAD, "Gemma2Model")
    check_sequence_classification(gemma2(auto="AutoModelForSequenceClassification"), tmp_path / "cls", VOCAB, PAD)
    check_save_round_trip(gemma2("no-softcap-layer_types-mqa-odd-head_dim"), tmp_path / "rt", VOCAB, PAD)


@pytest.mark.mesh
def test_gemma2_partition_rules(tmp_path):
    overrides = dict(attention_bias=True, tie_word_embeddings=False)
    build("Gemma2Config", BASE, overrides).save_pretrained(tmp_path / "lm")
    build("Gemma2Config", BASE, overrides, "AutoModelForSequenceClassification").save_pretrained(tmp_path / "cls")
    fx = [fxformers.AutoModel.from_pretrained(tmp_path / "lm"), fxformers.AutoModelForCausalLM.from_pretrained(tmp_path / "lm"),
          fxformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "cls")]
    check_partition_rules(fx, VOCAB, PAD)


# -- Gemma 3 (text) ----------------------------------------------------------------------------------------------------
GEMMA3 = {
    "rope_parameters-window-4-final-softcap": dict(
        sliding_window=4, sliding_window_pattern=2, final_logit_softcapping=2.0, attn_logit_softcapping=1.0,
        query_pre_attn_scalar=20,
        rope_parameters={"sliding_attention": dict(rope_type="default", rope_theta=100.0),
                         "full_attention": dict(rope_type="linear", rope_theta=5000.0, factor=2.0)}),
    "layer_types-mqa-odd-head_dim-untied": dict(num_key_value_heads=1, head_dim=6, tie_word_embeddings=False,
                                                sliding_window=3, layer_types=["full_attention", "sliding_attention"]),
}


def gemma3(case="rope_parameters-window-4-final-softcap", auto="AutoModelForCausalLM"):
    return build("Gemma3TextConfig", BASE, GEMMA3[case], auto)


@pytest.mark.parametrize("case", list(GEMMA3))
def test_gemma3_logits_and_generation(tmp_path, case):
    check_logits_and_generation(gemma3(case), tmp_path, VOCAB, PAD, beam=case.startswith("rope_parameters"),
                                sample=case.startswith("rope_parameters"))


def test_gemma3_legacy_rope_spelling(tmp_path):
    """Hub configs (Transformers 4) spell the two rope bases rope_theta / rope_local_base_freq plus rope_scaling."""
    gemma3().save_pretrained(tmp_path)

    def legacy(config):
        params = config.pop("rope_parameters")
        config["rope_theta"] = params["full_attention"].pop("rope_theta")
        config["rope_local_base_freq"] = params["sliding_attention"]["rope_theta"]
        config["rope_scaling"] = params["full_attention"]
        del config["layer_types"]  # from sliding_window_pattern instead

    rewrite_config(tmp_path, legacy)
    tm = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert tm.config.rope_parameters["sliding_attention"]["rope_theta"] == 100.0
    check_logits_and_generation(tm, tmp_path / "re", VOCAB, PAD, greedy=False)
    ours = fxformers.AutoConfig.from_pretrained(tmp_path).layer_type_rope_parameters()
    assert ours["full_attention"]["factor"] == 2.0 and ours["sliding_attention"]["rope_theta"] == 100.0


def test_gemma3_heads_and_round_trip(tmp_path):
    check_loss_and_base_model(gemma3(), tmp_path / "lm", VOCAB, PAD, "Gemma3TextModel")
    check_sequence_classification(gemma3(auto="AutoModelForSequenceClassification"), tmp_path / "cls", VOCAB, PAD)
    check_save_round_trip(gemma3("layer_types-mqa-odd-head_dim-untied"), tmp_path / "rt", VOCAB, PAD)


def test_gemma3_bfloat16(tmp_path):
    check_bfloat16(gemma3(), tmp_path, VOCAB, PAD)


@pytest.mark.mesh
def test_gemma3_partition_rules(tmp_path):
    overrides = dict(attention_bias=True, tie_word_embeddings=False)
    build("Gemma3TextConfig", BASE, overrides).save_pretrained(tmp_path / "lm")
    build("Gemma3TextConfig", BASE, overrides, "AutoModelForSequenceClassification").save_pretrained(tmp_path / "cls")
    fx = [fxformers.AutoModel.from_pretrained(tmp_path / "lm"), fxformers.AutoModelForCausalLM.from_pretrained(tmp_path / "lm"),
          fxformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "cls")]
    check_partition_rules(fx, VOCAB, PAD)


def test_gemma3_bidirectional_encoder(tmp_path):
    """EmbeddingGemma-style: use_bidirectional_attention, a centred sliding window shorter than the input."""
    import numpy as np

    from decoder_helpers import left_padded_batch, rel_err, torch_forward

    tm = build("Gemma3TextConfig", BASE, dict(use_bidirectional_attention=True, sliding_window=4,
                                              sliding_window_pattern=2), "AutoModel")
    tm.save_pretrained(tmp_path)
    fm = fxformers.AutoModel.from_pretrained(tmp_path)
    assert type(fm).__name__ == "Gemma3TextModel"
    ids, mask = left_padded_batch(VOCAB, PAD)
    ref = torch_forward(tm, ids, mask).last_hidden_state.numpy()
    assert rel_err(fm(ids, attention_mask=mask).last_hidden_state, ref, mask == 1) <= 1e-5
    causal = fxformers.AutoModel.from_pretrained(tmp_path, use_bidirectional_attention=False)
    assert not np.allclose(causal(ids, attention_mask=mask).last_hidden_state, ref, atol=1e-3)


def test_gemma3_config_from_scratch_saves_both_rope_bases(tmp_path):
    fxformers.Gemma3TextConfig(**BASE).save_pretrained(tmp_path)
    theirs = transformers.AutoConfig.from_pretrained(tmp_path).rope_parameters
    assert theirs["full_attention"]["rope_theta"] == 1e6 and theirs["sliding_attention"]["rope_theta"] == 1e4
    assert fxformers.AutoConfig.from_pretrained(tmp_path).layer_type_rope_parameters() == theirs


def test_unsupported_gemma_settings_fail_clearly():
    with pytest.raises(NotImplementedError, match="use_bidirectional_attention"):
        fxformers.Gemma2Config(**BASE, use_bidirectional_attention=True)
    with pytest.raises(ValueError, match="layer_types"):
        fxformers.Gemma2Config(**BASE, layer_types=["full_attention"])
    with pytest.raises(ValueError, match="keyed by layer type"):
        fxformers.Gemma3TextConfig(**BASE, rope_parameters=dict(rope_type="default", rope_theta=1.0))


CHAT_TEMPLATE = ("{{ bos_token }}{% for m in messages %}<start_of_turn>{{ m['role'] }}\n{{ m['content'] }}<end_of_turn>\n"
                 "{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}")


def test_gemma3_chat_template_and_text_generation_pipeline(tmp_path):
    """The chat template comes from the checkpoint's tokenizer config; the pipeline's text equals Transformers'."""
    import json

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]
    tk = Tokenizer(models.BPE(unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    text = ["the cat sat on the mat", "hello there, how are you today", "a small model talks to a user"] * 3
    tk.train_from_iterator(text, trainers.BpeTrainer(vocab_size=300, special_tokens=specials,
                                                     initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    overrides = dict(vocab_size=tk.get_vocab_size(), pad_token_id=0, eos_token_id=1, bos_token_id=2)
    build("Gemma3TextConfig", BASE, {**GEMMA3["rope_parameters-window-4-final-softcap"], **overrides}).save_pretrained(tmp_path)
    tk.save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(dict(
        tokenizer_class="PreTrainedTokenizerFast", bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
        unk_token="<unk>", chat_template=CHAT_TEMPLATE, model_max_length=64)))

    chat = [{"role": "user", "content": "hello there, how are you"}]
    hf_tok = transformers.AutoTokenizer.from_pretrained(tmp_path)
    prompt = hf_tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    fx_tok = fxformers.AutoTokenizer.from_pretrained(tmp_path)
    assert fx_tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True) == prompt
    ids = fx_tok.apply_chat_template(chat, add_generation_prompt=True)["input_ids"]
    assert list(ids) == list(hf_tok.apply_chat_template(chat, add_generation_prompt=True)["input_ids"])
    kwargs = dict(do_sample=False, max_new_tokens=6)
    ours = fxformers.pipeline("text-generation", model=str(tmp_path))([prompt, "the cat sat"], **kwargs)
    theirs = transformers.pipeline("text-generation", model=str(tmp_path))([prompt, "the cat sat"], **kwargs)
    assert ours == theirs
