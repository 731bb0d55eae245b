"""Unpadded execution (``model(..., unpad_inputs=True)``): the BERT family's heads give Transformers' results at
every real token (and for every row-level output) while the dense layers see only the real tokens; padding
positions are zeros; layouts it cannot handle fail with a clear error."""

import jax
import numpy as np
import pytest
import torch
import transformers

import fxformers
from fxformers.ops.unpadding import check_right_padded, unpadded_length
from test_encoders import ARCHS, HEADS, output_key, rel_err, run_torch, torch_model, VOCAB

LENGTHS = (12, 5, 9, 1)  # 27 real tokens of 48 slots: packed into 32


def ragged_batch(head: str, seed: int = 0) -> dict:
    rng = np.random.RandomState(seed)
    lengths = np.array(LENGTHS)
    mask = (np.arange(12)[None, :] < lengths[:, None]).astype(np.int64)
    ids = np.where(mask == 1, rng.randint(3, VOCAB, mask.shape), 1)  # pad id 1: RoBERTa positions see real padding
    inputs = {"input_ids": ids, "attention_mask": mask}
    if head == "ForMultipleChoice":
        inputs = {k: np.stack([v, v[::-1]], axis=1) for k, v in inputs.items()}  # [B, C, T]
    return inputs


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("arch", list(ARCHS))
def test_unpadded_heads_match_pytorch_at_real_tokens(tmp_path, arch, head):
    tm = torch_model(arch, head, chunk_size_feed_forward=4)  # chunking must not touch the packed layout
    tm.save_pretrained(tmp_path)
    fm = getattr(fxformers, arch + head).from_pretrained(tmp_path)
    inputs = ragged_batch(head)
    mask = inputs["attention_mask"].astype(bool)
    packed = fm._unpadded_module(inputs["attention_mask"]).unpad_to
    assert packed == unpadded_length(mask.sum()) and 0 < packed < mask.size
    ref = run_torch(tm, inputs, output_hidden_states=True)
    out = fm(**inputs, output_hidden_states=True, unpad_inputs=True)
    key = output_key(head)
    ours, theirs = np.asarray(out[key]), ref[key].numpy()
    if ours.shape[:mask.ndim] == mask.shape:  # per-token outputs: real tokens only
        ours, theirs = ours[mask], theirs[mask]
    assert rel_err(ours, theirs) < 1e-5
    flat_mask = mask.reshape(-1, mask.shape[-1])
    for ours, theirs in zip(out.hidden_states, ref.hidden_states):
        ours = np.asarray(ours)
        assert rel_err(ours[flat_mask], theirs.numpy()[flat_mask]) < 1e-5
        assert not ours[~flat_mask].any()  # padding positions are zeros


def test_unpadded_real_minilm_matches_padded():
    from fxformers.testing_assets import minilm_path

    model = fxformers.AutoModel.from_pretrained(minilm_path())
    tokenizer = fxformers.AutoTokenizer.from_pretrained(minilm_path())
    texts = ["A man is eating food.", "Hi", "The quick brown fox jumps over the lazy dog near the river bank today."]
    enc = tokenizer(texts, padding="max_length", max_length=32, return_tensors="np")
    padded = np.asarray(model(**enc).last_hidden_state)
    unpadded = np.asarray(model(**enc, unpad_inputs=True).last_hidden_state)
    mask = enc["attention_mask"].astype(bool)
    assert rel_err(unpadded[mask], padded[mask]) < 1e-5


def test_no_padding_runs_the_padded_program():
    fm = fxformers.BertModel(fxformers.BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=1,
                                                  num_attention_heads=4, intermediate_size=37))
    assert fm._unpadded_module(np.ones((2, 8), np.int32)) is fm.module
    assert fm._unpadded_module(None) is fm.module
    nearly_full = np.ones((2, 16), np.int32)
    nearly_full[1, -1] = 0  # 31 real tokens: the packed size (32) would save nothing
    assert fm._unpadded_module(nearly_full) is fm.module


def test_unpadded_refuses_what_it_cannot_do():
    fm = fxformers.BertModel(fxformers.BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=1,
                                                  num_attention_heads=4, intermediate_size=37))
    ids = np.full((2, 8), 5, np.int32)
    left = np.ones_like(ids)
    left[1, :3] = 0
    with pytest.raises(ValueError, match="right-padded"):
        fm(input_ids=ids, attention_mask=left, unpad_inputs=True)
    right = left[:, ::-1].copy()
    with pytest.raises(ValueError, match="inside jax.jit"):
        jax.jit(lambda m, mask: m(input_ids=ids, attention_mask=mask, unpad_inputs=True).last_hidden_state)(fm, right)
    gpt2 = fxformers.GPT2Model(fxformers.GPT2Config(vocab_size=VOCAB, n_embd=16, n_layer=1, n_head=2, n_positions=16))
    assert not gpt2.supports_unpadding
    with pytest.raises(NotImplementedError, match="unpad_inputs"):
        gpt2(input_ids=ids, attention_mask=right, unpad_inputs=True)


def test_check_right_padded_counts_tokens():
    assert check_right_padded(np.array([[1, 1, 0], [0, 0, 0], [1, 1, 1]])) == 5
    with pytest.raises(ValueError):
        check_right_padded(np.array([[1, 0, 1]]))


@pytest.mark.parametrize("n", [0, 1, 15, 16, 17, 31, 33, 100, 700, 1024, 1025, 5000])
def test_unpadded_length_buckets(n):
    size = unpadded_length(n)
    assert size >= max(n, 16)
    assert size - max(n, 16) < max(n / 8, 8)  # filler under 1/8 of the work (or one 8-token step)
    assert size % 8 == 0


def test_pipelines_run_encoders_unpadded(tmp_path):
    tm = torch_model("Bert", "ForSequenceClassification")
    tm.save_pretrained(tmp_path)
    transformers.BertTokenizerFast(vocab_file=_vocab(tmp_path)).save_pretrained(tmp_path)
    pipe = fxformers.pipeline("text-classification", model=str(tmp_path))
    assert pipe.unpad and pipe.model_inputs(pipe.collate([{"input_ids": [2, 3]}], 16, 2))["unpad_inputs"]
    texts = ["a b", "c d e f a b c", "f"]
    batched, single = pipe(texts, batch_size=3), [pipe(t)[0] for t in texts]
    assert [r["label"] for r in batched] == [r["label"] for r in single]
    assert np.allclose([r["score"] for r in batched], [r["score"] for r in single], rtol=1e-5)
    pipe.tokenizer.padding_side = "left"
    assert not pipe.unpad


def _vocab(folder) -> str:
    path = folder / "vocab.txt"
    path.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", "c", "d", "e", "f"]))
    return str(path)
