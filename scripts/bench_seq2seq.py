"""Benchmark: encoder-decoder generate() (T5, BART), fxformers against transformers.generate, side by side in one run.

Both sides get the same random weights (a torch model is built from the config, saved, and loaded by fxformers).
Each run encodes a ``--src-len`` source once and decodes exactly ``--new-tokens`` tokens (no EOS in the config), with
greedy search and with beam search (``--beams``), timed after a warm-up run (fxformers' warm-up includes its one
compilation per shape). Tokens/s counts generated tokens of the returned sequences (batch x new tokens).

    # CPU run (reduced shapes)
    python scripts/bench_seq2seq.py --preset cpu --out docs/bench_seq2seq_cpu.json
    # GPU run at the real sizes: t5-small / flan-t5-base / bart-base shapes, batch 1 and 32, bf16
    python scripts/bench_seq2seq.py --preset gpu --dtype bfloat16 --out bench_seq2seq_gpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

SHAPES = {
    "t5-small": dict(kind="t5", vocab_size=32128, d_model=512, d_kv=64, d_ff=2048, num_layers=6, num_heads=8),
    "flan-t5-base": dict(kind="t5", vocab_size=32128, d_model=768, d_kv=64, d_ff=2048, num_layers=12, num_heads=12,
                         feed_forward_proj="gated-gelu", tie_word_embeddings=False),
    "bart-base": dict(kind="bart", vocab_size=50265, d_model=768, encoder_layers=6, decoder_layers=6,
                      encoder_attention_heads=12, decoder_attention_heads=12, encoder_ffn_dim=3072,
                      decoder_ffn_dim=3072, max_position_embeddings=1024),
    # reduced shapes for CPU runs
    "t5-mini": dict(kind="t5", vocab_size=32128, d_model=256, d_kv=32, d_ff=1024, num_layers=4, num_heads=8,
                    feed_forward_proj="gated-gelu", tie_word_embeddings=False),
    "bart-mini": dict(kind="bart", vocab_size=50265, d_model=256, encoder_layers=3, decoder_layers=3,
                      encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=1024,
                      decoder_ffn_dim=1024, max_position_embeddings=1024),
}
PRESETS = {
    "cpu": dict(models=["t5-mini", "bart-mini", "t5-small"], batch_sizes=[1, 8], src_len=64, new_tokens=32, beams=4,
                repeats=2),
    "gpu": dict(models=["t5-small", "flan-t5-base", "bart-base"], batch_sizes=[1, 32], src_len=256, new_tokens=128,
                beams=4, repeats=3),
}


def build(name: str, dtype: str, folder: str):
    import torch
    import transformers

    import fxformers.auto as auto

    spec = dict(SHAPES[name])
    kind = spec.pop("kind")
    if kind == "t5":  # no EOS: every run decodes exactly new_tokens
        config = transformers.T5Config(**spec, eos_token_id=None, pad_token_id=0, decoder_start_token_id=0)
        tm = transformers.T5ForConditionalGeneration(config)
    else:
        config = transformers.BartConfig(**spec, eos_token_id=None, forced_eos_token_id=None, bos_token_id=None,
                                         pad_token_id=1, decoder_start_token_id=2)
        tm = transformers.BartForConditionalGeneration(config)
    tm.eval()
    tm.save_pretrained(folder)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tm = tm.to(device=device, dtype=getattr(torch, dtype))
    fm = auto.AutoModelForSeq2SeqLM.from_pretrained(folder, dtype=getattr(jnp, dtype))
    return tm, fm, device


def time_fx(fm, ids, settings, repeats):
    run = lambda: np.asarray(fm.generate(ids, **settings))
    out = run()  # compile
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = run()
        times.append(time.perf_counter() - start)
    return min(times), out


def time_torch(tm, ids, settings, repeats, device):
    import torch

    x = torch.tensor(ids, device=device)
    mask = torch.ones_like(x)
    gen = lambda: tm.generate(x, attention_mask=mask, do_sample=False, **settings)
    with torch.no_grad():
        out = gen()
        times = []
        for _ in range(repeats):
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            out = gen()
            if device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    return min(times), out.cpu().numpy()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    parser.add_argument("--models", nargs="+", choices=sorted(SHAPES))
    parser.add_argument("--batch-sizes", nargs="+", type=int)
    parser.add_argument("--src-len", type=int)
    parser.add_argument("--new-tokens", type=int)
    parser.add_argument("--beams", type=int, help="num_beams of the beam-search runs (0 skips them)")
    parser.add_argument("--repeats", type=int)
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--skip-torch", action="store_true")
    parser.add_argument("--out", default="bench_seq2seq.json")
    args = parser.parse_args()
    settings = dict(PRESETS[args.preset])
    for key in ("models", "batch_sizes", "src_len", "new_tokens", "beams", "repeats"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)

    import torch

    torch.manual_seed(0)
    results = []
    device = "cpu"
    for name in settings["models"]:
        with tempfile.TemporaryDirectory() as folder:
            tm, fm, device = build(name, args.dtype, folder)
            for batch in settings["batch_sizes"]:
                rng = np.random.RandomState(0)
                ids = rng.randint(3, fm.config.vocab_size, (batch, settings["src_len"])).astype(np.int32)
                n = settings["new_tokens"]
                searches = [("greedy", dict(max_new_tokens=n))]
                if settings["beams"]:
                    searches.append((f"beam{settings['beams']}", dict(max_new_tokens=n, num_beams=settings["beams"])))
                for search, kwargs in searches:
                    t_fx, out_fx = time_fx(fm, ids, kwargs, settings["repeats"])
                    row = {"model": name, "search": search, "batch": batch, "src_len": settings["src_len"],
                           "new_tokens": n, "dtype": args.dtype, "fxformers_s": t_fx,
                           "fxformers_tokens_per_s": batch * n / t_fx}
                    if not args.skip_torch:
                        t_pt, out_pt = time_torch(tm, ids, kwargs, settings["repeats"], device)
                        row.update(transformers_s=t_pt, transformers_tokens_per_s=batch * n / t_pt,
                                   speedup=t_pt / t_fx, same_tokens=bool(np.array_equal(out_fx, out_pt)))
                    print(json.dumps(row), flush=True)
                    results.append(row)
            del tm, fm
    report = {
        "preset": args.preset, "settings": settings, "jax_backend": jax.default_backend(),
        "jax_devices": [str(d) for d in jax.devices()], "torch_device": device, "machine": platform.platform(),
        "cpu_count": os.cpu_count(), "load_average": os.getloadavg(), "results": results,
    }
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
