"""ALBERT and DeBERTa-v2/v3 tokenizers, byte-exact with transformers on the tokenizer test corpus: built from the
SentencePiece model (spiece.model / spm.model) and from the tokenizer.json transformers saves, with the options
their configs carry (lower case, accents, punctuation split)."""

from __future__ import annotations

import json
import shutil

import pytest

transformers = pytest.importorskip("transformers")
spm = pytest.importorskip("sentencepiece")

from fxformers.tokenization import AlbertTokenizer, AutoTokenizer, DebertaV2Tokenizer  # noqa: E402
from test_tokenization import CORPUS, PAIRS, TRAIN, assert_same  # noqa: E402


def _train(root, prefix, **kw):
    text = root / "corpus.txt"
    text.write_text("\n".join(t for t in TRAIN if t.strip()) + "\n", encoding="utf-8")
    spm.SentencePieceTrainer.train(input=str(text), model_prefix=str(root / prefix), vocab_size=200, model_type="unigram",
                                   character_coverage=1.0, minloglevel=2, hard_vocab_limit=False, num_threads=1, **kw)
    return root / f"{prefix}.model"


def _folder(root, name, model, filename, **config):
    d = root / name
    d.mkdir()
    shutil.copy(model, d / filename)
    (d / "tokenizer_config.json").write_text(json.dumps(config))
    return d


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("spm_encoders")
    # ALBERT's layout: <pad> 0, <unk> 1, [CLS] [SEP] [MASK] control pieces
    albert = _train(root, "albert", pad_id=0, unk_id=1, bos_id=-1, eos_id=-1, control_symbols=["[CLS]", "[SEP]", "[MASK]"])
    # DeBERTa-v3's: [PAD] 0, [CLS] 1, [SEP] 2, [UNK] 3; [MASK] is added by the tokenizer
    deberta = _train(root, "deberta", pad_id=0, bos_id=1, eos_id=2, unk_id=3, pad_piece="[PAD]", bos_piece="[CLS]",
                     eos_piece="[SEP]", unk_piece="[UNK]")
    out = {
        "albert_legacy": _folder(root, "albert_legacy", albert, "spiece.model", tokenizer_class="AlbertTokenizer", model_max_length=32),
        "albert_cased_legacy": _folder(root, "albert_cased_legacy", albert, "spiece.model", tokenizer_class="AlbertTokenizer",
                                       do_lower_case=False, keep_accents=True, model_max_length=32),
        "deberta_legacy": _folder(root, "deberta_legacy", deberta, "spm.model", tokenizer_class="DebertaV2Tokenizer", model_max_length=32),
        "deberta_punct_legacy": _folder(root, "deberta_punct_legacy", deberta, "spm.model", tokenizer_class="DebertaV2Tokenizer",
                                        do_lower_case=True, split_by_punct=True, model_max_length=32),
    }
    for name in list(out):
        dst = root / name.replace("legacy", "json")
        transformers.AutoTokenizer.from_pretrained(str(out[name])).save_pretrained(str(dst))
        out[name.replace("legacy", "json")] = dst
    return out


NAMES = ["albert_legacy", "albert_json", "albert_cased_legacy", "albert_cased_json", "deberta_legacy", "deberta_json",
         "deberta_punct_legacy", "deberta_punct_json"]
_CACHE: dict = {}


def _pair(assets, name):
    if name not in _CACHE:
        _CACHE[name] = (AutoTokenizer.from_pretrained(str(assets[name])), transformers.AutoTokenizer.from_pretrained(str(assets[name])))
    return _CACHE[name]


@pytest.mark.parametrize("name", NAMES)
def test_tokenizer_matches_transformers(assets, name):
    fx, hf = _pair(assets, name)
    assert type(fx) is (AlbertTokenizer if name.startswith("albert") else DebertaV2Tokenizer)
    assert fx.get_vocab() == hf.get_vocab() and len(fx) == len(hf)
    assert fx.special_tokens_map == hf.special_tokens_map
    assert fx.model_input_names == hf.model_input_names
    for text in CORPUS:
        assert_same(fx(text, return_offsets_mapping=True), hf(text, return_offsets_mapping=True))
    kwargs = dict(return_offsets_mapping=True, return_special_tokens_mask=True, padding=True, truncation=True, max_length=24)
    assert_same(fx(CORPUS, **kwargs), hf(CORPUS, **kwargs))
    firsts = CORPUS[: len(PAIRS)]
    assert_same(fx(firsts, PAIRS, padding=True, return_offsets_mapping=True), hf(firsts, PAIRS, padding=True, return_offsets_mapping=True))
    ids = hf(CORPUS, padding=True)["input_ids"]
    for skip in (False, True):
        assert fx.batch_decode(ids, skip_special_tokens=skip) == hf.batch_decode(ids, skip_special_tokens=skip)
    assert fx.convert_ids_to_tokens(ids[1]) == hf.convert_ids_to_tokens(ids[1])


@pytest.mark.parametrize("name", ["albert_legacy", "deberta_legacy"])
def test_save_pretrained_round_trip(assets, name, tmp_path):
    fx, hf = _pair(assets, name)
    fx.save_pretrained(tmp_path)
    again = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    assert_same(fx(CORPUS, padding=True), again(CORPUS, padding=True))
    assert_same(AutoTokenizer.from_pretrained(str(tmp_path))(CORPUS, padding=True), hf(CORPUS, padding=True))
