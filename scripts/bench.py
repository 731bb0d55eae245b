"""fxformers vs PyTorch transformers, side by side: one command for the whole benchmark table.

    python scripts/bench.py [--quick] [--sections encoder,tokenizers,generation,seq2seq,training] \\
        --out docs/benchmarks.json --md docs/benchmarks.md

The encoder section runs here, in one process: both frameworks load the same weights, get the same inputs, and
are timed in alternating blocks (a block of fxformers calls, a block of transformers calls, repeat) so that
machine noise falls on both alike; the first call of each block is untimed (see ``alternate``).
The other sections are the scripts ``scripts/bench_<section>.py`` written by their owners: each runs as a
subprocess with ``--out <tmp.json>`` (and a small size on CPU or with ``--quick``), and its JSON is merged here.

Sizes: on a GPU the defaults are the issue's real shapes (batch 64 x 128 for both encoders); on CPU BERT-base
throughput runs at a smaller batch (``--bert-batch``) so that a full run stays around ten minutes on two cores.
Every size used is written into the JSON and the table. ``--quick`` shrinks everything for a smoke run.

How things are measured (also written into the Markdown):
- latency: median wall time of ``--latency-reps`` calls at batch 1, after warm-up, outputs blocked on;
- throughput: sequences/s from the median of ``--throughput-reps`` calls at ``B x T``;
- compile time (fxformers): first call at a shape minus the steady-state median at that shape; for transformers
  the same difference is reported as first-call overhead (eager mode compiles nothing);
- peak memory: a fresh process per framework, model and dtype loads the model and runs two B x T calls; reported
  are its peak resident set (VmHWM) and the rise over its resident set after loading (activations, workspace and,
  for fxformers, the compiler's own memory);
- bfloat16: fxformers casts parameters and compute to bfloat16 (``model.astype``); transformers runs the model
  converted with ``.to(torch.bfloat16)`` (weights and activations in bf16, not autocast).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ALL_SECTIONS = ("encoder", "tokenizers", "generation", "seq2seq", "training", "first_call", "families")

# Other owners' scripts, and the size flags passed to them (a script's own --quick, when it has one, wins in
# quick mode). "cpu" is the full run on CPU, "gpu" the shapes.
SECTION_SCRIPTS = {
    "tokenizers": "bench_tokenizers.py",
    "generation": "bench_generation.py",
    "seq2seq": "bench_seq2seq.py",
    "training": "bench_training.py",
    "first_call": "bench_first_call.py",  # quickstart in fresh processes (cold/warm cache), padding=True loop
    "families": "bench_generation.py",  # issue 14's decoder families (Mixtral, Qwen3-MoE, Phi-3): generate() side by side
}
SECTION_SIZE_ARGS = {
    "tokenizers": {"quick": ["--sentences", "2000", "--repeats", "2"], "cpu": ["--sentences", "10000", "--repeats", "3"],
                   "gpu": ["--sentences", "10000", "--repeats", "5"]},
    "generation": {"quick": ["--preset", "cpu", "--repeats", "1"], "cpu": ["--preset", "cpu"],
                   "gpu": ["--preset", "gpu", "--dtype", "bfloat16", "--measure-bandwidth"]},
    "seq2seq": {"quick": ["--preset", "cpu", "--models", "t5-mini", "bart-mini", "--batch-sizes", "1", "--repeats", "1"],
                "cpu": ["--preset", "cpu"], "gpu": ["--preset", "gpu", "--dtype", "bfloat16"]},
    "training": {"quick": ["--size", "mini", "--batch", "4", "--seq", "64", "--steps", "3", "--warmup", "1"],
                 "cpu": ["--size", "mini", "--batch", "8", "--seq", "128", "--steps", "10"],
                 "gpu": ["--size", "base", "--batch", "32", "--seq", "128", "--dtype", "bf16", "--steps", "20",
                         "--peak-tflops", "989"]},
    "families": {"quick": ["--preset", "families-cpu", "--batch-sizes", "1", "--repeats", "1"],
                 "cpu": ["--preset", "families-cpu"], "gpu": ["--preset", "families-gpu", "--dtype", "bfloat16"]},
}

# The targets (fxformers / transformers, same run, same hardware).
CPU_TARGETS = {"minilm": 1.3, "tokenizers": 0.9}
GPU_TARGETS = [
    ("encoder inference, bfloat16 (BERT-base 64 x 128)", ">= 1.5x PyTorch eager"),
    ("training step (BERT-base 32 x 128)", ">= 3x PyTorch and >= 35% MFU"),
    ("batch-1 generation (1B Llama-shaped)", ">= 10x PyTorch and >= 60% of the bandwidth roofline"),
]

SHORT_WORDS = (
    "the a man woman child dog cat plays eats rides reads writes a horse food book guitar in on at park street "
    "kitchen quickly slowly today yesterday red small big happy new old music river city train bread"
).split()


# -- machine and versions ----------------------------------------------------------------------------------------
def machine_info() -> dict:
    info = {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()}
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        fields = {}
        for line in cpuinfo.splitlines():
            if ":" in line:
                k, v = (s.strip() for s in line.split(":", 1))
                fields.setdefault(k, v)
        info["cpu_model"] = fields.get("model name", platform.processor())
        info["cpu_family_model"] = f"family {fields.get('cpu family')} model {fields.get('model')}"
        flags = fields.get("flags", "").split()
        info["cpu_simd"] = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    except OSError:
        info["cpu_model"] = platform.processor()
    try:
        info["memory_GiB"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        pass
    return info


def versions() -> dict:
    import importlib.metadata as md

    out = {}
    for name in ("jax", "jaxlib", "flax", "torch", "transformers", "tokenizers", "numpy", "fxformers"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


# -- timing and memory helpers -----------------------------------------------------------------------------------
MEMORY_WORKER = r"""
import json, sys
from pathlib import Path
def kib(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
framework, model, dtype, batch, length = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
import numpy as np
ids = np.full((batch, length), 1000, np.int64)
mask = np.ones_like(ids)
if framework == "fxformers":
    import jax, jax.numpy as jnp, fxformers
    from fxformers.testing_assets import minilm_path
    if model == "minilm":
        m = fxformers.AutoModel.from_pretrained(minilm_path(), dtype=dtype)
    else:
        m = fxformers.BertForSequenceClassification.from_config(fxformers.BertConfig(), dtype=dtype)
    jax.block_until_ready(m.params)
    loaded = kib("VmRSS")
    run = lambda: jax.block_until_ready(m(input_ids=ids, attention_mask=mask))
    def device_peak():
        d = jax.devices()[0]
        return (d.memory_stats() or {}).get("peak_bytes_in_use") if d.platform == "gpu" else None
else:
    import torch, transformers
    from fxformers.testing_assets import minilm_path
    if model == "minilm":
        m = transformers.AutoModel.from_pretrained(str(minilm_path()))
    else:
        m = transformers.BertForSequenceClassification(transformers.BertConfig())
    device = "cuda" if torch.cuda.is_available() else "cpu"
    m = m.eval().to(device=device, dtype=getattr(torch, dtype))
    loaded = kib("VmRSS")
    t_ids, t_mask = torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device)
    def run():
        with torch.inference_mode():
            m(input_ids=t_ids, attention_mask=t_mask)
        if device == "cuda":
            torch.cuda.synchronize()
    def device_peak():
        return torch.cuda.max_memory_allocated() if device == "cuda" else None
