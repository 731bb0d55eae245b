"""generate() options research scripts use: typical_p, epsilon_cutoff, eta_cutoff (filters equal to Transformers'
warpers) and sequence_bias (greedy generation token-exact against transformers.generate)."""

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from transformers.generation import logits_process as T

import fxformers
from fxformers.generation import processors as P


def random_scores(seed=0, rows=4, vocab=50):
    scores = np.random.RandomState(seed).randn(rows, vocab).astype(np.float32) * 3
    scores[0, :5] = -np.inf  # already filtered tokens
    return scores


@pytest.mark.parametrize("ours, theirs, value, keep", [
    (P.typical_filter, T.TypicalLogitsWarper, 0.9, 1), (P.typical_filter, T.TypicalLogitsWarper, 0.3, 3),
    (P.epsilon_filter, T.EpsilonLogitsWarper, 0.02, 1), (P.epsilon_filter, T.EpsilonLogitsWarper, 0.2, 3),
    (P.eta_filter, T.EtaLogitsWarper, 0.05, 1), (P.eta_filter, T.EtaLogitsWarper, 0.3, 2),
])
def test_warpers_equal_transformers(ours, theirs, value, keep):
    scores = random_scores()
    expected = theirs(value, min_tokens_to_keep=keep)(None, torch.tensor(scores)).numpy()
    got = np.asarray(ours(jnp.asarray(scores), value, min_tokens_to_keep=keep))
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(expected))
    np.testing.assert_array_equal(got[~np.isneginf(got)], expected[~np.isneginf(expected)])


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gpt2-extras")
    torch.manual_seed(0)
    transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=60, n_embd=16, n_layer=1, n_head=2,
                                                         n_positions=32, eos_token_id=59, bos_token_id=59)).save_pretrained(folder)
    return folder


def test_sequence_bias_greedy_is_token_exact(gpt2_dir):
    model = fxformers.AutoModelForCausalLM.from_pretrained(gpt2_dir)
    ref = transformers.AutoModelForCausalLM.from_pretrained(gpt2_dir).eval()
    prompt = np.array([[3, 4, 5, 6]])
    plain = np.asarray(model.generate(prompt, max_new_tokens=8, pad_token_id=0))
    # ban what greedy picked first, boost a two-token continuation after the prompt's end
    bias = {(int(plain[0, 4]),): -100.0, (6, 11): 5.0, (11, 12): 3.0}
    with torch.no_grad():
        expected = ref.generate(torch.tensor(prompt), max_new_tokens=8, do_sample=False, pad_token_id=0,
                                sequence_bias=bias).numpy()
    got = np.asarray(model.generate(prompt, max_new_tokens=8, pad_token_id=0, sequence_bias=bias))
    np.testing.assert_array_equal(got, expected)
    assert not np.array_equal(got, plain)
    listed = [[list(k), v] for k, v in bias.items()]  # Transformers' list spelling
    np.testing.assert_array_equal(model.generate(prompt, max_new_tokens=8, pad_token_id=0, sequence_bias=listed), got)


def test_sampling_with_the_new_warpers_runs_and_validates(gpt2_dir):
    model = fxformers.AutoModelForCausalLM.from_pretrained(gpt2_dir)
    prompt = np.array([[3, 4, 5, 6]])
    out = model.generate(prompt, do_sample=True, max_new_tokens=4, typical_p=0.5, epsilon_cutoff=0.01,
                         eta_cutoff=0.01, pad_token_id=0)
    assert out.shape == (1, 8)
    with pytest.raises(ValueError, match="typical_p"):
        model.generate(prompt, do_sample=True, max_new_tokens=2, typical_p=1.5)


def test_return_dict_in_generate_scores_and_transition_scores(gpt2_dir):
    model = fxformers.AutoModelForCausalLM.from_pretrained(gpt2_dir)
    ref = transformers.AutoModelForCausalLM.from_pretrained(gpt2_dir).eval()
    prompt = np.array([[3, 4, 5, 6], [0, 0, 7, 8]])
    mask = (prompt != 0).astype(np.int64)
    mask[0, :] = 1
    kw = dict(max_new_tokens=6, pad_token_id=0, return_dict_in_generate=True, output_scores=True,
              output_logits=True, repetition_penalty=1.3)
    out = model.generate(prompt, attention_mask=mask, **kw)
    with torch.no_grad():
        expected = ref.generate(torch.tensor(prompt), attention_mask=torch.tensor(mask), do_sample=False, **kw)
    np.testing.assert_array_equal(out.sequences, expected.sequences.numpy())
    assert type(out).__name__ == "GenerateDecoderOnlyOutput" and len(out.scores) == len(expected.scores)
    for ours, theirs in zip(out.scores + out.logits, expected.scores + expected.logits):
        np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-5, atol=1e-5)
    for normalize in (False, True):
        np.testing.assert_allclose(
            model.compute_transition_scores(out.sequences, out.scores, normalize_logits=normalize),
            ref.compute_transition_scores(expected.sequences, expected.scores, normalize_logits=normalize).numpy(),
            rtol=1e-5, atol=1e-5)
    with pytest.raises(NotImplementedError, match="beam"):
        model.generate(prompt, attention_mask=mask, num_beams=2, **kw)
