"""Llama-family parity with PyTorch transformers: Llama 2/3/3.1/3.2 settings, Mistral, Qwen2, every format."""

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

import fxformers
from decoder_helpers import left_padded_batch, rel_err, save, torch_forward, torch_generate

VOCAB = 99
PAD = 0
BASE = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=64, bos_token_id=1, eos_token_id=2, pad_token_id=PAD)
LLAMA3 = dict(rope_type="llama3", rope_theta=500000.0, factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
              original_max_position_embeddings=16)

CASES = {
    "llama2-mha": ("LlamaConfig", dict(num_key_value_heads=4)),
    "gqa-untied": ("LlamaConfig", dict()),
    "tied-bias-head_dim": ("LlamaConfig", dict(tie_word_embeddings=True, attention_bias=True, mlp_bias=True, head_dim=16)),
    "llama3.1-rope": ("LlamaConfig", dict(rope_parameters=LLAMA3, rms_norm_eps=1e-5)),
    "llama3.2-tied": ("LlamaConfig", dict(rope_parameters=LLAMA3, tie_word_embeddings=True, num_key_value_heads=1)),
    "linear-rope": ("LlamaConfig", dict(rope_parameters=dict(rope_type="linear", rope_theta=10000.0, factor=2.0))),
    "dynamic-rope": ("LlamaConfig", dict(max_position_embeddings=8,
                                         rope_parameters=dict(rope_type="dynamic", rope_theta=10000.0, factor=2.0))),
    "gelu-act": ("LlamaConfig", dict(hidden_act="gelu_pytorch_tanh")),
    "mistral-window": ("MistralConfig", dict(sliding_window=4)),
    "qwen2": ("Qwen2Config", dict()),
    "qwen2-sliding": ("Qwen2Config", dict(use_sliding_window=True, sliding_window=4, max_window_layers=1)),
}


def torch_model(case: str, seed: int = 0):
    config_cls, overrides = CASES[case]
    config = getattr(transformers, config_cls)(**{**BASE, **overrides})
    torch.manual_seed(seed)
    return transformers.AutoModelForCausalLM.from_config(config).eval()


@pytest.mark.parametrize("case", list(CASES))
def test_logits_and_greedy_generation_match(tmp_path, case):
    tm = torch_model(case)
    tm.save_pretrained(tmp_path)
    fm = fxformers.AutoModelForCausalLM.from_pretrained(tmp_path)
    assert type(fm).__name__ == type(tm).__name__
    ids, mask = left_padded_batch(VOCAB, PAD)
    ref = torch_forward(tm, ids, mask).logits.numpy()
    assert rel_err(fm(ids, attention_mask=mask).logits, ref, mask == 1) <= 1e-5
    expected = torch_generate(tm, ids, mask, max_new_tokens=6, do_sample=False)
    np.testing.assert_array_equal(np.asarray(fm.generate(ids, attention_mask=mask, max_new_tokens=6)), expected)


@pytest.mark.parametrize("fmt", ["safetensors", "sharded", "bin"])
def test_every_checkpoint_format(tmp_path, fmt):
    tm = torch_model("gqa-untied")
    fm = fxformers.LlamaForCausalLM.from_pretrained(save(tm, tmp_path / fmt, fmt))
    ids, mask = left_padded_batch(VOCAB, PAD)
    assert rel_err(fm(ids, attention_mask=mask).logits, torch_forward(tm, ids, mask).logits.numpy(), mask == 1) <= 1e-5


def test_base_model_and_loss(tmp_path):
    tm = torch_model("gqa-untied")
    tm.save_pretrained(tmp_path)
    ids, mask = left_padded_batch(VOCAB, PAD)
    ids, mask = ids[:, ::-1].copy(), mask[:, ::-1].copy()
    labels = np.where(mask == 1, ids, -100)
    ref = torch_forward(tm, ids, mask, labels=torch.tensor(labels), output_hidden_states=True)
    out = fxformers.LlamaForCausalLM.from_pretrained(tmp_path)(ids, attention_mask=mask, labels=labels)
    assert abs(float(out.loss) - float(ref.loss)) <= 1e-5 * float(ref.loss)
    base = fxformers.AutoModel.from_pretrained(tmp_path)
    assert type(base).__name__ == "LlamaModel"
    hidden = base(ids, attention_mask=mask).last_hidden_state
    assert rel_err(hidden, ref.hidden_states[-1].numpy(), mask == 1) <= 1e-5


@pytest.mark.parametrize("case", ["gqa-untied", "llama3.2-tied", "qwen2"])
def test_save_pretrained_round_trip_loads_in_transformers(tmp_path, case):
    tm = torch_model(case)
    tm.save_pretrained(tmp_path / "torch")
    fm = fxformers.AutoModelForCausalLM.from_pretrained(tmp_path / "torch")
    fm.save_pretrained(tmp_path / "ours")
    back, info = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "ours", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    assert type(back) is type(tm)
    ids, mask = left_padded_batch(VOCAB, PAD)
    ref = torch_forward(tm, ids, mask).logits.numpy()
    assert rel_err(torch_forward(back.eval(), ids, mask).logits.numpy(), ref, mask == 1) <= 1e-6


def test_rope_scaling_legacy_spelling_matches_rope_parameters():
    """Transformers 4 configs carry rope_theta + rope_scaling {"type": ...}; both spellings give the same model."""
    from fxformers.ops.rotary import inverse_frequencies

    new = fxformers.LlamaConfig(**BASE, rope_parameters=LLAMA3)
    old = fxformers.LlamaConfig(**BASE, rope_theta=500000.0, rope_scaling={k if k != "rope_type" else "type": v
                                                                          for k, v in LLAMA3.items() if k != "rope_theta"})
    np.testing.assert_array_equal(inverse_frequencies(new, 8), inverse_frequencies(old, 8))
    with pytest.raises(NotImplementedError, match="rope_type"):
        fxformers.LlamaConfig(**BASE, rope_parameters=dict(rope_type="unknown-kind", rope_theta=1.0))
    with pytest.raises(ValueError, match="factor"):
        fxformers.LlamaConfig(**BASE, rope_parameters=dict(rope_type="linear", rope_theta=1.0))


def test_bfloat16_inference_keeps_float32_logits(tmp_path):
    tm = torch_model("gqa-untied")
    tm.save_pretrained(tmp_path)
    fm = fxformers.LlamaForCausalLM.from_pretrained(tmp_path, dtype=jnp.bfloat16)
    assert fm.params["model"]["embed_tokens"]["embedding"].dtype == jnp.bfloat16
    ids, mask = left_padded_batch(VOCAB, PAD)
    logits = fm(ids, attention_mask=mask).logits
    assert logits.dtype == jnp.float32
    assert rel_err(logits, torch_forward(tm, ids, mask).logits.numpy(), mask == 1) <= 5e-2
    out = fm.generate(ids, attention_mask=mask, max_new_tokens=4)
    assert out.shape == (3, 13) and out.dtype == jnp.int32


def test_a_model_made_from_scratch_saves_a_config_transformers_loads(tmp_path):
    from fxformers import LlamaConfig, LlamaForCausalLM

    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                                         intermediate_size=48))
    model.save_pretrained(tmp_path)  # rope_theta was never given: the default base must be written out
    theirs = transformers.LlamaForCausalLM.from_pretrained(tmp_path).eval()
    ids = np.arange(1, 9)[None]
    with torch.no_grad():
        want = theirs(torch.tensor(ids)).logits.numpy()
    np.testing.assert_allclose(np.asarray(model(input_ids=ids).logits), want, rtol=1e-5, atol=1e-5)
