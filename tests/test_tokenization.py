"""Tokenizer parity with transformers.AutoTokenizer.

Fixtures: the real WordPiece tokenizer of all-MiniLM-L6-v2 (tokenizer.json, and rebuilt from vocab.txt), and tiny
tokenizers trained here with the `tokenizers` library (byte-level BPE as GPT-2 / RoBERTa / BART, character BPE,
Unigram as T5) or with `sentencepiece` (T5 spiece.model, Llama tokenizer.model, XLM-R sentencepiece.bpe.model),
each saved both as tokenizer.json and, where the family has one, in its legacy format. Every expectation is
transformers' own output on the same folder.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers  # noqa: E402

from fxformers.testing_assets import minilm_path  # noqa: E402
from fxformers.tokenization import (  # noqa: E402
    AutoTokenizer,
    BatchEncoding,
    BertTokenizer,
    BertTokenizerFast,
    GPT2Tokenizer,
    GPT2TokenizerFast,
    PreTrainedTokenizerFast,
)

LONG = " ".join(["The quick brown fox jumps over the lazy dog near the river bank."] * 12)
CORPUS = [
    "Hello world!",
    "Café naïve résumé Ångström façade — déjà vu.",
    "東京は日本の首都です。北京欢迎你",
    "I ❤️ emoji 🙂🚀👍🏽 and flags 🇫🇷",
    "Visit https://example.com/path?q=1&r=2 or mail me@example.org",
    "Numbers: 3.14159, 1,000,000 and -42 in 2024",
    "  leading and   runs   of\twhitespace \n newline  ",
    "",
    LONG,
    "don't won't I'm you're they've",
    "UPPER lower MiXeD",
]
PAIRS = [c for c in CORPUS[1:6]] + ["", LONG]
TRAIN = CORPUS * 3 + [
    "the cat sat on the mat while the dog barked at the mailman",
    "tokenizers split text into tokens and map the tokens to ids",
    "machine learning models read numbers not words",
]


# ---------------------------------------------------------------------------------------------------- fixtures
def _write_config(folder, **config):
    (folder / "tokenizer_config.json").write_text(json.dumps(config))


def _bytelevel_bpe(specials, add_prefix_space=False):
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=500, min_frequency=1, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tk.train_from_iterator(TRAIN, trainer)
    return tk


def _save_vocab_merges(tk, folder):
    folder.mkdir(parents=True, exist_ok=True)
    tk.model.save(str(folder))


def _build_assets(root):
    import sentencepiece as spm

    out = {}
    # --- the real MiniLM WordPiece tokenizer, as shipped and rebuilt from vocab.txt
    src = minilm_path()
    out["minilm"] = src
    legacy = root / "minilm_legacy"
    legacy.mkdir()
    for name in ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(src / name, legacy / name)
    out["minilm_legacy"] = legacy
    distil = root / "distilbert_legacy"
    distil.mkdir()
    shutil.copy(src / "vocab.txt", distil / "vocab.txt")
    _write_config(distil, tokenizer_class="DistilBertTokenizer", do_lower_case=False, model_max_length=24)
    out["distilbert_legacy"] = distil

    # --- GPT-2 style byte-level BPE
    gpt = _bytelevel_bpe(["<|endoftext|>"])
    d = root / "gpt2_legacy"
    _save_vocab_merges(gpt, d)
    _write_config(d, tokenizer_class="GPT2Tokenizer", model_max_length=32)
    out["gpt2_legacy"] = d
    d = root / "gpt2_json"
    d.mkdir()
    gpt.post_processor = processors.ByteLevel(trim_offsets=False)
    gpt.save(str(d / "tokenizer.json"))
    _write_config(d, tokenizer_class="GPT2Tokenizer", model_max_length=32, bos_token="<|endoftext|>",
                  eos_token="<|endoftext|>", unk_token="<|endoftext|>", add_prefix_space=False)
    out["gpt2_json"] = d

    # --- RoBERTa / BART style byte-level BPE
    rob = _bytelevel_bpe(["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    d = root / "roberta_legacy"
    _save_vocab_merges(rob, d)
    _write_config(d, tokenizer_class="RobertaTokenizer", model_max_length=32)
    out["roberta_legacy"] = d
    d = root / "roberta_json"
    d.mkdir()
    rob.post_processor = processors.RobertaProcessing(
        ("</s>", rob.token_to_id("</s>")), ("<s>", rob.token_to_id("<s>")), trim_offsets=True, add_prefix_space=False
    )
    rob.save(str(d / "tokenizer.json"))
    _write_config(d, tokenizer_class="RobertaTokenizer", model_max_length=32)
    out["roberta_json"] = d
    d = root / "bart_json"
    shutil.copytree(root / "roberta_json", d)
    _write_config(d, tokenizer_class="BartTokenizer", model_max_length=32)
    out["bart_json"] = d

    # --- Qwen2 style byte-level BPE (NFC, Qwen's split regex)
    from fxformers.tokenization.models import QWEN2_PRETOKENIZE_REGEX

    qwen = Tokenizer(models.BPE())
    qwen.normalizer = normalizers.NFC()
    qwen.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(tokenizers.Regex(QWEN2_PRETOKENIZE_REGEX), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    qwen.decoder = decoders.ByteLevel()
    qwen.train_from_iterator(TRAIN, trainers.BpeTrainer(
        vocab_size=500, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    qwen.post_processor = processors.ByteLevel(trim_offsets=False)
    d = root / "qwen2_json"
    d.mkdir()
    qwen.save(str(d / "tokenizer.json"))
    _write_config(d, tokenizer_class="Qwen2Tokenizer", model_max_length=32, eos_token="<|im_end|>",
                  pad_token="<|endoftext|>", additional_special_tokens=["<|im_start|>", "<|im_end|>"])
    out["qwen2_json"] = d
    d = root / "qwen2_legacy"
    _save_vocab_merges(qwen, d)
    _write_config(d, tokenizer_class="Qwen2Tokenizer", model_max_length=32)
    out["qwen2_legacy"] = d

    # --- character BPE (no byte level), generic class
    tk = Tokenizer(models.BPE(unk_token="<unk>", end_of_word_suffix="</w>"))
    tk.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tk.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tk.decoder = decoders.BPEDecoder(suffix="</w>")
    tk.train_from_iterator(TRAIN, trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<pad>", "<bos>", "<eos>"], end_of_word_suffix="</w>"))
    tk.post_processor = processors.TemplateProcessing(
        single="<bos> $A <eos>", pair="<bos> $A <eos> $B:1 <eos>:1",
        special_tokens=[("<bos>", tk.token_to_id("<bos>")), ("<eos>", tk.token_to_id("<eos>"))],
    )
    d = root / "charbpe_json"
    d.mkdir()
    tk.save(str(d / "tokenizer.json"))
    _write_config(d, tokenizer_class="PreTrainedTokenizerFast", model_max_length=32, unk_token="<unk>",
                  pad_token="<pad>", bos_token="<bos>", eos_token="<eos>", model_input_names=["input_ids", "token_type_ids", "attention_mask"])
    out["charbpe_json"] = d

    # --- Unigram trained with tokenizers, wrapped as T5 (pad 0, eos 1, unk 2)
    tk = Tokenizer(models.Unigram())
    tk.normalizer = normalizers.NFKC()
    tk.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)]
    )
    tk.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tk.train_from_iterator(TRAIN, trainers.UnigramTrainer(vocab_size=250, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>"))
    tk.post_processor = processors.TemplateProcessing(single=["$A", "</s>"], pair=["$A", "</s>", "$B", "</s>"], special_tokens=[("</s>", 1)])
    d = root / "t5_unigram_json"
    d.mkdir()
    tk.save(str(d / "tokenizer.json"))
    _write_config(d, tokenizer_class="T5Tokenizer", model_max_length=32, extra_ids=3, eos_token="</s>", unk_token="<unk>", pad_token="<pad>")
    out["t5_unigram_json"] = d

    # --- SentencePiece models (legacy files), and their tokenizer.json as transformers saves them
    text_file = root / "spm_corpus.txt"
    text_file.write_text("\n".join(t for t in TRAIN if t.strip()) + "\n", encoding="utf-8")

    def train_spm(prefix, **kw):
        spm.SentencePieceTrainer.train(
            input=str(text_file), model_prefix=str(root / prefix), vocab_size=kw.pop("vocab_size", 180),
            character_coverage=kw.pop("character_coverage", 1.0), minloglevel=2, hard_vocab_limit=False, num_threads=1, **kw
        )
        return root / f"{prefix}.model"

    t5_model = train_spm("t5spm", model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1)
    d = root / "t5_legacy"
    d.mkdir()
    shutil.copy(t5_model, d / "spiece.model")
    _write_config(d, tokenizer_class="T5Tokenizer", model_max_length=32, extra_ids=4)
    out["t5_legacy"] = d

    llama_model = train_spm("llamaspm", model_type="bpe", byte_fallback=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1, vocab_size=420,
                            character_coverage=0.98)
    d = root / "llama_legacy"
    d.mkdir()
    shutil.copy(llama_model, d / "tokenizer.model")
    _write_config(d, tokenizer_class="LlamaTokenizer", model_max_length=32, add_bos_token=True, add_eos_token=False,
                  bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<unk>", legacy=False)
    out["llama_legacy"] = d

    xlmr_model = train_spm("xlmrspm", model_type="unigram", bos_id=0, pad_id=1, eos_id=2, unk_id=3)
    d = root / "xlmr_legacy"
    d.mkdir()
    shutil.copy(xlmr_model, d / "sentencepiece.bpe.model")
    _write_config(d, tokenizer_class="XLMRobertaTokenizer", model_max_length=32)
    out["xlmr_legacy"] = d

    for name in ("t5_legacy", "llama_legacy", "xlmr_legacy"):
        dst = root / name.replace("legacy", "json")
        transformers.AutoTokenizer.from_pretrained(str(out[name])).save_pretrained(str(dst))
        out[name.replace("legacy", "json")] = dst
    return out


@pytest.fixture(scope="session")
def assets(tmp_path_factory):
    return _build_assets(tmp_path_factory.mktemp("tokenizers"))


_CACHE: dict = {}


def _pair(assets, name):
    """(fxformers tokenizer, transformers tokenizer) for one fixture folder, loaded once per session."""
    if name not in _CACHE:
        path = str(assets[name])
        _CACHE[name] = (AutoTokenizer.from_pretrained(path), transformers.AutoTokenizer.from_pretrained(path))
    return _CACHE[name]


ALL = [
    "minilm", "minilm_legacy", "distilbert_legacy", "gpt2_legacy", "gpt2_json", "roberta_legacy", "roberta_json",
    "bart_json", "charbpe_json", "t5_unigram_json", "t5_legacy", "t5_json", "llama_legacy", "llama_json",
    "xlmr_legacy", "xlmr_json", "qwen2_json", "qwen2_legacy",
]
PADDABLE = [n for n in ALL if not n.startswith("gpt2")]


# ---------------------------------------------------------------------------------------------------- helpers
def _norm(value):
    if isinstance(value, dict):
        return {k: _norm(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return value.tolist()
    if hasattr(value, "numpy"):  # torch
        return value.numpy().tolist()
    if isinstance(value, (list, tuple)):
        return [_norm(v) for v in value]
    return value


def assert_same(ours, theirs, check_maps=True):
    assert isinstance(ours, BatchEncoding)
    assert sorted(ours.keys()) == sorted(theirs.keys())
    for key in theirs.keys():
        assert _norm(ours[key]) == _norm(theirs[key]), key
    if check_maps and theirs.encodings:
        assert len(ours.encodings) == len(theirs.encodings)
        for i in range(len(theirs.encodings)):
            assert ours.tokens(i) == theirs.tokens(i)
            assert ours.word_ids(i) == theirs.word_ids(i)
            assert ours.sequence_ids(i) == theirs.sequence_ids(i)


def both(pair, *args, **kwargs):
    fx, hf = pair
    hf_kwargs = dict(kwargs)
    if hf_kwargs.get("return_tensors") == "jax":
        hf_kwargs["return_tensors"] = "np"
    return fx(*args, **kwargs), hf(*args, **hf_kwargs)


# ---------------------------------------------------------------------------------------------------- tests
def test_minilm_path_finds_the_checkpoint():
    path = minilm_path()
    assert (path / "config.json").is_file() and (path / "tokenizer.json").is_file()


@pytest.mark.parametrize("name", ALL)
def test_loading_matches(assets, name):
    fx, hf = _pair(assets, name)
    assert fx.get_vocab() == hf.get_vocab()
    assert len(fx) == len(hf) and fx.vocab_size == hf.vocab_size
    assert fx.special_tokens_map == hf.special_tokens_map
    assert sorted(fx.all_special_tokens) == sorted(hf.all_special_tokens)
    assert fx.model_max_length == hf.model_max_length
    assert fx.padding_side == hf.padding_side and fx.truncation_side == hf.truncation_side
    assert fx.model_input_names == hf.model_input_names
    for attr in ("bos", "eos", "unk", "sep", "pad", "cls", "mask"):
        assert getattr(fx, f"{attr}_token") == getattr(hf, f"{attr}_token"), attr
        assert getattr(fx, f"{attr}_token_id") == getattr(hf, f"{attr}_token_id"), attr
    assert {i: str(t) for i, t in fx.added_tokens_decoder.items()} == {i: str(t) for i, t in hf.added_tokens_decoder.items()}


@pytest.mark.parametrize("name", ALL)
def test_single_and_batch(assets, name):
    pair = _pair(assets, name)
    for text in CORPUS:
        assert_same(*both(pair, text))
        assert_same(*both(pair, text, add_special_tokens=False))
    assert_same(*both(pair, CORPUS, return_offsets_mapping=True, return_special_tokens_mask=True, return_length=True))


@pytest.mark.parametrize("name", ALL)
def test_pairs(assets, name):
    pair = _pair(assets, name)
    firsts = CORPUS[: len(PAIRS)]
    assert_same(*both(pair, firsts, PAIRS, return_offsets_mapping=True))
    assert_same(*both(pair, "What is this?", "It is a test.", return_token_type_ids=True))
    assert_same(*both(pair, list(zip(firsts, PAIRS)), return_offsets_mapping=True))


@pytest.mark.parametrize("name", PADDABLE)
@pytest.mark.parametrize(
    "options",
    [
        dict(padding=True),
        dict(padding="longest", pad_to_multiple_of=8),
        dict(padding="max_length", max_length=40),
        dict(padding="max_length", truncation=True),
        dict(padding=True, truncation=True, max_length=16, padding_side="left"),
        dict(padding=True, truncation="longest_first", max_length=12, return_tensors="np"),
        dict(truncation=True, max_length=10, return_overflowing_tokens=True, stride=3, padding=True),
        dict(truncation=True, max_length=9, return_overflowing_tokens=True, stride=2),
        dict(max_length=7),
        dict(truncation=True),
    ],
    ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()),
)
def test_padding_truncation_overflow(assets, name, options):
    pair = _pair(assets, name)
    assert_same(*both(pair, CORPUS, return_offsets_mapping=True, **options))


@pytest.mark.parametrize("name", ["minilm", "roberta_json", "t5_legacy", "llama_json", "charbpe_json"])
@pytest.mark.parametrize("strategy", ["longest_first", "only_first", "only_second"])
def test_pair_truncation_strategies(assets, name, strategy):
    pair = _pair(assets, name)
    firsts, seconds = {
        "longest_first": ([LONG, "short one", LONG[:80]], [LONG[:60], LONG, "tiny"]),
        "only_first": ([LONG, LONG[:100], LONG], ["tiny", "a b c", ""]),
        "only_second": (["tiny", "a b c", "q"], [LONG, LONG[:100], LONG]),
    }[strategy]
    kw = dict(truncation=strategy, max_length=24, padding="max_length", return_offsets_mapping=True)
    assert_same(*both(pair, firsts, seconds, **kw))
    assert_same(*both(pair, firsts, seconds, stride=4, return_overflowing_tokens=True, **kw))


@pytest.mark.parametrize("name", ["minilm", "llama_json"])
def test_truncation_impossible_raises_like_transformers(assets, name):
    fx, hf = _pair(assets, name)
    with pytest.raises(Exception, match="too short"):
        hf(["short one"], [LONG], truncation="only_first", max_length=24)
    with pytest.raises(ValueError, match="too short"):
        fx(["short one"], [LONG], truncation="only_first", max_length=24)
    assert_same(*both((fx, hf), ["short one"], truncation="only_second", max_length=24))


@pytest.mark.parametrize("name", ["minilm", "gpt2_json", "roberta_legacy", "t5_json", "llama_legacy", "xlmr_json"])
def test_split_into_words(assets, name):
    pair = _pair(assets, name)
    words = [t.split() for t in CORPUS if t.strip()]
    assert_same(*both(pair, words[0], is_split_into_words=True))
    assert_same(*both(pair, words, is_split_into_words=True, return_offsets_mapping=True))
    assert_same(*both(pair, words[:3], words[3:6], is_split_into_words=True))


@pytest.mark.parametrize("name", ["minilm", "roberta_json", "t5_legacy"])
def test_return_flags(assets, name):
    pair = _pair(assets, name)
    for flags in (
        dict(return_token_type_ids=True, return_attention_mask=False),
        dict(return_token_type_ids=False),
        dict(return_special_tokens_mask=True, return_length=True, padding=True),
    ):
        assert_same(*both(pair, CORPUS[:4], **flags))


@pytest.mark.parametrize("name", ALL)
def test_decode(assets, name):
    fx, hf = _pair(assets, name)
    ids = hf(CORPUS, padding=not name.startswith("gpt2"))["input_ids"]
    for skip in (False, True):
        for clean in (None, True, False):
            for seq in ids:
                assert fx.decode(seq, skip_special_tokens=skip, clean_up_tokenization_spaces=clean) == hf.decode(
                    seq, skip_special_tokens=skip, clean_up_tokenization_spaces=clean
                )
        assert fx.batch_decode(ids, skip_special_tokens=skip) == hf.batch_decode(ids, skip_special_tokens=skip)
    assert fx.decode(np.asarray(ids[0])) == hf.decode(ids[0])
    assert fx.decode(ids[0][1]) == hf.decode(ids[0][1])


@pytest.mark.parametrize("name", ["minilm", "gpt2_json", "t5_legacy", "llama_legacy", "charbpe_json"])
def test_token_api(assets, name):
    fx, hf = _pair(assets, name)
    for text in CORPUS:
        assert fx.tokenize(text) == hf.tokenize(text)
        assert fx.encode(text) == hf.encode(text)
        assert fx.encode(text, add_special_tokens=False) == hf.encode(text, add_special_tokens=False)
        tokens = hf.tokenize(text)
        assert fx.convert_tokens_to_ids(tokens) == hf.convert_tokens_to_ids(tokens)
        assert fx.convert_tokens_to_string(tokens) == hf.convert_tokens_to_string(tokens)
        ids = hf.encode(text)
        assert fx.convert_ids_to_tokens(ids) == hf.convert_ids_to_tokens(ids)
        assert fx.convert_ids_to_tokens(ids, skip_special_tokens=True) == hf.convert_ids_to_tokens(ids, skip_special_tokens=True)
    assert fx.encode("a b", "c d") == hf.encode("a b", "c d")
    assert fx.encode_plus("a b", "c d")["input_ids"] == hf("a b", "c d")["input_ids"]
    assert fx.batch_encode_plus([("a b", "c d"), ("e", "f g")])["input_ids"] == hf([("a b", "c d"), ("e", "f g")])["input_ids"]
    assert fx.convert_tokens_to_ids("definitely-not-a-token-xyz") == hf.convert_tokens_to_ids("definitely-not-a-token-xyz")
    assert fx.num_special_tokens_to_add(pair=True) == hf.num_special_tokens_to_add(pair=True)
    assert fx.all_special_ids == hf.all_special_ids


def test_batch_encoding_maps(assets):
    pair = _pair(assets, "minilm")
    ours, theirs = both(pair, ["Hello world, nice day!", "Tokyo 東京 is big"], ["second text here", "and here"], return_offsets_mapping=True)
    for b in range(2):
        for c in range(0, 15):
            for s in (0, 1):
                assert ours.char_to_token(b, c, sequence_index=s) == theirs.char_to_token(b, c, sequence_index=s)
                assert ours.char_to_word(b, c, sequence_index=s) == theirs.char_to_word(b, c, sequence_index=s)
        for t in range(len(theirs["input_ids"][b])):
            assert ours.token_to_chars(b, t) == theirs.token_to_chars(b, t)
            assert ours.token_to_word(b, t) == theirs.token_to_word(b, t)
            assert ours.token_to_sequence(b, t) == theirs.token_to_sequence(b, t)
        for w in range(3):
            assert ours.word_to_tokens(b, w) == theirs.word_to_tokens(b, w)
            assert ours.word_to_chars(b, w) == theirs.word_to_chars(b, w)
    assert ours.input_ids == theirs["input_ids"]
    assert ours[0].ids == theirs[0].ids
    assert [e.ids for e in ours[:1]] == [e.ids for e in theirs[:1]]
    single_ours, single_theirs = both(pair, "Hello there")
    assert single_ours.char_to_token(3) == single_theirs.char_to_token(3)
    assert single_ours.token_to_chars(1) == single_theirs.token_to_chars(1)


def test_tensors_np_and_jax(assets):
    import jax

    fx, hf = _pair(assets, "minilm")
    ours = fx(CORPUS, padding=True, truncation=True, return_tensors="np")
    theirs = hf(CORPUS, padding=True, truncation=True, return_tensors="np")
    for key in theirs:
        assert isinstance(ours[key], np.ndarray) and ours[key].dtype == theirs[key].dtype
        np.testing.assert_array_equal(ours[key], theirs[key])
    ours_jax = fx(CORPUS, padding=True, truncation=True, return_tensors="jax", return_offsets_mapping=True)
    assert isinstance(ours_jax["input_ids"], jax.Array)
    np.testing.assert_array_equal(np.asarray(ours_jax["input_ids"]), theirs["input_ids"])
    assert ours_jax["offset_mapping"].shape == (len(CORPUS), theirs["input_ids"].shape[1], 2)
    single = fx("one text", return_tensors="np")
    np.testing.assert_array_equal(single["input_ids"], hf("one text", return_tensors="np")["input_ids"])
    converted = fx(CORPUS[:2], padding=True).jax()
    assert isinstance(converted["attention_mask"], jax.Array)
    with pytest.raises(ValueError, match="padding=True"):
        fx(CORPUS[:3], return_tensors="np")


@pytest.mark.parametrize("name", ["minilm", "gpt2_json", "llama_json"])
def test_left_padding_for_generation(assets, name):
    fx, hf = _pair(assets, name)
    original = (fx.pad_token, hf.pad_token)
    if fx.pad_token is None:
        fx.pad_token = fx.eos_token
        hf.pad_token = hf.eos_token
    try:
        assert fx.pad_token_id == hf.pad_token_id
        ours, theirs = both((fx, hf), CORPUS[:4], padding=True, padding_side="left", return_tensors="np")
        assert_same(ours, theirs)
        assert (ours["attention_mask"][:, -1] == 1).all()
    finally:
        fx.pad_token, hf.pad_token = original


def test_special_token_setters(assets):
    fx, hf = _pair(assets, "gpt2_json")
    fx2, hf2 = AutoTokenizer.from_pretrained(str(assets["gpt2_json"])), transformers.AutoTokenizer.from_pretrained(str(assets["gpt2_json"]))
    assert fx2.pad_token is None and fx2.pad_token_id is None
    fx2.pad_token = fx2.eos_token
    hf2.pad_token = hf2.eos_token
    assert fx2.pad_token_id == hf2.pad_token_id
    fx2.pad_token_id = 5
    hf2.pad_token_id = 5
    assert fx2.pad_token == hf2.pad_token
    assert fx2.add_special_tokens({"cls_token": "<CLS>", "additional_special_tokens": ["<x1>", "<x2>"]}) == hf2.add_special_tokens(
        {"cls_token": "<CLS>", "additional_special_tokens": ["<x1>", "<x2>"]}
    )
    assert fx2.add_tokens(["newword", "another"]) == hf2.add_tokens(["newword", "another"])
    assert fx2.get_vocab() == hf2.get_vocab() and len(fx2) == len(hf2)
    assert fx2.cls_token_id == hf2.cls_token_id
    assert fx2.extra_special_tokens == hf2.extra_special_tokens
    text = "a newword <x1> and <CLS> another"
    assert_same(fx2(text), hf2(text))
    ids = hf2.encode(text)
    assert fx2.decode(ids, skip_special_tokens=True) == hf2.decode(ids, skip_special_tokens=True)


@pytest.mark.parametrize("name", ["minilm", "minilm_legacy", "gpt2_legacy", "roberta_json", "t5_legacy", "llama_legacy", "xlmr_legacy", "charbpe_json", "t5_unigram_json"])
def test_save_pretrained_roundtrip(assets, name, tmp_path):
    fx, hf = _pair(assets, name)
    fx.add_tokens(["brandnewtoken"]) if name == "minilm_legacy" else None
    hf.add_tokens(["brandnewtoken"]) if name == "minilm_legacy" else None
    # per-call padding/truncation is not part of the saved tokenizer
    fx("warm up the backend", padding="max_length" if fx.pad_token else False, max_length=20, truncation=True)
    fx.save_pretrained(tmp_path)
    assert (tmp_path / "tokenizer.json").is_file() and (tmp_path / "tokenizer_config.json").is_file()
    reloaded_hf = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    reloaded_fx = AutoTokenizer.from_pretrained(tmp_path)
    assert reloaded_hf.get_vocab() == hf.get_vocab()
    assert reloaded_hf.special_tokens_map == hf.special_tokens_map
    assert reloaded_hf.model_max_length == hf.model_max_length
    texts = CORPUS + ["with brandnewtoken inside"]
    kw = dict(truncation=True, padding=hf.pad_token is not None, return_offsets_mapping=True)
    assert_same(reloaded_fx(texts, **kw), hf(texts, **kw))
    assert_same(fx(texts, **kw), reloaded_hf(texts, **kw))
    assert reloaded_hf.decode(hf.encode(texts[1]), skip_special_tokens=True) == hf.decode(hf.encode(texts[1]), skip_special_tokens=True)


def test_aliases_and_auto_classes(assets):
    assert BertTokenizerFast is BertTokenizer and GPT2TokenizerFast is GPT2Tokenizer
    tok = BertTokenizer.from_pretrained(minilm_path())
    assert isinstance(tok, BertTokenizer) and "token_type_ids" in tok("hi")
    generic = PreTrainedTokenizerFast.from_pretrained(assets["charbpe_json"])
    assert generic("hello")["input_ids"] == _pair(assets, "charbpe_json")[1]("hello")["input_ids"]
    # a folder without tokenizer_config.json: the class comes from config.json's model_type
    with pytest.raises(TypeError):
        AutoTokenizer()


def test_model_type_fallback(assets, tmp_path):
    shutil.copy(assets["roberta_json"] / "tokenizer.json", tmp_path / "tokenizer.json")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "roberta"}))
    fx = AutoTokenizer.from_pretrained(tmp_path)
    hf = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    assert type(fx).__name__ == "RobertaTokenizer"
    assert_same(fx(CORPUS[:5]), hf(CORPUS[:5]))


def test_config_spellings(assets, tmp_path):
    """Transformers-4 (additional_special_tokens, tokenizer_class ...Fast) and -5 (extra_special_tokens,
    TokenizersBackend) spellings load to the same tokenizer."""
    for i, (cls_name, key) in enumerate([("PreTrainedTokenizerFast", "additional_special_tokens"), ("TokenizersBackend", "extra_special_tokens")]):
        d = tmp_path / str(i)
        d.mkdir()
        shutil.copy(assets["charbpe_json"] / "tokenizer.json", d / "tokenizer.json")
        _write_config(d, tokenizer_class=cls_name, model_max_length=32, pad_token="<pad>", unk_token="<unk>",
                      bos_token="<bos>", eos_token="<eos>", **{key: ["<extra1>", "<extra2>"]})
        fx, hf = AutoTokenizer.from_pretrained(d), transformers.AutoTokenizer.from_pretrained(str(d))
        assert fx.extra_special_tokens == hf.extra_special_tokens == ["<extra1>", "<extra2>"]
        assert fx.get_vocab() == hf.get_vocab()
        assert_same(fx("x <extra1> y", padding="max_length", max_length=12), hf("x <extra1> y", padding="max_length", max_length=12))
    d = tmp_path / "fast_name"
    shutil.copytree(assets["gpt2_json"], d)
    cfg = json.loads((d / "tokenizer_config.json").read_text())
    cfg["tokenizer_class"] = "GPT2TokenizerFast"
    (d / "tokenizer_config.json").write_text(json.dumps(cfg))
    assert type(AutoTokenizer.from_pretrained(d)).__name__ == "GPT2Tokenizer"


def test_text_target(assets):
    pair = _pair(assets, "t5_legacy")
    ours, theirs = both(pair, CORPUS[:3], text_target=CORPUS[3:6], padding=True, truncation=True, max_length=16)
    assert_same(ours, theirs, check_maps=False)
    ours, theirs = both(pair, text_target=CORPUS[3:6])
    assert_same(ours, theirs)


def test_empty_batch(assets):
    fx, _ = _pair(assets, "minilm")
    out = fx([])
    assert out["input_ids"] == [] and out["attention_mask"] == [] and out["token_type_ids"] == []
    assert fx([], padding=True, return_tensors="np")["input_ids"].shape[0] == 0
    assert fx.batch_decode([]) == []


def test_errors(assets):
    fx, _ = _pair(assets, "minilm")
    gpt, _ = _pair(assets, "gpt2_json")
    with pytest.raises((TypeError, ValueError), match="str"):
        fx(123)
    with pytest.raises((TypeError, ValueError), match="str"):
        fx(["ok", None])
    with pytest.raises((TypeError, ValueError)):
        fx([1, 2, 3])
    with pytest.raises(ValueError, match="padding"):
        fx("x", padding="everything")
    with pytest.raises(ValueError, match="truncation"):
        fx("x", truncation="middle")
    with pytest.raises(ValueError, match="return_tensors"):
        fx("x", return_tensors="pt")
    with pytest.raises(ValueError, match="pad_token"):
        gpt(["a", "bb"], padding=True)
    with pytest.raises(ValueError, match="multiple"):
        fx(["a"], padding=True, truncation=True, max_length=10, pad_to_multiple_of=8)
    with pytest.raises(ValueError, match="text_pair"):
        fx(["a", "b"], ["c"])
    with pytest.raises(ValueError, match="text"):
        fx()
    with pytest.raises(OSError):
        AutoTokenizer.from_pretrained(str(assets["minilm"].parent / "1_Pooling"))


def test_pad_method(assets):
    fx, hf = _pair(assets, "minilm")
    feats = [hf(t) for t in CORPUS[:4]]
    ours = fx.pad([dict(f) for f in feats], return_tensors="np")
    theirs = hf.pad([dict(f) for f in feats], return_tensors="np")
    for key in theirs:
        np.testing.assert_array_equal(ours[key], theirs[key])
    ours = fx.pad([dict(f) for f in feats], padding="max_length", max_length=40, padding_side="left")
    theirs = hf.pad([dict(f) for f in feats], padding="max_length", max_length=40, padding_side="left")
    assert _norm(dict(ours)) == _norm(dict(theirs))


def test_hub_cache_layout(assets, tmp_path):
    """A hub id resolves through a local cache laid out as the Hugging Face hub cache (no network)."""
    repo = tmp_path / "models--acme--tiny-roberta"
    snapshot = repo / "snapshots" / "0123456789abcdef"
    shutil.copytree(assets["roberta_json"], snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123456789abcdef")
    fx = AutoTokenizer.from_pretrained("acme/tiny-roberta", cache_dir=tmp_path)
    hf = transformers.AutoTokenizer.from_pretrained(str(snapshot))
    assert_same(fx(CORPUS, padding=True), hf(CORPUS, padding=True))
    with pytest.raises(OSError):
        AutoTokenizer.from_pretrained("acme/not-cached", cache_dir=tmp_path)


def test_transformers4_added_tokens_decoder_config(assets, tmp_path):
    """The Transformers-4 layout: vocab.txt, special tokens as serialised AddedToken dicts, added_tokens_decoder."""
    shutil.copy(minilm_path() / "vocab.txt", tmp_path / "vocab.txt")
    vocab = (tmp_path / "vocab.txt").read_text(encoding="utf-8").splitlines()
    added = {}
    for tok in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"):
        added[str(vocab.index(tok))] = {"content": tok, "lstrip": False, "normalized": False, "rstrip": False,
                                        "single_word": False, "special": True}
    added[str(len(vocab))] = {"content": "<ent>", "lstrip": False, "normalized": True, "rstrip": False,
                              "single_word": False, "special": False}
    _write_config(
        tmp_path, tokenizer_class="BertTokenizerFast", do_lower_case=True, model_max_length=64,
        added_tokens_decoder=added, clean_up_tokenization_spaces=True,
        mask_token={"__type": "AddedToken", "content": "[MASK]", "lstrip": True, "normalized": False, "rstrip": False, "single_word": False},
        pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
        unk_token={"__type": "AddedToken", "content": "[UNK]", "lstrip": False, "normalized": False, "rstrip": False, "single_word": False},
    )
    fx, hf = AutoTokenizer.from_pretrained(tmp_path), transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    assert fx.get_vocab() == hf.get_vocab()
    texts = ["an <ent> here [MASK] there", "Don't stop , please !"] + CORPUS
    assert_same(*both((fx, hf), texts, padding=True, return_offsets_mapping=True))
    ids = hf(texts)["input_ids"]
    assert fx.batch_decode(ids) == hf.batch_decode(ids)
    assert fx.batch_decode(ids, skip_special_tokens=True) == hf.batch_decode(ids, skip_special_tokens=True)


@pytest.mark.parametrize("flag", [dict(add_eos_token=True), dict(add_bos_token=False), dict(add_bos_token=True, add_eos_token=True)])
def test_add_bos_eos_overrides(assets, flag):
    path = str(assets["llama_json"])
    fx, hf = AutoTokenizer.from_pretrained(path, **flag), transformers.AutoTokenizer.from_pretrained(path, **flag)
    assert_same(*both((fx, hf), CORPUS, ["x y"] * len(CORPUS)))


def test_too_long_warning(assets, caplog):
    fx = AutoTokenizer.from_pretrained(assets["minilm"], model_max_length=8)
    with caplog.at_level("WARNING", logger="fxformers.tokenization.base"):
        fx(LONG)
    assert "longer than the specified maximum" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="fxformers.tokenization.base"):
        AutoTokenizer.from_pretrained(assets["minilm"], model_max_length=8)(LONG, verbose=False)
    assert caplog.text == ""


@pytest.mark.parametrize("name,filename", [("t5_legacy", "spiece.model"), ("llama_legacy", "tokenizer.model"), ("xlmr_legacy", "sentencepiece.bpe.model")])
def test_spm_reader_matches_protobuf(assets, name, filename):
    """fxformers reads SentencePiece models without sentencepiece; compare with the official protobuf."""
    from sentencepiece import sentencepiece_model_pb2

    from fxformers.tokenization.spm import parse_spm_model

    path = assets[name] / filename
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(path.read_bytes())
    ours = parse_spm_model(path)
    assert [(p, t) for p, _, t in ours.pieces] == [(p.piece, p.type) for p in proto.pieces]
    np.testing.assert_array_equal(np.float32([s for _, s, _ in ours.pieces]), np.float32([p.score for p in proto.pieces]))
    spec = proto.trainer_spec
    assert (ours.model_type, ours.byte_fallback) == (spec.model_type, spec.byte_fallback)
    assert (ours.unk_id, ours.bos_id, ours.eos_id, ours.pad_id) == (spec.unk_id, spec.bos_id, spec.eos_id, spec.pad_id)
    assert (ours.unk_piece, ours.bos_piece, ours.eos_piece, ours.pad_piece) == (spec.unk_piece, spec.bos_piece, spec.eos_piece, spec.pad_piece)
    assert ours.precompiled_charsmap == proto.normalizer_spec.precompiled_charsmap
    assert ours.add_dummy_prefix == proto.normalizer_spec.add_dummy_prefix
    with pytest.raises(ValueError, match="SentencePiece"):
        parse_spm_model(b"\xff\xff\xff not a model")


def test_legacy_added_tokens_json(assets, tmp_path):
    shutil.copytree(assets["gpt2_legacy"], tmp_path / "t")
    d = tmp_path / "t"
    n = len(json.loads((d / "vocab.json").read_text()))
    (d / "added_tokens.json").write_text(json.dumps({"<sep>": n, "hello_world": n + 1}))
    cfg = json.loads((d / "tokenizer_config.json").read_text())
    cfg["additional_special_tokens"] = ["<sep>"]
    (d / "tokenizer_config.json").write_text(json.dumps(cfg))
    fx, hf = AutoTokenizer.from_pretrained(d), transformers.AutoTokenizer.from_pretrained(str(d))
    assert fx.get_vocab() == hf.get_vocab()
    text = "say hello_world<sep>and more"
    assert_same(fx(text, return_offsets_mapping=True), hf(text, return_offsets_mapping=True))
    assert fx.decode(hf.encode(text), skip_special_tokens=True) == hf.decode(hf.encode(text), skip_special_tokens=True)


@pytest.mark.parametrize(
    "source,class_name",
    [("gpt2_json", "GPTNeoXTokenizerFast"), ("roberta_json", "LongformerTokenizer"), ("minilm", "ElectraTokenizerFast"),
     ("llama_json", "CodeLlamaTokenizer")],
)
def test_other_families_and_aliases(assets, tmp_path, source, class_name):
    """Classes without an fxformers family of their own keep Transformers' input names, sides and default tokens."""
    d = tmp_path / "tok"
    shutil.copytree(assets[source], d)
    cfg = json.loads((d / "tokenizer_config.json").read_text())
    cfg["tokenizer_class"] = class_name
    (d / "tokenizer_config.json").write_text(json.dumps(cfg))
    fx, hf = AutoTokenizer.from_pretrained(d), transformers.AutoTokenizer.from_pretrained(str(d))
    assert fx.get_vocab() == hf.get_vocab() and fx.special_tokens_map == hf.special_tokens_map
    assert (fx.padding_side, fx.model_input_names) == (hf.padding_side, hf.model_input_names)
    kw = dict(return_offsets_mapping=True, padding=hf.pad_token is not None, truncation=True, max_length=20)
    assert_same(*both((fx, hf), CORPUS, **kw))


