"""Generative pipelines against transformers 4.x pipelines on tiny random GPT-2, T5 and BART checkpoints with
tokenizers trained here: texts and token ids exact (greedy and beam search), the 4.x default settings and T5's
task prefixes from task_specific_params."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline_helpers import assert_all_cases_match, assert_same, cached_pipeline



TRAIN = [
    "the cat sat on the mat while the dog barked at the mailman",
    "tokenizers split text into tokens and map the tokens to ids",
    "machine learning models read numbers not words",
    "hello world, once upon a time there was a small model",
    "translate English to German: the house is wonderful",
    "summarize: a long article about the weather and the sea",
] * 3


def _bpe(specials):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.train_from_iterator(TRAIN, trainers.BpeTrainer(vocab_size=1000, min_frequency=1, special_tokens=specials,
                                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return tk


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    import torch
    import transformers
    from tokenizers import Tokenizer, decoders, models as tk_models, normalizers, pre_tokenizers, processors, trainers

    root = tmp_path_factory.mktemp("generation-models")
    out = {}

    gpt_tok = _bpe(["<|endoftext|>"])
    gpt_tok.post_processor = processors.ByteLevel(trim_offsets=False)
    d = root / "gpt2"
    torch.manual_seed(0)
    transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=gpt_tok.get_vocab_size(), n_embd=16, n_layer=1, n_head=2, n_positions=64, bos_token_id=0,
        eos_token_id=0, initializer_range=0.5)).eval().save_pretrained(d)
    gpt_tok.save(str(d / "tokenizer.json"))
    (d / "tokenizer_config.json").write_text(json.dumps(dict(
        tokenizer_class="GPT2Tokenizer", model_max_length=64, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
        unk_token="<|endoftext|>", add_prefix_space=False)))
    out["gpt2"] = str(d)

    bart_tok = _bpe(["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    bart_tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0), trim_offsets=True, add_prefix_space=False)
    d = root / "bart"
    torch.manual_seed(1)
    transformers.BartForConditionalGeneration(transformers.BartConfig(
        vocab_size=bart_tok.get_vocab_size(), d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=64, init_std=0.5,
        pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2, forced_eos_token_id=2)).eval().save_pretrained(d)
    bart_tok.save(str(d / "tokenizer.json"))
    (d / "tokenizer_config.json").write_text(json.dumps(dict(tokenizer_class="BartTokenizer", model_max_length=64)))
    out["bart"] = str(d)

    t5_tok = Tokenizer(tk_models.Unigram())
    t5_tok.normalizer = normalizers.NFKC()
    t5_tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(
        replacement="▁", prepend_scheme="always", split=True)])
    t5_tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    t5_tok.train_from_iterator(TRAIN, trainers.UnigramTrainer(vocab_size=200, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>"))
    t5_tok.post_processor = processors.TemplateProcessing(single=["$A", "</s>"], pair=["$A", "</s>", "$B", "</s>"],
                                                          special_tokens=[("</s>", 1)])
    d = root / "t5"
    torch.manual_seed(2)
    transformers.T5ForConditionalGeneration(transformers.T5Config(
        vocab_size=t5_tok.get_vocab_size(), d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2, initializer_factor=4.0,
        decoder_start_token_id=0, pad_token_id=0, eos_token_id=1, task_specific_params={
            "summarization": {"prefix": "summarize: ", "num_beams": 2, "no_repeat_ngram_size": 2, "early_stopping": True},
            "translation_en_to_de": {"prefix": "translate English to German: ", "num_beams": 3, "early_stopping": True},
        })).eval().save_pretrained(d)
    t5_tok.save(str(d / "tokenizer.json"))
    (d / "tokenizer_config.json").write_text(json.dumps(dict(
        tokenizer_class="T5Tokenizer", model_max_length=64, extra_ids=0, eos_token="</s>", unk_token="<unk>", pad_token="<pad>")))
    out["t5"] = str(d)
    return out


def build_cases(m: dict) -> dict[str, dict]:
    greedy = {"do_sample": False, "max_new_tokens": 7}
    return {
        "tg-greedy": dict(task="text-generation", model=m["gpt2"], args=["hello world, once upon"], kwargs=greedy),
        "tg-new-text": dict(task="text-generation", model=m["gpt2"], args=["the cat sat"],
                            kwargs={**greedy, "return_full_text": False}),
        "tg-list": dict(task="text-generation", model=m["gpt2"], args=[["the dog", "machine learning models read"]],
                        kwargs={"do_sample": False, "max_new_tokens": 5}),
        "tg-beams": dict(task="text-generation", model=m["gpt2"], args=["tokenizers split"],
                         kwargs={"do_sample": False, "num_beams": 3, "num_return_sequences": 2, "max_new_tokens": 5}),
        "tg-tensors": dict(task="text-generation", model=m["gpt2"], args=["hello"], kwargs={**greedy, "return_tensors": True}),
        "tg-prefix": dict(task="text-generation", model=m["gpt2"], args=["a small model"],
                          kwargs={**greedy, "prefix": "once upon "}),
        "tg-penalties": dict(task="text-generation", model=m["gpt2"], args=["the mat"],
                             kwargs={**greedy, "repetition_penalty": 1.5, "no_repeat_ngram_size": 2}),
        "tg-init": dict(task="text-generation", model=m["gpt2"], init={"do_sample": False, "max_new_tokens": 4},
                        args=["numbers not"]),
        "t2t-single": dict(task="text2text-generation", model=m["t5"], args=["the house is wonderful"],
                           kwargs={"max_new_tokens": 6}),
        "t2t-list": dict(task="text2text-generation", model=m["t5"], args=[["the cat", "a long article about the sea"]],
                         kwargs={"max_new_tokens": 5}),
        "t2t-nrs": dict(task="text2text-generation", model=m["t5"], args=["hello world"],
                        kwargs={"max_new_tokens": 5, "num_return_sequences": 2}),
        "t2t-tensors": dict(task="text2text-generation", model=m["t5"], args=["hello world"],
                            kwargs={"max_new_tokens": 5, "return_tensors": True}),
        "sum-t5": dict(task="summarization", model=m["t5"], args=["a long article about the weather and the sea"],
                       kwargs={"max_new_tokens": 6}),
        "tr-t5": dict(task="translation_en_to_de", model=m["t5"], args=["the house is wonderful"],
                      kwargs={"max_new_tokens": 6}),
        "tr-plain": dict(task="translation", model=m["t5"], args=[["the house", "the dog barked"]],
                         kwargs={"max_new_tokens": 4}),
        "sum-bart": dict(task="summarization", model=m["bart"], args=["the cat sat on the mat while the dog barked"],
                         kwargs={"max_new_tokens": 6, "num_beams": 2}),
    }


@pytest.fixture(scope="session")
def cases(models):
    return build_cases(models)


def test_matches_transformers(cases):
    """Every case against transformers' pipeline; one test (so that one xdist worker runs the single reference
    subprocess), reporting every mismatching case at once."""
    assert_all_cases_match(cases)


def test_equals_decoded_generate(models):
    """The pipeline is decode(generate()): the same ids as model.generate on the tokenized prompt."""
    pipe = cached_pipeline("text-generation", models["gpt2"])
    ids = pipe.tokenizer("the cat sat", return_tensors="np")["input_ids"]
    direct = pipe.model.generate(ids, generation_config=pipe.generation_config, do_sample=False, max_new_tokens=6)
    direct = np.asarray(direct)[0]
    out = pipe("the cat sat", do_sample=False, max_new_tokens=6, return_tensors=True)[0]["generated_token_ids"]
    assert out == direct.tolist()


def test_batching_matches_one_at_a_time(models):
    pipe = cached_pipeline("text-generation", models["gpt2"])
    prompts = ["the dog", "machine learning models read numbers", "hello"]  # rows of 2 and 1, left-padded
    kwargs = {"do_sample": False, "max_new_tokens": 5}
    assert_same(pipe(prompts, batch_size=2, **kwargs), pipe(prompts, batch_size=1, **kwargs))
    t5 = cached_pipeline("summarization", models["t5"])
    docs = ["a long article about the weather", "the sea"]
    assert_same(t5(docs, batch_size=2, max_new_tokens=5), t5(docs, batch_size=1, max_new_tokens=5))


def test_sampling_defaults_and_seed(models):
    """Transformers 4.x's text-generation defaults sample (temperature 0.7); fxformers draws from the pipeline key."""
    from fxformers.pipelines import pipeline

    first = cached_pipeline("text-generation", models["gpt2"])
    pipe = pipeline("text-generation", model=first.model, tokenizer=first.tokenizer, seed=1)
    assert pipe.generation_config.do_sample is True and pipe.generation_config.temperature == 0.7
    assert pipe.generation_config.max_new_tokens == 256
    again = pipeline("text-generation", model=first.model, tokenizer=first.tokenizer, seed=1)
    a = pipe("the cat", max_new_tokens=5)
    assert a == again("the cat", max_new_tokens=5)
    t2t = cached_pipeline("summarization", models["t5"])
    assert t2t.prefix == "summarize: " and t2t.generation_config.num_beams == 2
