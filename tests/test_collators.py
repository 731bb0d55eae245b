"""Data collators against Transformers' numpy collators, with the fxformers tokenizer and Transformers' own."""

import numpy as np
import pytest

transformers = pytest.importorskip("transformers")

from fxformers.testing_assets import minilm_path  # noqa: E402
from fxformers.tokenization import AutoTokenizer  # noqa: E402
from fxformers.training import collators as C  # noqa: E402

TEXTS = ["hello world", "a much longer sentence about nothing in particular at all", "short", "the cat sat on the mat"]


@pytest.fixture(scope="module")
def tokenizers():
    path = minilm_path()
    return AutoTokenizer.from_pretrained(path), transformers.AutoTokenizer.from_pretrained(str(path))


def features(tok, with_labels=True):
    rows = [dict(tok(t)) for t in TEXTS]
    if with_labels:
        for i, r in enumerate(rows):
            r["label"] = i % 2
    return rows


def assert_batches_equal(ours, theirs):
    theirs = {k: np.asarray(v) for k, v in dict(theirs).items()}
    assert sorted(ours) == sorted(theirs)
    for k in theirs:
        assert ours[k].shape == theirs[k].shape, k
        np.testing.assert_array_equal(ours[k], theirs[k], err_msg=k)


@pytest.mark.parametrize("kwargs", [{}, {"padding": "max_length", "max_length": 24}, {"pad_to_multiple_of": 8}])
def test_padding_collator_matches_transformers(tokenizers, kwargs):
    ours_tok, hf_tok = tokenizers
    ours = C.DataCollatorWithPadding(ours_tok, **kwargs)(features(ours_tok))
    theirs = transformers.DataCollatorWithPadding(hf_tok, return_tensors="np", **kwargs)(features(hf_tok))
    assert_batches_equal(ours, theirs)
    assert ours["labels"].tolist() == [0, 1, 0, 1]


def test_default_collator_matches_transformers():
    rows = [{"input_ids": [1, 2, 3], "label": 1, "text": "x"}, {"input_ids": [4, 5, 6], "label": 0, "text": "y"}]
    assert_batches_equal(C.default_data_collator(rows), transformers.default_data_collator(rows, return_tensors="np"))
    rows = [{"x": np.ones(2, np.float32), "label_ids": [0.5, 1.5]}, {"x": np.zeros(2, np.float32), "label_ids": [1.0, 2.0]}]
    assert_batches_equal(C.default_data_collator(rows), transformers.default_data_collator(rows, return_tensors="np"))


def test_token_classification_collator_matches_transformers(tokenizers):
    ours_tok, hf_tok = tokenizers

    def rows(tok):
        out = [dict(tok(t)) for t in TEXTS]
        for r in out:
            r["labels"] = list(range(len(r["input_ids"])))
        return out

    ours = C.DataCollatorForTokenClassification(ours_tok)(rows(ours_tok))
    theirs = transformers.DataCollatorForTokenClassification(hf_tok, return_tensors="np")(rows(hf_tok))
    assert_batches_equal(ours, theirs)


@pytest.mark.parametrize("kwargs", [{}, {"pad_to_multiple_of": 8}, {"padding": "max_length", "max_length": 48}])
def test_seq2seq_collator_matches_transformers(tokenizers, kwargs):
    ours_tok, hf_tok = tokenizers

    def rows(tok):
        return [dict(tok(t), labels=tok(t[::-1])["input_ids"]) for t in TEXTS]

    ours = C.DataCollatorForSeq2Seq(ours_tok, **kwargs)(rows(ours_tok))
    theirs = transformers.DataCollatorForSeq2Seq(hf_tok, return_tensors="np", **kwargs)(rows(hf_tok))
    assert_batches_equal(ours, theirs)
    assert (ours["labels"] == -100).any()


@pytest.mark.parametrize("as_dicts", [True, False])
def test_mlm_collator_draws_what_transformers_draws(tokenizers, as_dicts):
    """Same seed -> the same masked ids and labels as Transformers' numpy collator, batch after batch."""
    ours_tok, hf_tok = tokenizers
    ours = C.DataCollatorForLanguageModeling(ours_tok, seed=3)
    theirs = transformers.DataCollatorForLanguageModeling(hf_tok, return_tensors="np", seed=3)
    for _ in range(3):
        rows = features(ours_tok, with_labels=False)
        if not as_dicts:
            rows = [r["input_ids"] for r in rows]
        assert_batches_equal(ours(rows), theirs(rows))


def test_mlm_masking_statistics_and_special_tokens(tokenizers):
    tok, _ = tokenizers
    rows = [dict(tok(f"sentence number {i} " + "word " * (i % 17))) for i in range(400)]
    batch = C.DataCollatorForLanguageModeling(tok, seed=0)(rows)
    original = C.DataCollatorWithPadding(tok)(rows)["input_ids"]
    special = np.isin(original, tok.all_special_ids)
    selected = batch["labels"] != -100
    assert not (selected & special).any()  # [CLS], [SEP] and [PAD] are never chosen
    assert (batch["labels"][selected] == original[selected]).all()
    assert abs(selected.sum() / (~special).sum() - 0.15) < 0.01
    masked = batch["input_ids"] == tok.mask_token_id
    unchanged = selected & (batch["input_ids"] == original)
    random = selected & ~masked & ~unchanged
    n = selected.sum()
    assert abs(masked[selected].mean() - 0.8) < 0.03
    assert abs(random.sum() / n - 0.1) < 0.03 and abs(unchanged.sum() / n - 0.1) < 0.03
    assert (batch["input_ids"][~selected] == original[~selected]).all()


def test_clm_labels_ignore_padding(tokenizers):
    tok, _ = tokenizers
    batch = C.DataCollatorForLanguageModeling(tok, mlm=False)(features(tok, with_labels=False))
    pad = batch["input_ids"] == tok.pad_token_id
    assert pad.any() and (batch["labels"][pad] == -100).all()
    assert (batch["labels"][~pad] == batch["input_ids"][~pad]).all()


def test_mlm_needs_a_mask_token():
    class NoMask:
        mask_token_id = None

    with pytest.raises(ValueError, match="mlm=False"):
        C.DataCollatorForLanguageModeling(NoMask())