def test_fuzz_against_transformers(assets):
    """Random unicode text (controls, combining marks, CJK, emoji, whitespace runs) encodes identically."""
    hypothesis = pytest.importorskip("hypothesis")
    from hypothesis import strategies as st

    pairs = [_pair(assets, n) for n in ("minilm", "gpt2_json", "llama_json", "t5_legacy", "xlmr_legacy")]
    text = st.text(
        alphabet=st.one_of(
            st.characters(codec="utf-8"), st.sampled_from(list(" \t\n\u00a0\u3000éüß東京🙂👍🏽\u0301[CLS]<s></s>"))
        ),
        max_size=40,
    )

    @hypothesis.settings(max_examples=30, deadline=None, database=None)
    @hypothesis.given(st.lists(text, min_size=1, max_size=4), st.booleans())
    def check(texts, as_pair):
        for fx, hf in pairs:
            args = (texts, texts[::-1]) if as_pair else (texts,)
            kw = dict(return_offsets_mapping=True, truncation=True, max_length=24)
            assert_same(fx(*args, **kw), hf(*args, **kw))
            ids = hf(*args)["input_ids"]
            assert fx.batch_decode(ids) == hf.batch_decode(ids)

    check()


@pytest.mark.parametrize(
    "options",
    [dict(), dict(padding="max_length"), dict(padding="max_length", max_length=30, pad_to_multiple_of=16),
     dict(padding=False), dict(return_attention_mask=False), dict(padding=True, pad_to_multiple_of=8, padding_side="left")],
    ids=str,
)
def test_pad_method_options(assets, options):
    fx, hf = _pair(assets, "minilm")
    feats = [dict(hf(t, return_special_tokens_mask=True)) for t in CORPUS[:5]]
    for f in feats:
        f["label"] = 1
    assert _norm(dict(fx.pad([dict(f) for f in feats], **options))) == _norm(dict(hf.pad([dict(f) for f in feats], **options)))
    as_arrays = [{k: np.asarray(v) for k, v in f.items()} for f in feats[:1]] * 3
    ours, theirs = fx.pad(as_arrays, **options), hf.pad(as_arrays, **options)
    assert {k: type(v) for k, v in ours.items()} == {k: type(v) for k, v in theirs.items()}
    assert _norm(dict(ours)) == _norm(dict(theirs))
    single = dict(hf("one example"))
    assert _norm(dict(fx.pad(dict(single), **options))) == _norm(dict(hf.pad(dict(single), **options)))