run()
run()
out = {"loaded_MiB": loaded / 1024, "peak_MiB": kib("VmHWM") / 1024}
if device_peak() is not None:
    out["device_peak_MiB"] = device_peak() / 2**20
print(json.dumps(out))
"""


def memory_probe(framework: str, model: str, dtype: str, batch: int, length: int) -> dict | None:
    """Peak resident memory of a fresh process that loads the model and runs two batch x length calls (the first
    compiles, for fxformers): {"peak_MiB", "loaded_MiB", "rise_MiB"} (rise = peak minus RSS after loading), and on
    a GPU "device_peak_MiB" (JAX's peak_bytes_in_use, torch.cuda.max_memory_allocated)."""
    if not Path("/proc/self/status").is_file():
        return None
    res = subprocess.run([sys.executable, "-c", MEMORY_WORKER, framework, model, dtype, str(batch), str(length)],
                         capture_output=True, text=True, cwd=REPO, timeout=900)
    if res.returncode:
        return {"error": res.stderr[-1500:]}
    out = json.loads(res.stdout.strip().splitlines()[-1])
    return {k: round(v) for k, v in {**out, "rise_MiB": out["peak_MiB"] - out["loaded_MiB"]}.items()}


def alternate(fns: dict, reps: int, block: int = 5) -> dict:
    """Time each function ``reps`` times in alternating blocks of up to ``block`` calls; returns {name: [seconds]}.

    Each block starts with one untimed call: after a call, a framework's idle worker threads keep spinning on the
    cores for a while (OpenMP's and XLA's thread pools both do), and interleaving call by call made each side pay
    for the other's spinning (measured on 2 cores, MiniLM 1 x 16: fxformers 13.2 ms when run back to back or with a
    10 ms pause between the frameworks, 18.9 ms interleaved call by call). Back-to-back calls are also how either
    library is used.
    """
    times = {k: [] for k in fns}
    while any(len(v) < reps for v in times.values()):
        for k, fn in fns.items():
            fn()  # untimed: lets the other framework's threads go idle
            for _ in range(min(block, reps - len(times[k]))):
                start = time.perf_counter()
                fn()
                times[k].append(time.perf_counter() - start)
    return times


def first_call(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# -- the encoder section -----------------------------------------------------------------------------------------
class EncoderPair:
    """One encoder in both frameworks with identical weights, and callables that run it on numpy inputs."""

    def __init__(self, name: str, fx_model, torch_model, output: str):
        import torch

        self.name, self.fx, self.pt, self.output = name, fx_model, torch_model, output
        self.torch = torch
        self.device = next(torch_model.parameters()).device

    def astype(self, dtype: str) -> None:
        import jax.numpy as jnp

        self.fx = self.fx.astype(jnp.dtype(dtype))
        self.pt = self.pt.to(getattr(self.torch, dtype))

    def inputs(self, batch: int, length: int, seed: int = 0):
        import numpy as np

        rng = np.random.default_rng(seed)
        vocab = self.fx.config.vocab_size
        ids = rng.integers(1000, vocab, size=(batch, length), dtype=np.int32)
        ids[:, 0], ids[:, -1] = 101, 102  # [CLS] ... [SEP]
        mask = np.ones((batch, length), np.int32)
        t_ids = self.torch.from_numpy(ids.astype(np.int64)).to(self.device)
        t_mask = self.torch.from_numpy(mask.astype(np.int64)).to(self.device)
        return (ids, mask), (t_ids, t_mask)

    def callables(self, batch: int, length: int):
        import jax

        (ids, mask), (t_ids, t_mask) = self.inputs(batch, length)
        torch = self.torch
        sync = torch.cuda.synchronize if self.device.type == "cuda" else (lambda: None)

        def fx():
            out = self.fx(input_ids=ids, attention_mask=mask)
            return jax.block_until_ready(getattr(out, self.output))

        def pt():
            with torch.inference_mode():
                out = getattr(self.pt(input_ids=t_ids, attention_mask=t_mask), self.output)
            sync()
            return out

        return fx, pt

    def max_abs_diff(self, batch: int, length: int) -> float:
        import numpy as np

        fx, pt = self.callables(batch, length)
        a = np.asarray(fx(), dtype=np.float32)
        b = pt().float().cpu().numpy()
        return float(np.abs(a - b).max())


def load_minilm(device) -> EncoderPair:
    import transformers

    import fxformers
    from fxformers.testing_assets import minilm_path

    path = minilm_path()
    fx = fxformers.AutoModel.from_pretrained(path)
    pt = transformers.AutoModel.from_pretrained(str(path)).eval().to(device)
    return EncoderPair("all-MiniLM-L6-v2 (real weights)", fx, pt, "last_hidden_state")


def load_bert_base(device) -> EncoderPair:
    import torch
    import transformers

    import fxformers

    torch.manual_seed(0)
    config = transformers.BertConfig(num_labels=2)  # the defaults are BERT-base: 12 x 768, 12 heads, 3072, 30522
    pt = transformers.BertForSequenceClassification(config).eval()
    state = {k: v.detach().numpy() for k, v in pt.state_dict().items()}
    fx_config = fxformers.BertConfig.from_dict(config.to_dict())
    fx = fxformers.BertForSequenceClassification.from_state_dict(state, fx_config, source="a random BERT-base")
    return EncoderPair("BERT-base shapes, sequence classification (random init)", fx, pt.to(device), "logits")


def load_random_encoder(arch: str, name: str, **config_kwargs):
    """A loader for a randomly initialised ``<arch>ForSequenceClassification`` of the given shape, in both frameworks."""

    def load(device) -> EncoderPair:
        import torch
        import transformers

        import fxformers

        torch.manual_seed(0)
        config = getattr(transformers, arch + "Config")(num_labels=2, **config_kwargs)
        pt = getattr(transformers, arch + "ForSequenceClassification")(config).eval()
        state = {k: v.detach().numpy() for k, v in pt.state_dict().items()}
        fx_cls = getattr(fxformers, arch + "ForSequenceClassification")
        fx = fx_cls.from_state_dict(state, fx_cls.config_class.from_dict(config.to_dict()), source=f"a random {name}")
        return EncoderPair(f"{name} shapes, sequence classification (random init)", fx, pt.to(device), "logits")

    return load


ENCODER_LOADERS: dict = {"minilm": load_minilm, "bert_base": load_bert_base}
# the issue-15 encoders at their base sizes (opt in with --models)
ENCODER_LOADERS.update(
    electra_base=load_random_encoder("Electra", "ELECTRA-base", embedding_size=768, hidden_size=768,
                                     num_attention_heads=12, intermediate_size=3072),
    albert_base=load_random_encoder("Albert", "ALBERT-base-v2", embedding_size=128, hidden_size=768,
                                    num_attention_heads=12, intermediate_size=3072),
    deberta_v3_base=load_random_encoder("DebertaV2", "DeBERTa-v3-base", hidden_size=768, num_hidden_layers=12,
                                        num_attention_heads=12, intermediate_size=3072, relative_attention=True,
                                        pos_att_type="p2c|c2p", position_buckets=256, max_relative_positions=-1,
                                        norm_rel_ebd="layer_norm", share_att_key=True, position_biased_input=False,
                                        type_vocab_size=0),
    mpnet_base=load_random_encoder("MPNet", "MPNet-base"),  # defaults: all-mpnet-base-v2's 12 x 768
    modernbert_base=load_random_encoder("ModernBert", "ModernBERT-base"),  # defaults: 22 x 768, windows of 128
)


def encoder_gflop(config, batch: int, length: int) -> float:
    """Forward-pass GFLOP of a BERT-style encoder (dense layers + attention; embeddings and heads are negligible)."""
    d, f, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    dense = 2 * batch * length * (4 * d * d + 2 * d * f)  # Q, K, V, output projections and the feed-forward block
    attention = 4 * batch * length * length * d  # scores and the weighted sum
    return layers * (dense + attention) / 1e9


def gemm_peak(log, m: int = 2048, k: int = 1536, n: int = 1536, reps: int = 10) -> dict:
    """float32 GFLOP/s of one large matrix multiplication in each framework: the ceiling for GEMM-bound shapes."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch

    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((m, k), np.float32), rng.standard_normal((k, n), np.float32)
    ja, jb, ta, tb = jnp.asarray(a), jnp.asarray(b), torch.from_numpy(a), torch.from_numpy(b)
    matmul = jax.jit(jnp.matmul)
    times = alternate({"fxformers": lambda: matmul(ja, jb).block_until_ready(), "transformers": lambda: ta @ tb}, reps)
    flop = 2 * m * k * n
    out = {name: round(flop / statistics.median(v) / 1e9, 1) for name, v in times.items()}
    log(f"  float32 GEMM {m}x{k}x{n}: jax {out['fxformers']} GFLOP/s, torch {out['transformers']} GFLOP/s")
    return {"shape": f"{m}x{k}x{n}", "gflops": out}


def bench_encoder(pair: EncoderPair, key: str, dtype: str, sizes: dict, log) -> dict:
    """Latency at batch 1, throughput at B x T, compile time and peak memory for one model in one dtype."""
    import numpy as np

    out = {"model": pair.name, "dtype": dtype, "latency": {}, "throughput": {}}
    out["check_max_abs_diff"] = pair.max_abs_diff(2, 16)  # same work: outputs agree (compiles 2 x 16 only)
    for length in sizes["latency_seqs"]:
        fx, pt = pair.callables(1, length)
        firsts = {"fxformers": first_call(fx), "transformers": first_call(pt)}
        alternate({"fxformers": fx, "transformers": pt}, 2)  # warm-up
        times = alternate({"fxformers": fx, "transformers": pt}, sizes["latency_reps"])
        med = {k: statistics.median(v) for k, v in times.items()}
        out["latency"][f"1x{length}"] = {
            "median_ms": {k: round(v * 1e3, 3) for k, v in med.items()},
            "min_ms": {k: round(min(v) * 1e3, 3) for k, v in times.items()},
            "first_call_minus_steady_s": {k: round(firsts[k] - med[k], 3) for k in med},
            "ratio": round(med["transformers"] / med["fxformers"], 3),
            "reps": sizes["latency_reps"],
        }
        log(f"  {pair.name[:16]} {dtype} latency 1x{length}: fx {med['fxformers']*1e3:.2f} ms, "
            f"pt {med['transformers']*1e3:.2f} ms, ratio {med['transformers'] / med['fxformers']:.2f}")
    batch, length = sizes["batch"], sizes["seq"]
    fx, pt = pair.callables(batch, length)
    firsts = {"fxformers": first_call(fx), "transformers": first_call(pt)}
    alternate({"fxformers": fx, "transformers": pt}, 1)  # warm-up
    times = alternate({"fxformers": fx, "transformers": pt}, sizes["throughput_reps"])
    med = {k: statistics.median(v) for k, v in times.items()}
    out["throughput"] = {
        "shape": f"{batch}x{length}",
        "sequences_per_s": {k: round(batch / v, 2) for k, v in med.items()},
        "gflops": {k: round(encoder_gflop(pair.fx.config, batch, length) / v, 1) for k, v in med.items()},
        "tokens_per_s": {k: round(batch * length / v, 1) for k, v in med.items()},
        "median_s": {k: round(v, 4) for k, v in med.items()},
        "all_s": {k: [round(t, 4) for t in v] for k, v in times.items()},
        "first_call_minus_steady_s": {k: round(firsts[k] - med[k], 3) for k in med},
        "peak_memory": {fw: memory_probe(fw, key, dtype, batch, length) for fw in ("fxformers", "transformers")}
        if sizes.get("memory") else None,
        "ratio": round(med["transformers"] / med["fxformers"], 3),
        "reps": sizes["throughput_reps"],
    }
    log(f"  {pair.name[:16]} {dtype} throughput {batch}x{length}: fx {batch / med['fxformers']:.1f} seq/s, "
        f"pt {batch / med['transformers']:.1f} seq/s, ratio {med['transformers'] / med['fxformers']:.2f}, "
        f"fx compile {firsts['fxformers'] - med['fxformers']:.2f} s")
    del np
    return out


def make_short_sentences(n: int, seed: int = 0) -> list[str]:
    import random

    rng = random.Random(seed)
    return [" ".join(rng.choice(SHORT_WORDS) for _ in range(rng.randint(4, 14))).capitalize() + "." for _ in range(n)]


def bench_sentence_anchor(n: int, batch: int, reps: int, device, log) -> dict:
    """The seed anchor: embed n short sentences at ``batch`` end to end (tokenize + model + mean pooling +
    normalise). fxformers: ``SentenceEmbedder.encode``; torch: sentence-transformers' encode loop written out
    (sort by length, tokenizer(padding=True, truncation=True, max_length=256), model, masked mean, normalize)."""
    import numpy as np
    import torch
    import transformers

    from fxformers.pipelines import SentenceEmbedder
    from fxformers.testing_assets import minilm_path

    path = minilm_path()
    sentences = make_short_sentences(n)
    embedder = SentenceEmbedder(str(path), batch_size=batch)
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(path))
    model = transformers.AutoModel.from_pretrained(str(path)).eval().to(device)
    max_len = embedder.config.max_seq_length

    def torch_encode():
        order = np.argsort([-len(s) for s in sentences], kind="stable")
        rows = [None] * len(sentences)
        with torch.inference_mode():
            for i in range(0, len(order), batch):
                idx = order[i : i + batch]
                enc = tokenizer([sentences[j] for j in idx], padding=True, truncation=True, max_length=max_len,
                                return_tensors="pt").to(device)
                hidden = model(**enc).last_hidden_state
                m = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1).cpu().numpy()
                for r, j in enumerate(idx):
                    rows[j] = pooled[r]
        return np.stack(rows)

    def fx_encode():
        return embedder.encode(sentences)

    firsts = {"fxformers": first_call(fx_encode), "transformers": first_call(torch_encode)}
    a, b = fx_encode(), torch_encode()
    cos = float((a * b).sum(-1).min())
    times = alternate({"fxformers": fx_encode, "transformers": torch_encode}, reps)
    med = {k: statistics.median(v) for k, v in times.items()}
    sps = {k: round(n / v, 1) for k, v in med.items()}
    log(f"  sentence anchor {n} @ {batch}: fx {sps['fxformers']} /s, pt {sps['transformers']} /s, "
        f"ratio {med['transformers'] / med['fxformers']:.2f}, min cosine {cos:.6f}")
    return {
        "task": f"{n} short sentences (4-14 words), batch {batch}, tokenize + model + mean pooling + normalize",
        "sentences_per_s": sps,
        "median_s": {k: round(v, 4) for k, v in med.items()},
        "all_s": {k: [round(t, 4) for t in v] for k, v in times.items()},
        "first_call_s": {k: round(v, 3) for k, v in firsts.items()},
        "min_cosine_fx_vs_torch": round(cos, 7),
        "ratio": round(med["transformers"] / med["fxformers"], 3),
        "reps": reps,
    }


CACHE_PROBE = r"""
import sys, time
t0 = time.perf_counter()
import jax, numpy as np
cache = sys.argv[1]
if cache != "-":
    jax.config.update("jax_compilation_cache_dir", cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
import fxformers
from fxformers.testing_assets import minilm_path
model = fxformers.AutoModel.from_pretrained(minilm_path())
t1 = time.perf_counter()
ids = np.full((1, 128), 1000, np.int32)
jax.block_until_ready(model(input_ids=ids, attention_mask=np.ones_like(ids)).last_hidden_state)
t2 = time.perf_counter()
jax.block_until_ready(model(input_ids=ids, attention_mask=np.ones_like(ids)).last_hidden_state)
t3 = time.perf_counter()
print({"import_and_load_s": t1 - t0, "first_call_s": t2 - t1, "second_call_s": t3 - t2})
"""


def bench_compile_cache(log) -> dict:
    """MiniLM 1 x 128 first call in fresh processes: no cache, then a cold and a warm persistent cache."""
    import ast

    def probe(arg):
        res = subprocess.run([sys.executable, "-c", CACHE_PROBE, arg], capture_output=True, text=True, cwd=REPO,
                             timeout=600)
        if res.returncode:
            raise RuntimeError(res.stderr[-2000:])
        return {k: round(v, 3) for k, v in ast.literal_eval(res.stdout.strip().splitlines()[-1]).items()}

    with tempfile.TemporaryDirectory() as cache:
        out = {"no_cache": probe("-"), "cold_cache": probe(cache), "warm_cache": probe(cache)}
        out["cache_files"] = len(os.listdir(cache))
    out["first_call_saved_s"] = round(out["cold_cache"]["first_call_s"] - out["warm_cache"]["first_call_s"], 3)
    log(f"  compile cache, MiniLM 1x128 first call: none {out['no_cache']['first_call_s']} s, cold "
        f"{out['cold_cache']['first_call_s']} s, warm {out['warm_cache']['first_call_s']} s")
    return out


def run_encoder_section(args, log, save_partial=lambda section: None) -> dict:
    import jax
    import torch

    device = torch.device("cuda" if jax.default_backend() == "gpu" and torch.cuda.is_available() else "cpu")
    memory = {"all": True, "none": False, "float32": None}[args.memory]
    sizes = {
        "minilm": dict(latency_seqs=args.latency_seqs, latency_reps=args.latency_reps, batch=args.batch,
                       seq=args.seq, throughput_reps=args.throughput_reps),
        "bert_base": dict(latency_seqs=args.latency_seqs, latency_reps=args.bert_latency_reps, batch=args.bert_batch,
                          seq=args.seq, throughput_reps=args.throughput_reps),
    }
    for extra in ("mpnet_base", "modernbert_base"):  # opt-in rows (--models ...,mpnet_base,modernbert_base)
        sizes[extra] = dict(sizes["bert_base"], memory=False)
    section = {"torch_device": str(device), "torch_threads": torch.get_num_threads(), "sizes": sizes, "results": {}}
    if device.type == "cpu":
        section["gemm_peak"] = gemm_peak(log)
    for key, loader in ENCODER_LOADERS.items():
        if key not in args.models:
            continue
        sizes.setdefault(key, dict(sizes["bert_base"]))
        pair = loader(device)
        for dtype in args.dtypes:
            if dtype != "float32":
                pair.astype(dtype)
            if key in ("minilm", "bert_base"):  # the memory probe knows these two
                sizes[key]["memory"] = memory if memory is not None else dtype == "float32"
            section["results"][f"{key}.{dtype}"] = bench_encoder(pair, key, dtype, sizes[key], log)
            save_partial(section)
        del pair
    if not args.no_anchor:
        section["sentence_anchor"] = bench_sentence_anchor(args.anchor_sentences, 64, args.anchor_reps, device, log)
    if not args.no_cache_probe:
        section["compile_cache"] = bench_compile_cache(log)
    return section


# -- other sections: subprocesses --------------------------------------------------------------------------------
def run_script_section(name: str, args, log) -> dict:
    script = REPO / "scripts" / SECTION_SCRIPTS[name]
    if not script.is_file():
        return {"status": "absent", "script": str(script.relative_to(REPO))}
    help_text = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, cwd=REPO,
                               timeout=300).stdout
    mode = "quick" if args.quick else args.preset
    if args.quick and "--quick" in help_text:
        extra = ["--quick"]
    else:
        extra = list(SECTION_SIZE_ARGS.get(name, {}).get(mode, []))
    unknown = [a for a in extra if a.startswith("--") and a not in help_text]
    if unknown:  # the owner renamed a flag: run with its defaults rather than fail, and say so
        log(f"  {SECTION_SCRIPTS[name]} lacks {unknown}; running it with its defaults")
        extra = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / f"{name}.json"
        cmd = [sys.executable, str(script), *extra, "--out", str(out)]
        log(f"  $ {' '.join(cmd[1:])}")
        start = time.perf_counter()
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=args.section_timeout)
        except subprocess.TimeoutExpired:
            return {"status": f"timed out after {args.section_timeout} s", "args": extra}
        elapsed = round(time.perf_counter() - start, 1)
        if res.returncode or not out.is_file():
            return {"status": f"failed (exit {res.returncode})", "args": extra, "stderr_tail": res.stderr[-3000:]}
        return {"status": "ok", "args": extra, "wall_s": elapsed, "result": json.loads(out.read_text())}


# -- Markdown ----------------------------------------------------------------------------------------------------
def _ratio_cell(ratio, target) -> str:
    if ratio is None:
        return "—"
    if target is None:
        return f"{ratio:.2f}x"
    verdict = "met" if ratio >= target else f"missed by {(target - ratio) / target:.0%}"
    return f"{ratio:.2f}x (target >= {target}x: {verdict})"


def _find_ratios(obj, prefix="") -> list[tuple[str, float]]:
    found = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            path = f"{prefix}.{k}" if prefix else k
            if isinstance(v, (int, float)) and not isinstance(v, bool) and any(
                    w in k for w in ("ratio", "speedup", "mfu", "roofline_fraction")):
                found.append((path, float(v)))
            else:
                found.extend(_find_ratios(v, path))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            label = _row_label(v) if isinstance(v, dict) else ""
            found.extend(_find_ratios(v, f"{prefix}[{label or i}]"))
    return found


def _row_label(row: dict) -> str:
    keys = ("model", "name", "size", "mode", "search", "decoding", "dtype", "batch", "prompt_len", "src_len", "new_tokens",
            "beams", "num_beams")
    return " ".join(f"{k}={row[k]}" for k in keys if isinstance(row.get(k), (str, int)) and not isinstance(row.get(k), bool))


def render_markdown(report: dict) -> str:
    m, v = report["machine"], report["versions"]
    gpu = report["backend"] == "gpu"
    lines = [
        "# Benchmarks: fxformers vs PyTorch transformers",
        "",
        f"Generated by `{report['command']}` on {report['date']}.",
        "",
        f"- machine: {m.get('cpu_model')} ({m.get('cpu_family_model', '')}), {m.get('cpus')} cores, "
        f"SIMD {', '.join(m.get('cpu_simd', [])) or 'unknown'}, {m.get('memory_GiB', '?')} GiB; JAX backend "
        f"`{report['backend']}`{' (' + report['gpu'] + ')' if report.get('gpu') else ''}",
        "- versions: " + ", ".join(f"{k} {val}" for k, val in v.items() if val),
        f"- load average (1 min) at start / end: {report['loadavg_start']} / {report['loadavg_end']} on "
        f"{m.get('cpus')} cores" + (" — **taken under load: other jobs shared the CPU, so absolute figures are low "
                                     "and noisy; ratios are fairer (both sides alternate), but still noisy**"
                                     # the start: at the end the load average includes this run's own threads
                                     if report["loadavg_start"] > 0.5 * (m.get("cpus") or 1)
                                     else ""),
        f"- mode: {'quick (smoke sizes)' if report['quick'] else 'full'}; preset `{report['preset']}`; wall time "
        f"{report['wall_s']} s",
        "",
        "Ratio = transformers time / fxformers time (> 1 means fxformers is faster).",
        "",
    ]
    enc = report["sections"].get("encoder")
    if enc and "results" in enc:
        lines += ["## Encoder inference", "",
                  f"transformers: eager, `{enc['torch_device']}`, {enc['torch_threads']} threads; both frameworks "
                  "alternate in blocks of calls (the first call of each block untimed) on the same inputs.", "",
                  "| model | dtype | measure | fxformers | transformers | ratio |",
                  "|---|---|---|---|---|---|"]
        for key, r in enc["results"].items():
            model = "MiniLM-L6" if key.startswith("minilm") else "BERT-base"
            target = CPU_TARGETS["minilm"] if key.startswith("minilm") and not gpu else None
            if gpu and r["dtype"] == "bfloat16":
                target = 1.5
            for shape, lat in r["latency"].items():
                med = lat["median_ms"]
                lines.append(f"| {model} | {r['dtype']} | latency {shape} (median ms) | {med['fxformers']:.2f} | "
                             f"{med['transformers']:.2f} | {_ratio_cell(lat['ratio'], target)} |")
            t = r["throughput"]
            sps = t["sequences_per_s"]
            lines.append(f"| {model} | {r['dtype']} | throughput {t['shape']} (seq/s) | {sps['fxformers']:.1f} | "
                         f"{sps['transformers']:.1f} | {_ratio_cell(t['ratio'], target)} |")
            if "gflops" in t:
                peak = max((enc.get("gemm_peak") or {}).get("gflops", {}).values(), default=None)
                share = (lambda v: f" ({v / peak:.0%} of peak)") if peak and r["dtype"] == "float32" else (lambda v: "")
                lines.append(f"| {model} | {r['dtype']} | achieved GFLOP/s at {t['shape']} | {t['gflops']['fxformers']:.1f}"
                             f"{share(t['gflops']['fxformers'])} | {t['gflops']['transformers']:.1f}"
                             f"{share(t['gflops']['transformers'])} | — |")
            first = t["first_call_minus_steady_s"]
            lines.append(f"| {model} | {r['dtype']} | compile / first-call overhead {t['shape']} (s) | "
                         f"{first['fxformers']:.2f} | {first['transformers']:.2f} | — |")
            mem = t.get("peak_memory") or {}
            if all(isinstance(mem.get(k), dict) and "peak_MiB" in mem[k] for k in ("fxformers", "transformers")):
                f, p = mem["fxformers"], mem["transformers"]
                lines.append(f"| {model} | {r['dtype']} | peak RSS, fresh process, {t['shape']} (MiB; rise over "
                             f"loaded) | {f['peak_MiB']} ({f['rise_MiB']}) | {p['peak_MiB']} ({p['rise_MiB']}) | — |")
                if "device_peak_MiB" in f and "device_peak_MiB" in p:
                    lines.append(f"| {model} | {r['dtype']} | peak device memory, {t['shape']} (MiB) | "
                                 f"{f['device_peak_MiB']} | {p['device_peak_MiB']} | — |")
        a = enc.get("sentence_anchor")
        if a:
            target = None if gpu else CPU_TARGETS["minilm"]
            lines.append(f"| MiniLM-L6 | float32 | seed anchor: {a['task']} (sentences/s) | "
                         f"{a['sentences_per_s']['fxformers']:.1f} | {a['sentences_per_s']['transformers']:.1f} | "
                         f"{_ratio_cell(a['ratio'], target)} |")
        lines.append("")
        gp = enc.get("gemm_peak")
        if gp:
            lines.append(f"Peak: one float32 {gp['shape']} matrix multiplication runs at {gp['gflops']['fxformers']} "
                         f"GFLOP/s in JAX and {gp['gflops']['transformers']} GFLOP/s in PyTorch on this machine; "
                         "GEMM-bound rows cannot beat PyTorch by more than the gap between its achieved GFLOP/s and "
                         "that peak.")
            lines.append("")
        checks = {k: r["check_max_abs_diff"] for k, r in enc["results"].items()}
        lines.append("Same work on both sides: max |fxformers - transformers| on a 2 x 16 batch: "
                     + ", ".join(f"{k} {val:.1e}" for k, val in checks.items())
                     + (f"; sentence anchor min cosine {a['min_cosine_fx_vs_torch']}" if a else "") + ".")
        lines.append("")
        cc = enc.get("compile_cache")
        if cc:
            lines += ["### Compile-time caching (MiniLM, 1 x 128, first call in a fresh process)", "",
                      "| persistent cache | import + load (s) | first call (s) | second call (s) |", "|---|---|---|---|"]
            for k in ("no_cache", "cold_cache", "warm_cache"):
                lines.append(f"| {k.replace('_', ' ')} | {cc[k]['import_and_load_s']:.2f} | {cc[k]['first_call_s']:.2f} "
                             f"| {cc[k]['second_call_s']:.3f} |")
            lines.append("")
    for name in ALL_SECTIONS[1:]:
        sec = report["sections"].get(name)
        if sec is None:
            continue
        lines += [f"## {name.capitalize()}", ""]
        if sec["status"] != "ok":
            lines += [f"Not measured: `scripts/{SECTION_SCRIPTS[name]}` {sec['status']}.", ""]
            continue
        args = " ".join(sec["args"]) or "(its defaults)"
        lines += [f"`scripts/{SECTION_SCRIPTS[name]} {args}` ({sec['wall_s']} s). Raw figures: `sections.{name}` "
                  "in the JSON.", "", "| figure | value |", "|---|---|"]
        target = CPU_TARGETS.get(name) if not gpu else None
        ratios = _find_ratios(sec["result"])
        for path, ratio in ratios:
            leaf = path.rsplit(".", 1)[-1]
            if "mfu" in leaf:
                cell = f"{ratio:.1f}% MFU"
            elif "roofline_fraction" in leaf:
                cell = f"{100 * ratio:.0f}% of the bandwidth roofline"
            else:
                cell = _ratio_cell(ratio, target)
            lines.append(f"| {path} | {cell} |")
        if not ratios:
            lines.append("| (the script reports no ratio key) | — |")
        lines.append("")
    missing = [n for n in report.get("sections_requested", []) if n not in report["sections"]]
    if missing:
        lines += ["## Not run", "", f"Requested but not reached before the run stopped: {', '.join(missing)}.", ""]
    lines += ["## GPU targets", "", "| target | status |", "|---|---|"]
    for what, target in GPU_TARGETS:
        lines.append(f"| {what} {target} | {'see above' if gpu else 'not measured: no GPU in this session'} |")
    lines.append("")
    return "\n".join(lines)


# -- main --------------------------------------------------------------------------------------------------------
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke sizes (a few minutes on 2 CPU cores)")
    p.add_argument("--sections", default=",".join(ALL_SECTIONS), help="comma-separated subset of " + ",".join(ALL_SECTIONS))
    p.add_argument("--out", default="docs/benchmarks.json")
    p.add_argument("--md", default="docs/benchmarks.md")
    p.add_argument("--preset", choices=("auto", "cpu", "gpu"), default="auto",
                   help="default sizes: gpu = the issue's real shapes, cpu = smaller BERT-base batch (auto: JAX backend)")
    p.add_argument("--models", default="minilm,bert_base",
                   help="encoders to run: minilm, bert_base, electra_base, albert_base, deberta_v3_base")
    p.add_argument("--dtypes", default="float32,bfloat16")
    p.add_argument("--latency-seqs", default=None, help="batch-1 sequence lengths, e.g. 16,128")
    p.add_argument("--latency-reps", type=int, default=None)
    p.add_argument("--batch", type=int, default=None, help="MiniLM throughput batch (default 64)")
    p.add_argument("--bert-batch", type=int, default=None, help="BERT-base throughput batch (default 64 GPU, 8 CPU, 4 quick)")
    p.add_argument("--seq", type=int, default=128, help="throughput sequence length")
    p.add_argument("--throughput-reps", type=int, default=None)
    p.add_argument("--anchor-sentences", type=int, default=512)
    p.add_argument("--anchor-reps", type=int, default=None)
    p.add_argument("--bert-latency-reps", type=int, default=None)
    p.add_argument("--memory", choices=("all", "float32", "none"), default=None,
                   help="peak-memory probes (a fresh process each) for all dtypes, float32 only, or none")
    p.add_argument("--no-anchor", action="store_true")
    p.add_argument("--no-cache-probe", action="store_true")
    p.add_argument("--section-timeout", type=int, default=None, help="seconds per subprocess section")
    p.add_argument("--render-only", action="store_true", help="rewrite --md from the existing --out JSON, run nothing")
    args = p.parse_args(argv)
    import jax

    backend = jax.default_backend()
    if args.preset == "auto":
        args.preset = "gpu" if backend == "gpu" else "cpu"
    gpu, quick = args.preset == "gpu", args.quick
    defaults = {
        "latency_seqs": "16,128",
        "latency_reps": 10 if quick else (50 if gpu else 20),
        "bert_latency_reps": 5 if quick else (50 if gpu else 10),
        "memory": "float32" if quick else "all",
        "batch": 16 if quick and not gpu else 64,
        "bert_batch": 64 if gpu else (4 if quick else 8),
        "throughput_reps": 2 if quick else (10 if gpu else 3),
        "anchor_reps": 1 if quick else 3,
        "section_timeout": 600 if quick else 1200,
    }
    for k, val in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, val)
    args.latency_seqs = [int(s) for s in str(args.latency_seqs).split(",") if s]
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(args.sections) - set(ALL_SECTIONS)
    if unknown:
        p.error(f"unknown sections {sorted(unknown)}; choose from {','.join(ALL_SECTIONS)}")
    args.models = [s.strip() for s in args.models.split(",") if s.strip()]
    args.dtypes = [s.strip() for s in args.dtypes.split(",") if s.strip()]
    args.backend = backend
    return args


def main(argv=None) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = parse_args(argv)
    if args.render_only:
        write_markdown(json.loads(Path(args.out).read_text()), args.md)
        return
    start = time.perf_counter()

    def log(msg):
        print(f"[{time.perf_counter() - start:7.1f}s] {msg}", flush=True)

    import jax

    report = {
        "command": "python scripts/bench.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_info(),
        "versions": versions(),
        "backend": args.backend,
        "gpu": str(jax.devices()[0].device_kind) if args.backend == "gpu" else None,
        "preset": args.preset,
        "quick": args.quick,
        "sections_requested": args.sections,
        "loadavg_start": round(os.getloadavg()[0], 2),
        "sections": {},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def save():  # after every section, so an interrupted run keeps what it measured
        report["loadavg_end"] = round(os.getloadavg()[0], 2)
        report["wall_s"] = round(time.perf_counter() - start, 1)
        out.write_text(json.dumps(report, indent=1) + "\n")
        if args.md:
            write_markdown(report, args.md)

    for name in args.sections:
        log(f"section {name}")
        if name == "encoder":
            report["sections"][name] = run_encoder_section(args, log, save_partial=lambda sec: (
                report["sections"].__setitem__(name, sec), save()))
        else:
            report["sections"][name] = run_script_section(name, args, log)
            log(f"  {report['sections'][name]['status']}")
        save()
    log(f"wrote {out} and {args.md}")


def write_markdown(report: dict, path: str) -> None:
    """The generated tables, then the hand-written notes (docs/benchmarks_notes.md: method, misses, caching)."""
    notes = REPO / "docs" / "benchmarks_notes.md"
    Path(path).write_text(render_markdown(report) + ("\n" + notes.read_text() if notes.is_file() else ""))


if __name__ == "__main__":
    main()
