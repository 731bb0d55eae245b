"""First-call latency: what an interactive user waits for, fxformers vs PyTorch, in fresh processes.

1. The quickstart's job (load all-MiniLM-L6-v2, embed 10 + 4 + 3 + 3 sentences, search) as a fresh process:
   fxformers (scripts/quickstart.py) against sentence-transformers on PyTorch, run twice each. fxformers' first run
   starts from an empty persistent compilation cache, its second run reads it (FXFORMERS_COMPILATION_CACHE points
   both at one temporary folder).
2. A ``padding=True`` loop: 200 sentences of random lengths 5-60 tokens, batch 8, ``model(**batch)`` on MiniLM
   (fxformers) against ``BertModel`` on PyTorch, in fresh processes, no persistent cache: total time and the number
   of XLA compilations (model calls bucket their length, so a new length rarely compiles).

``speedup`` = PyTorch seconds / fxformers seconds (above 1: fxformers is faster).

    python scripts/bench_first_call.py --out first_call.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

TORCH_QUICKSTART = r"""
import os, time
os.environ.setdefault("HF_HUB_OFFLINE", "1")
start = time.perf_counter()
from sentence_transformers import SentenceTransformer, util
from fxformers.testing_assets import minilm_path
import sys
sys.path.insert(0, os.path.join(os.getcwd(), "scripts"))
from quickstart import CORPUS, QUERIES
model = SentenceTransformer(str(minilm_path()), device="cpu")
corpus = model.encode(CORPUS, batch_size=16, convert_to_tensor=True)
queries = model.encode(QUERIES, batch_size=16, convert_to_tensor=True)
hits = util.semantic_search(queries, corpus, top_k=3)
pairs = ["The cat sits outside", "The new movie is awesome", "The cat plays in the garden"]
util.cos_sim(model.encode(pairs), model.encode(pairs))
print("WALL", time.perf_counter() - start)
"""

FX_QUICKSTART = r"""
import runpy, time
start = time.perf_counter()
runpy.run_path("scripts/quickstart.py", run_name="__main__")
print("WALL", time.perf_counter() - start)
"""

LOOP = r"""
import os, sys, time
import numpy as np
framework, n, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
from fxformers.testing_assets import minilm_path
rng = np.random.default_rng(0)
words = "the a man woman child dog cat plays eats rides reads writes horse food book guitar park street".split()
sentences = [" ".join(rng.choice(words, size=int(rng.integers(3, 59)))) for _ in range(n)]  # 5-60 tokens with [CLS]/[SEP]
start = time.perf_counter()
if framework == "torch":
    import torch, transformers
    torch.set_grad_enabled(False)
    tok = transformers.AutoTokenizer.from_pretrained(minilm_path())
    model = transformers.AutoModel.from_pretrained(minilm_path()).eval()
    loaded = time.perf_counter()
    for i in range(0, n, batch):
        out = model(**tok(sentences[i:i + batch], padding=True, return_tensors="pt")).last_hidden_state
    compiles = 0
else:
    import jax
    from jax._src import dispatch
    counts = [0]
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, *a, **k: counts.__setitem__(0, counts[0] + (event == dispatch.BACKEND_COMPILE_EVENT)))
    import fxformers
    tok = fxformers.AutoTokenizer.from_pretrained(minilm_path())
    model = fxformers.AutoModel.from_pretrained(minilm_path())
    loaded = time.perf_counter()
    before = counts[0]
    for i in range(0, n, batch):
        out = model(**tok(sentences[i:i + batch], padding=True, return_tensors="np")).last_hidden_state
    jax.block_until_ready(out)
    compiles = counts[0] - before
end = time.perf_counter()
print({"load_s": loaded - start, "loop_s": end - loaded, "compilations": compiles})
"""


def run(code: str, *args: str, env: dict | None = None, timeout: int = 900) -> str:
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(REPO),
                **(env or {})}
    res = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=REPO,
                         env=full_env, timeout=timeout)
    if res.returncode:
        raise RuntimeError(res.stderr[-3000:])
    return res.stdout


def wall(stdout: str) -> float:
    return round(float([line for line in stdout.splitlines() if line.startswith("WALL")][-1].split()[1]), 3)


def quickstart_rows() -> dict:
    with tempfile.TemporaryDirectory() as cache:
        env = {"FXFORMERS_COMPILATION_CACHE": cache}
        fx_first = wall(run(FX_QUICKSTART, env=env))
        fx_second = wall(run(FX_QUICKSTART, env=env))
        cache_files = sum(len(files) for _, _, files in os.walk(cache))
    torch_first = wall(run(TORCH_QUICKSTART))
    torch_second = wall(run(TORCH_QUICKSTART))
    return {
        "fxformers_first_run_s": fx_first, "fxformers_second_run_s": fx_second, "cache_files": cache_files,
        "pytorch_first_run_s": torch_first, "pytorch_second_run_s": torch_second,
        "first_run_speedup": round(torch_first / fx_first, 3),  # goal: >= 0.5 (within 2x)
        "second_run_speedup": round(torch_second / fx_second, 3),  # goal: >= 1
    }


def loop_rows(n: int, batch: int) -> dict:
    import ast

    fx = ast.literal_eval(run(LOOP, "fxformers", str(n), str(batch), env={"FXFORMERS_COMPILATION_CACHE": "0"})
                          .strip().splitlines()[-1])
    pt = ast.literal_eval(run(LOOP, "torch", str(n), str(batch)).strip().splitlines()[-1])
    fx = {k: round(v, 3) for k, v in fx.items()}
    pt = {k: round(v, 3) for k, v in pt.items()}
    return {"sentences": n, "batch": batch, "fxformers": fx, "pytorch": pt,
            "loop_speedup": round(pt["loop_s"] / fx["loop_s"], 3),  # goal: >= 1 with <= 4 compilations
            "compilations": fx["compilations"]}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="first_call.json")
    p.add_argument("--quick", action="store_true", help="the loop over 64 sentences instead of 200")
    p.add_argument("--sentences", type=int, default=200)
    p.add_argument("--batch", type=int, default=8)
    args = p.parse_args(argv)
    started = time.perf_counter()
    result = {"quickstart": quickstart_rows(),
              "padding_loop": loop_rows(64 if args.quick else args.sentences, args.batch)}
    result["wall_s"] = round(time.perf_counter() - started, 1)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
