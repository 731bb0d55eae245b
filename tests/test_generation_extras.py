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


@pytest.mark.parametrize("early_stopping", [False, True])
def test_beam_search_scores_and_beam_indices_equal_transformers(gpt2_dir, early_stopping):
    model = fxformers.AutoModelForCausalLM.from_pretrained(gpt2_dir)
    ref = transformers.AutoModelForCausalLM.from_pretrained(gpt2_dir).eval()
    prompt = np.array([[3, 4, 5, 6], [0, 0, 7, 8]])
    mask = (prompt != 0).astype(np.int64)
    mask[0, :] = 1
    plain = np.asarray(model.generate(prompt, attention_mask=mask, max_new_tokens=7, pad_token_id=0, num_beams=3))
    # an EOS the beams actually meet, so hypotheses finish at different steps and beam_indices hold -1
    kw = dict(max_new_tokens=7, pad_token_id=0, num_beams=3, num_return_sequences=2, eos_token_id=int(plain[0, 6]),
              length_penalty=0.7, early_stopping=early_stopping, repetition_penalty=1.2,
              return_dict_in_generate=True, output_scores=True, output_logits=True)
    out = model.generate(prompt, attention_mask=mask, **kw)
    with torch.no_grad():
        expected = ref.generate(torch.tensor(prompt), attention_mask=torch.tensor(mask), do_sample=False, **kw)
    assert type(out).__name__ == type(expected).__name__ == "GenerateBeamDecoderOnlyOutput"
    np.testing.assert_array_equal(out.sequences, expected.sequences.numpy())
    np.testing.assert_array_equal(out.beam_indices, expected.beam_indices.numpy())
    assert (np.asarray(out.beam_indices) == -1).any()
    np.testing.assert_allclose(out.sequences_scores, expected.sequences_scores.numpy(), rtol=1e-5, atol=1e-5)
    assert len(out.scores) == len(expected.scores) == len(out.logits)
    for ours, theirs in zip(out.scores + out.logits, expected.scores + expected.logits):
        np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(
        model.compute_transition_scores(out.sequences, out.scores, out.beam_indices),
        ref.compute_transition_scores(expected.sequences, expected.scores, expected.beam_indices).numpy(),
        rtol=1e-5, atol=1e-4)
    # without output_scores: beam_indices still come back, sequences_scores do not (as in Transformers)
    bare = model.generate(prompt, attention_mask=mask, **{**kw, "output_scores": False, "output_logits": False})
    assert bare.sequences_scores is None and bare.scores is None
    np.testing.assert_array_equal(bare.beam_indices, expected.beam_indices.numpy())


TRAIN = ["the cat sat on the mat while the dog barked at the mailman",
         "tokenizers split text into tokens and map the tokens to ids",
         "hello world, once upon a time there was a small model"] * 3


@pytest.fixture(scope="module", params=["byte_level", "metaspace"])
def gpt2_with_tokenizer(tmp_path_factory, request):
    """A tokenizer trained here (byte-level BPE: matched as bytes; Unigram with Metaspace "▁": matched as text) and
    a random GPT-2 over its vocabulary (sharp logits, varied text)."""
    import json
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    folder = tmp_path_factory.mktemp("gpt2-stop-strings")
    if request.param == "byte_level":
        tk = Tokenizer(models.BPE())
        tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tk.decoder = decoders.ByteLevel()
        tk.train_from_iterator(TRAIN, trainers.BpeTrainer(
            vocab_size=300, min_frequency=1, special_tokens=["<|endoftext|>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    else:
        tk = Tokenizer(models.Unigram())
        tk.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
        tk.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
        tk.train_from_iterator(TRAIN + ["abcdef ghijklmnopqrstuvwxyz"], trainers.UnigramTrainer(vocab_size=120, special_tokens=["<|endoftext|>"],
                                                              unk_token="<|endoftext|>"))
    tk.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps(dict(
        tokenizer_class="PreTrainedTokenizerFast", bos_token="<|endoftext|>", eos_token="<|endoftext|>",
        unk_token="<|endoftext|>")))
    torch.manual_seed(3)
    transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=tk.get_vocab_size(), n_embd=16, n_layer=1, n_head=2, n_positions=64, bos_token_id=0,
        eos_token_id=0, initializer_range=0.5)).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("num_beams", [1, 2])
