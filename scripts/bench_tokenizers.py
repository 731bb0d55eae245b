"""Batch-encoding throughput: fxformers.AutoTokenizer vs transformers' fast tokenizer, on the all-MiniLM-L6-v2
WordPiece tokenizer, in one process, same inputs and settings.

    python scripts/bench_tokenizers.py [--sentences 10000] [--batch-size 64] [--max-length 128] [--out docs/bench_tokenizers.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import time
from pathlib import Path


def make_sentences(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    words = (
        "the a model tokenizer jax flax transformer attention layer weight gradient learning rate batch sequence "
        "padding truncation café naïve 東京 emoji 🙂 https://example.com/x?y=1 3.14159 1,000 don't it's"
    ).split()
    out = []
    for _ in range(n):
        length = rng.choice([3, 8, 16, 32, 64, 120, 250])  # words: from short to past the 128-token limit
        out.append(" ".join(rng.choice(words) for _ in range(length)))
    return out


def bench(tokenizer, sentences, batch_size, max_length, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(0, len(sentences), batch_size):
            tokenizer(sentences[i : i + batch_size], padding=True, truncation=True, max_length=max_length, return_tensors="np")
        times.append(time.perf_counter() - start)
    best = min(times)
    return {"best_seconds": best, "all_seconds": times, "sentences_per_second": len(sentences) / best}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sentences", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="docs/bench_tokenizers.json")
    args = parser.parse_args()

    import tokenizers
    import transformers

    from fxformers.testing_assets import minilm_path
    from fxformers.tokenization import AutoTokenizer

    path = minilm_path()
    ours = AutoTokenizer.from_pretrained(path)
    theirs = transformers.AutoTokenizer.from_pretrained(str(path))
    sentences = make_sentences(args.sentences)

    # same output first: a benchmark of different work would mean nothing
    a = ours(sentences[:256], padding=True, truncation=True, max_length=args.max_length, return_tensors="np")
    b = theirs(sentences[:256], padding=True, truncation=True, max_length=args.max_length, return_tensors="np")
    assert all((a[k] == b[k]).all() for k in b), "fxformers and transformers disagree on the benchmark inputs"

    # warm up both, then alternate so that neither profits from machine noise more than the other
    bench(ours, sentences[:1000], args.batch_size, args.max_length, 1)
    bench(theirs, sentences[:1000], args.batch_size, args.max_length, 1)
    results_ours, results_theirs = [], []
    for _ in range(args.repeats):
        results_theirs.append(bench(theirs, sentences, args.batch_size, args.max_length, 1)["best_seconds"])
        results_ours.append(bench(ours, sentences, args.batch_size, args.max_length, 1)["best_seconds"])
    ours_sps = args.sentences / min(results_ours)
    theirs_sps = args.sentences / min(results_theirs)
    report = {
        "task": "batch encode, padding=True, truncation=True, return_tensors='np'",
        "tokenizer": "sentence-transformers/all-MiniLM-L6-v2 (WordPiece, tokenizer.json)",
        "sentences": args.sentences,
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "repeats": args.repeats,
        "fxformers_sentences_per_second": round(ours_sps, 1),
        "transformers_sentences_per_second": round(theirs_sps, 1),
        "ratio_fxformers_over_transformers": round(ours_sps / theirs_sps, 3),
        "fxformers_seconds": [round(t, 4) for t in results_ours],
        "transformers_seconds": [round(t, 4) for t in results_theirs],
        "versions": {"transformers": transformers.__version__, "tokenizers": tokenizers.__version__, "python": platform.python_version()},
        "machine": {"cpus": os.cpu_count(), "TOKENIZERS_PARALLELISM": os.environ.get("TOKENIZERS_PARALLELISM")},
    }
    print(f"fxformers:    {ours_sps:10.1f} sentences/s")
    print(f"transformers: {theirs_sps:10.1f} sentences/s")
    print(f"ratio (fxformers / transformers): {ours_sps / theirs_sps:.3f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
