"""Sentence embeddings on the real all-MiniLM-L6-v2 against the sentence-transformers recipe (transformers'
BertModel, mean pooling over the attention mask, L2 normalisation, done in torch), and the quickstart script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fxformers.testing_assets import minilm_path



REPO = Path(__file__).resolve().parent.parent
SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse on an enclosed ground, under a pale blue sky with a few clouds.",
    "Hello!",
]


@pytest.fixture(scope="session")
def embedder():
    from fxformers.pipelines import SentenceEmbedder

    return SentenceEmbedder(minilm_path())


def sentence_transformers_reference(sentences, max_seq_length=256):
    """What sentence-transformers computes for all-MiniLM-L6-v2 (Transformer -> mean Pooling -> Normalize)."""
    import torch
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(minilm_path())
    model = transformers.AutoModel.from_pretrained(minilm_path()).eval()
    enc = tok(sentences, padding=True, truncation="longest_first", max_length=max_seq_length, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, p=2, dim=1).numpy(), hidden.numpy(), enc["attention_mask"].numpy()


def test_reads_the_sentence_transformers_files(embedder):
    cfg = embedder.config
    assert cfg.pooling_modes == ("mean_tokens",) and cfg.normalize and cfg.max_seq_length == 256
    assert embedder.dimension == 384
    long_text = "word " * 400
    assert len(embedder.tokenize([long_text])[0]["input_ids"]) == 256


def test_embeddings_equal_sentence_transformers(embedder):
    reference, hidden, mask = sentence_transformers_reference(SENTENCES)
    ours = embedder.encode(SENTENCES)
    assert ours.shape == (5, 384) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, reference, atol=1e-5)
    np.testing.assert_allclose(embedder.encode(SENTENCES, batch_size=1), ours, atol=1e-6)
    np.testing.assert_allclose(embedder.encode(SENTENCES[0]), ours[0], atol=1e-6)
    # the feature-extraction pipeline gives the unpooled token features of each sentence
    features = embedder.pipe(SENTENCES[:2])
    for i, feats in enumerate(features):
        n = int(mask[i].sum())
        np.testing.assert_allclose(np.array(feats)[0], hidden[i, :n], atol=1e-4)


def test_search_and_similarity(embedder):
    corpus = SENTENCES[:4]
    hits = embedder.search(["A man eats pasta.", "A horse rider"], corpus, top_k=2)
    assert [h["corpus_id"] for h in hits[0]] == [0, 1]
    assert hits[1][0]["corpus_id"] == 3
    sims = embedder.similarity(embedder.encode(corpus), embedder.encode(corpus))
    np.testing.assert_allclose(np.diag(sims), 1.0, atol=1e-5)


def test_pooling_config_variants(tmp_path):
    from fxformers.pipelines.sentence_embeddings import SentenceConfig, normalize, pool

    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]))
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": 4, "pooling_mode_cls_token": True, "pooling_mode_max_tokens": True}))
    cfg = SentenceConfig.from_folder(tmp_path)
    assert cfg.pooling_modes == ("cls_token", "max_tokens") and not cfg.normalize

    hidden = np.arange(24, dtype=np.float32).reshape(1, 3, 8) - 10
    mask = np.array([[1, 1, 0]])
    out = pool(hidden, mask, ("cls_token", "max_tokens", "mean_tokens", "mean_sqrt_len_tokens"))
    np.testing.assert_allclose(out[0, :8], hidden[0, 0])
    np.testing.assert_allclose(out[0, 8:16], hidden[0, 1])
    np.testing.assert_allclose(out[0, 16:24], hidden[0, :2].mean(0))
    np.testing.assert_allclose(out[0, 24:], hidden[0, :2].sum(0) / np.sqrt(2))
    np.testing.assert_allclose(np.linalg.norm(normalize(out), axis=-1), 1.0, rtol=1e-6)


def test_quickstart_runs_offline():
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "quickstart.py")], capture_output=True, text=True,
                          env=env, timeout=600, cwd=str(REPO))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "Query: A man is eating pasta." in out
    first_hit = out.split("Query: A man is eating pasta.")[1].splitlines()[1]
    assert "A man is eating food." in first_hit
    assert "torch" not in proc.stderr
