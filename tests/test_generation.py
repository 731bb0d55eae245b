"""generate() against transformers.generate: token-for-token parity on left-padded batches, sampling statistics,
compilation caching, GenerationConfig, errors, and the pure filters."""

import json

import jax
import numpy as np
import pytest
import torch
import transformers

import fxformers
from decoder_helpers import left_padded_batch, torch_generate
from fxformers.generation import GenerationConfig, top_k_top_p_filtering
from fxformers.generation import utils as gen_utils

VOCAB = 24  # small, so EOS (id 3) comes up often and early stopping paths run
PAD, EOS = 0, 3


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gpt2-gen")
    config = transformers.GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=64,
                                     bos_token_id=1, eos_token_id=EOS, pad_token_id=PAD)
    torch.manual_seed(0)
    tm = transformers.GPT2LMHeadModel(config).eval()
    with torch.no_grad():  # sharpen the distribution so that greedy/beam choices are not near-ties
        tm.transformer.wte.weight.mul_(8.0)
    tm.save_pretrained(folder)
    return tm, fxformers.AutoModelForCausalLM.from_pretrained(folder), folder


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    folder = tmp_path_factory.mktemp("llama-gen")
    config = transformers.LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, bos_token_id=1,
                                      eos_token_id=EOS, pad_token_id=PAD)
    torch.manual_seed(1)
    tm = transformers.LlamaForCausalLM(config).eval()
    with torch.no_grad():
        tm.model.embed_tokens.weight.mul_(30.0)
    tm.save_pretrained(folder)
    return tm, fxformers.AutoModelForCausalLM.from_pretrained(folder)


BATCH = dict(vocab=VOCAB, pad=PAD, low=4, shape=(3, 7), pads=(0, 3, 1))

PARITY = {
    "greedy": dict(),
    "greedy-max_length": dict(max_length=15, max_new_tokens=None),
    "beam": dict(num_beams=3),
    "beam-return-2": dict(num_beams=3, num_return_sequences=2),
    "beam-early-true": dict(num_beams=4, early_stopping=True, length_penalty=0.5),
    "beam-never": dict(num_beams=2, early_stopping="never", length_penalty=2.0),
    "min_new_tokens": dict(min_new_tokens=8),
    "min_length": dict(min_length=14),
    "repetition_penalty": dict(repetition_penalty=1.8),
    "no_repeat_ngram": dict(no_repeat_ngram_size=2),
    "beam-no_repeat": dict(num_beams=3, no_repeat_ngram_size=3, repetition_penalty=1.3),
    "bad_words": dict(bad_words_ids=[[5], [6, 7], [EOS]]),
    "suppress-forced-eos": dict(suppress_tokens=[4, 8], forced_eos_token_id=EOS),
    "several-eos": dict(eos_token_id=[EOS, 9, 10]),
}


@pytest.mark.parametrize("case", list(PARITY))
def test_gpt2_generate_matches_transformers(gpt2, case):
    tm, fm, _ = gpt2
    ids, mask = left_padded_batch(seed=1, **BATCH)
    kwargs = {"max_new_tokens": 10, **PARITY[case]}
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    expected = torch_generate(tm, ids, mask, do_sample=False, **kwargs)
    ours = np.asarray(fm.generate(ids, attention_mask=mask, **kwargs))
    assert ours.shape == expected.shape
    np.testing.assert_array_equal(ours, expected)


@pytest.mark.parametrize("case", ["greedy", "beam-return-2", "min_new_tokens", "repetition_penalty", "no_repeat_ngram"])
def test_llama_generate_matches_transformers(llama, case):
    tm, fm = llama
    ids, mask = left_padded_batch(seed=2, **BATCH)
    kwargs = {"max_new_tokens": 9, **PARITY[case]}
    expected = torch_generate(tm, ids, mask, do_sample=False, **kwargs)
    np.testing.assert_array_equal(np.asarray(fm.generate(ids, attention_mask=mask, **kwargs)), expected)


def test_default_length_and_inferred_attention_mask(gpt2):
    """No max_length/max_new_tokens: 20 new tokens (Transformers 5); no mask: inferred from pad_token_id."""
    tm, fm, _ = gpt2
    ids, _ = left_padded_batch(seed=3, **BATCH)
    with torch.no_grad():
        expected = tm.generate(torch.tensor(ids), do_sample=False).numpy()
    np.testing.assert_array_equal(np.asarray(fm.generate(ids)), expected)