def _rewrite_json(src, dst, edit):
    shutil.copytree(src, dst)
    data = json.loads((dst / "tokenizer.json").read_text(encoding="utf-8"))
    edit(data)
    (dst / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    return dst


@pytest.mark.parametrize(
    "case", ["bert_cased_file", "roberta_prefix_space", "t5_plain_metaspace", "gpt2_no_regex", "llama_legacy_normalizer", "qwen2_gpt2_pretok"]
)
def test_file_disagreeing_with_its_class(assets, tmp_path, case):
    """Transformers 5 rebuilds the known families' pipelines from the class around tokenizer.json's vocabulary; a
    file that disagrees with its class must still give Transformers' result."""
    def bert(data):
        data["normalizer"]["lowercase"] = False
        data["decoder"]["cleanup"] = False

    def roberta(data):
        data["pre_tokenizer"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}
        data["post_processor"]["add_prefix_space"] = True
        data["post_processor"]["trim_offsets"] = False

    def t5(data):
        data["pre_tokenizer"] = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": True}
        data["normalizer"] = {"type": "Sequence", "normalizers": [
            {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": "▁"}]}

    def gpt2(data):
        data["pre_tokenizer"]["use_regex"] = False

    def llama(data):
        data["normalizer"] = {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "▁"},
                                                                   {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]}
        data["pre_tokenizer"] = None

    def qwen2(data):
        data["pre_tokenizer"] = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
        data["normalizer"] = None

    source, edit = {
        "bert_cased_file": ("minilm", bert), "roberta_prefix_space": ("roberta_json", roberta),
        "t5_plain_metaspace": ("t5_json", t5), "gpt2_no_regex": ("gpt2_json", gpt2), "llama_legacy_normalizer": ("llama_json", llama),
        "qwen2_gpt2_pretok": ("qwen2_json", qwen2),
    }[case]
    d = _rewrite_json(assets[source], tmp_path / case, edit)
    fx, hf = AutoTokenizer.from_pretrained(d), transformers.AutoTokenizer.from_pretrained(str(d))
    texts = CORPUS + ["Hello <s> world </s> again", "a  b   c"]
    assert_same(*both((fx, hf), texts, return_offsets_mapping=True))
    ids = hf(texts)["input_ids"]
    assert fx.batch_decode(ids) == hf.batch_decode(ids)


def test_subfolder_and_pickle(assets, tmp_path):
    import pickle

    shutil.copytree(assets["minilm"], tmp_path / "tokenizer")
    fx = AutoTokenizer.from_pretrained(tmp_path, subfolder="tokenizer", local_files_only=True)
    hf = _pair(assets, "minilm")[1]
    assert fx(CORPUS[:3])["input_ids"] == hf(CORPUS[:3])["input_ids"]
    clone = pickle.loads(pickle.dumps(fx))
    assert clone(CORPUS[:3], padding=True)["input_ids"] == hf(CORPUS[:3], padding=True)["input_ids"]
    enc = pickle.loads(pickle.dumps(fx(CORPUS[:2], padding=True)))
    assert enc.word_ids(1) == hf(CORPUS[:2], padding=True).word_ids(1)
    # list-of-lists pairs without is_split_into_words, as zero-shot classification sends them
    assert_same(*both((fx, hf), [["a premise here", "a hypothesis"]], padding=True, truncation="only_first"))


@pytest.mark.parametrize("name", ["minilm", "roberta_json", "t5_legacy", "qwen2_json"])
def test_truncation_side_left(assets, name):
    fx, hf = _pair(assets, name)
    try:
        fx.truncation_side = hf.truncation_side = "left"
        fx.padding_side = hf.padding_side = "left"
        kw = dict(truncation=True, max_length=12, padding=True, return_offsets_mapping=True)
        assert_same(*both((fx, hf), CORPUS, **kw))
        assert_same(*both((fx, hf), CORPUS[:5], PAIRS[:5], stride=2, return_overflowing_tokens=True, **kw))
    finally:
        fx.truncation_side = hf.truncation_side = "right"
        fx.padding_side = hf.padding_side = "right"


CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'system' %}<<SYS>>{{ message['content'] | trim }}"
    "<</SYS>>\n{% elif message['role'] == 'user' %}[INST] {{ message['content'] }} [/INST]{% else %}"
    "{% generation %}{{ message['content'] }}{% endgeneration %}{{ eos_token }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}[ASSISTANT]{% endif %}{% if tools %}{{ tools | tojson }}{% endif %}"
)


@pytest.mark.parametrize("name", ["llama_json", "qwen2_json"])
def test_apply_chat_template(assets, name):
    pytest.importorskip("jinja2")
    fx, hf = _pair(assets, name)
    chat = [
        {"role": "system", "content": "  Be brief.  "},
        {"role": "user", "content": "Hello there, café 🙂?"},
        {"role": "assistant", "content": "Hi!"},
        {"role": "user", "content": "And now?"},
    ]
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    for kw in (dict(tokenize=False), dict(tokenize=False, add_generation_prompt=True, tools=tools),
               dict(tokenize=False, continue_final_message=True), dict(return_dict=False)):
        ours = fx.apply_chat_template(chat, chat_template=CHAT_TEMPLATE, **kw)
        theirs = hf.apply_chat_template(chat, chat_template=CHAT_TEMPLATE, **kw)
        assert _norm(ours) == _norm(theirs)
    batch = [chat, chat[:2]]
    ours = fx.apply_chat_template(batch, chat_template=CHAT_TEMPLATE, padding=True, return_tensors="np")
    theirs = hf.apply_chat_template(batch, chat_template=CHAT_TEMPLATE, padding=True, return_tensors="np")
    assert _norm(dict(ours)) == _norm(dict(theirs))
    with pytest.raises(ValueError, match="chat_template"):
        fx.apply_chat_template(chat)