def test_stop_strings_equal_transformers(gpt2_with_tokenizer, num_beams):
    folder = gpt2_with_tokenizer
    model = fxformers.AutoModelForCausalLM.from_pretrained(folder)
    tokenizer = fxformers.AutoTokenizer.from_pretrained(folder)
    ref = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
    ref_tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    prompts = np.array([ref_tokenizer("the cat sat")["input_ids"][-3:], ref_tokenizer("hello world")["input_ids"][-3:]])
    # a random model over a byte-level vocabulary writes mostly stray bytes: keep it to letters and spaces
    readable = lambda i: all(c.isascii() and (c.isalpha() or c == " ") for c in ref_tokenizer.decode([i]))
    suppress = [i for i in range(len(ref_tokenizer)) if not readable(i)]
    kw = dict(max_new_tokens=14, pad_token_id=0, num_beams=num_beams, suppress_tokens=suppress)
    free = np.asarray(model.generate(prompts, **kw))
    # stop strings cut out of row 0's continuation: one straddling a token boundary, one inside a later token
    text = ref_tokenizer.decode(free[0, 3:])
    pieces = [ref_tokenizer.decode(t) for t in free[0, 3:]]
    boundary = len(pieces[0]) + len(pieces[1]) + len(pieces[2])
    stop = [text[boundary - 1 : boundary + 1], text[len(text) - 5 : len(text) - 3]]
    assert all(stop), (text, pieces)
    with torch.no_grad():
        expected = ref.generate(torch.tensor(prompts), do_sample=False, stop_strings=stop, tokenizer=ref_tokenizer,
                                **kw).numpy()
    got = np.asarray(model.generate(prompts, stop_strings=stop, tokenizer=tokenizer, **kw))
    np.testing.assert_array_equal(got, expected)
    assert got.shape != free.shape or (got != free).any()  # the strings changed the outcome
    if num_beams == 1:
        assert got[0, -1] == 0  # row 0 stopped: pads after it
    with pytest.raises(ValueError, match="tokenizer"):
        model.generate(prompts, stop_strings=stop, **kw)


def test_group_beam_search_neutral_values_run_and_real_groups_raise(gpt2_dir):
    """Legacy configs carry num_beam_groups=1, diversity_penalty=0.0 (plain beam search); real groups are rejected."""
    model = fxformers.AutoModelForCausalLM.from_pretrained(gpt2_dir)
    prompt = np.array([[3, 4, 5, 6]])
    kw = dict(max_new_tokens=3, num_beams=2, pad_token_id=0)
    np.testing.assert_array_equal(model.generate(prompt, num_beam_groups=1, diversity_penalty=0.0, **kw),
                                  model.generate(prompt, **kw))
    with pytest.raises(NotImplementedError, match="group beam search"):
        model.generate(prompt, num_beam_groups=2, diversity_penalty=0.5, **kw)


def test_encoder_decoder_beam_scores_equal_transformers(tmp_path_factory):
    """BART (forced BOS/EOS processors, decoder start column): GenerateBeamEncoderDecoderOutput field for field."""
    folder = tmp_path_factory.mktemp("bart-beam-scores")
    torch.manual_seed(2)
    ref = transformers.BartForConditionalGeneration(transformers.BartConfig(
        vocab_size=70, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=32)).eval()
    with torch.no_grad():
        ref.model.shared.weight.mul_(8.0)  # varied continuations
    ref.save_pretrained(folder)
    model = fxformers.AutoModelForSeq2SeqLM.from_pretrained(folder)
    ids = np.array([[0, 5, 9, 13, 2], [0, 7, 2, 1, 1]])
    mask = (ids != 1).astype(np.int64)
    kw = dict(max_new_tokens=6, num_beams=3, num_return_sequences=2, return_dict_in_generate=True,
              output_scores=True, output_logits=True)
    out = model.generate(ids, attention_mask=mask, **kw)
    with torch.no_grad():
        expected = ref.generate(torch.tensor(ids), attention_mask=torch.tensor(mask), do_sample=False, **kw)
    assert type(out).__name__ == type(expected).__name__ == "GenerateBeamEncoderDecoderOutput"
    np.testing.assert_array_equal(out.sequences, expected.sequences.numpy())
    np.testing.assert_array_equal(out.beam_indices, expected.beam_indices.numpy())
    np.testing.assert_allclose(out.sequences_scores, expected.sequences_scores.numpy(), rtol=1e-5, atol=1e-5)
    assert len(out.scores) == len(expected.scores)
    for ours, theirs in zip(out.scores + out.logits, expected.scores + expected.logits):
        np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(
        model.compute_transition_scores(out.sequences, out.scores, out.beam_indices, normalize_logits=True),
        ref.compute_transition_scores(expected.sequences, expected.scores, expected.beam_indices,
                                      normalize_logits=True).numpy(), rtol=1e-5, atol=1e-4)