def test_top_k_1_sampling_equals_greedy(gpt2):
    _, fm, _ = gpt2
    ids, mask = left_padded_batch(seed=4, **BATCH)
    greedy = fm.generate(ids, attention_mask=mask, max_new_tokens=8)
    sampled = fm.generate(ids, attention_mask=mask, max_new_tokens=8, do_sample=True, top_k=1, temperature=0.7,
                          prng_key=jax.random.PRNGKey(123))
    np.testing.assert_array_equal(np.asarray(sampled), np.asarray(greedy))


def test_sampling_is_deterministic_per_key(gpt2):
    _, fm, _ = gpt2
    ids, mask = left_padded_batch(seed=5, **BATCH)
    run = lambda seed: np.asarray(fm.generate(ids, attention_mask=mask, max_new_tokens=8, do_sample=True, top_k=0,
                                              prng_key=jax.random.PRNGKey(seed)))
    a, b, c = run(0), run(0), run(1)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def first_token_probs(fm, prompt, temperature=1.0):
    logits = np.asarray(fm(prompt).logits[0, -1], np.float64) / temperature
    p = np.exp(logits - logits.max())
    return p / p.sum()


def test_sampled_frequencies_match_top_k_distribution(gpt2):
    """4000 samples of the first token with top_k=5: every sample is in the top 5 and the frequencies match the
    renormalised top-5 probabilities (total variation < 0.05, about 6 standard deviations; the key is fixed)."""
    _, fm, _ = gpt2
    prompt = np.array([[4, 9, 12, 5]])
    n = 4000
    out = np.asarray(fm.generate(prompt, max_new_tokens=1, do_sample=True, top_k=5, temperature=1.5,
                                 num_return_sequences=n, prng_key=jax.random.PRNGKey(7)))
    assert out.shape == (n, 5)
    tokens = out[:, -1]
    probs = first_token_probs(fm, prompt, temperature=1.5)
    top5 = np.argsort(-probs)[:5]
    assert set(tokens) <= set(top5)
    expected = np.zeros(VOCAB)
    expected[top5] = probs[top5] / probs[top5].sum()
    freq = np.bincount(tokens, minlength=VOCAB) / n
    assert 0.5 * np.abs(freq - expected).sum() < 0.05, (freq, expected)


@pytest.mark.parametrize("top_p", [0.5, 0.8])
def test_top_p_samples_stay_in_the_nucleus(gpt2, top_p):
    _, fm, _ = gpt2
    prompt = np.array([[7, 4, 11]])
    out = np.asarray(fm.generate(prompt, max_new_tokens=1, do_sample=True, top_k=0, top_p=top_p,
                                 num_return_sequences=500, prng_key=jax.random.PRNGKey(3)))
    probs = first_token_probs(fm, prompt)
    order = np.argsort(-probs)
    cumulative = np.cumsum(probs[order])
    nucleus = set(order[: int(np.searchsorted(cumulative, top_p)) + 1])
    assert set(out[:, -1]) <= nucleus
    assert len(set(out[:, -1])) >= 1


def test_same_shapes_do_not_recompile_and_prompt_lengths_are_bucketed(gpt2):
    _, fm, _ = gpt2
    ids, mask = left_padded_batch(seed=6, **BATCH)
    fm.generate(ids, attention_mask=mask, max_new_tokens=5, repetition_penalty=1.1)
    before = gen_utils.TRACE_COUNT
    fm.generate(ids, attention_mask=mask, max_new_tokens=5, repetition_penalty=1.1)
    other = np.array([[5, 6, 7, 8, 9], [4, 4, 4, 4, 4], [9, 8, 7, 6, 5]])  # another length, same bucket
    fm.generate(other, max_new_tokens=5, repetition_penalty=1.1)
    fm.generate(other[:, :3], max_new_tokens=3, repetition_penalty=1.1)  # fewer new tokens, same bucket
    assert gen_utils.TRACE_COUNT == before
    again = fxformers.AutoModelForCausalLM.from_pretrained(gpt2[2])  # another instance of the same model shares it
    again.generate(ids, attention_mask=mask, max_new_tokens=5, repetition_penalty=1.1)
    assert gen_utils.TRACE_COUNT == before
    fm.generate(np.ones((3, 30), np.int32) * 5, max_new_tokens=5, repetition_penalty=1.1)  # a new bucket compiles
    assert gen_utils.TRACE_COUNT == before + 1


def test_generation_config_files_and_overrides(gpt2, tmp_path):
    tm, fm, folder = gpt2
    transformers.GenerationConfig(max_new_tokens=4, num_beams=2, eos_token_id=EOS, pad_token_id=PAD).save_pretrained(tmp_path)
    tm.config.save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes())
    model = fxformers.AutoModelForCausalLM.from_pretrained(tmp_path)
    assert model.generation_config.num_beams == 2 and model.generation_config.max_new_tokens == 4
    ids, mask = left_padded_batch(seed=7, **BATCH)
    expected = torch_generate(tm, ids, mask, max_new_tokens=4, num_beams=2)
    np.testing.assert_array_equal(np.asarray(model.generate(ids, attention_mask=mask)), expected)
    override = np.asarray(model.generate(ids, attention_mask=mask, num_beams=1, max_new_tokens=6))
    np.testing.assert_array_equal(override, torch_generate(tm, ids, mask, max_new_tokens=6, do_sample=False))
    # save_pretrained writes generation_config.json that transformers reads back
    model.save_pretrained(tmp_path / "saved")
    back = transformers.GenerationConfig.from_pretrained(tmp_path / "saved")
    assert back.num_beams == 2 and back.max_new_tokens == 4
    ours = GenerationConfig.from_pretrained(tmp_path / "saved")
    assert ours == model.generation_config
    assert json.loads((tmp_path / "saved" / "generation_config.json").read_text())["num_beams"] == 2
    # from_model_config picks up the special tokens
    from_model = GenerationConfig.from_model_config(fm.config)
    assert (from_model.eos_token_id, from_model.pad_token_id, from_model.bos_token_id) == (EOS, PAD, 1)


def test_clear_errors(gpt2):
    _, fm, _ = gpt2
    ids = np.array([[5, 6, 7]])
    with pytest.raises(ValueError, match="num_return_sequences"):
        fm.generate(ids, num_beams=2, num_return_sequences=3)
    with pytest.raises(ValueError, match="Greedy"):
        fm.generate(ids, num_return_sequences=2)
    with pytest.raises(TypeError, match="not generation settings"):
        fm.generate(ids, max_new_tokenz=3)
    with pytest.raises(ValueError, match="nothing is left to generate"):
        fm.generate(ids, max_length=3)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        fm.generate(np.full((1, 60), 5), max_new_tokens=10)
    with pytest.raises(ValueError, match="temperature"):
        fm.generate(ids, do_sample=True, temperature=0.0)
    with pytest.raises(NotImplementedError, match="diversity_penalty"):  # typical_p is supported now
        fm.generate(ids, num_beams=2, diversity_penalty=0.5)
    with pytest.raises(ValueError, match="outside"):
        fm.generate(np.array([[5, VOCAB]]))
    with pytest.raises(ValueError, match="no rows"):
        fm.generate(np.zeros((0, 3), np.int64))


@pytest.mark.parametrize("top_k,top_p,keep", [(0, 0.7, 1), (5, 1.0, 1), (4, 0.6, 2), (0, 0.05, 3)])
def test_top_k_top_p_filtering_matches_transformers_warpers(top_k, top_p, keep):
    from transformers.generation.logits_process import TopKLogitsWarper, TopPLogitsWarper

    logits = np.random.RandomState(0).randn(4, 50).astype(np.float32) * 3
    expected = torch.tensor(logits)
    if top_k:
        expected = TopKLogitsWarper(top_k, min_tokens_to_keep=keep)(None, expected)
    if top_p < 1.0:
        expected = TopPLogitsWarper(top_p, min_tokens_to_keep=keep)(None, expected)
    ours = np.asarray(top_k_top_p_filtering(logits, top_k=top_k, top_p=top_p, min_tokens_to_keep=keep))
    np.testing.assert_array_equal(np.isneginf(ours), np.isneginf(expected.numpy()))
    np.testing.assert_allclose(np.where(np.isneginf(ours), 0, ours), np.where(np.isneginf(ours), 0, expected.numpy()))


def test_beam_sampling_is_deterministic_per_key(gpt2):
    """do_sample with num_beams (Transformers' beam sampling; draws differ from PyTorch's, so shape and keys only)."""
    _, fm, _ = gpt2
    ids, mask = left_padded_batch(seed=8, **BATCH)
    run = lambda seed: np.asarray(fm.generate(ids, attention_mask=mask, max_new_tokens=6, do_sample=True, num_beams=2,
                                              num_return_sequences=2, prng_key=jax.random.PRNGKey(seed)))
    a, b = run(0), run(0)
    assert a.shape[0] == 6 and 7 < a.shape[1] <= 13
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a[::2, :7], ids)  # each input's prompt heads its returned sequences
