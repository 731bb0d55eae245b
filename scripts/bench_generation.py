"""Benchmark: fxformers generate() against transformers.generate, side by side in one run.

Both sides get the same random weights (a torch model is built from the config, saved, and loaded by fxformers),
greedy decoding of exactly ``--new-tokens`` tokens (no EOS in the config), timed after a warm-up run.

    # CPU smoke run (small prompt/new-token counts, reduced Llama shape)
    python scripts/bench_generation.py --preset cpu --out bench_generation_cpu.json
    # GPU run at the real sizes: GPT-2 small and a Llama-3.2-1B-shaped model, batch 1 and 32, bf16
    python scripts/bench_generation.py --preset gpu --dtype bfloat16 --bandwidth 3350 --out bench_generation_h100.json

For the Llama-shaped model the report includes the decode step's share of the memory-bandwidth roofline:
(bytes of weights + KV cache read per step) / bandwidth, over the measured time per decode step (from runs with
1 and with N new tokens). ``--bandwidth`` is in GB/s (measured copy bandwidth of the device).
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
    # GPT-2 small (124M)
    "gpt2": dict(kind="gpt2", vocab_size=50257, n_embd=768, n_layer=12, n_head=12, n_positions=1024),
    # Llama 3.2 1B shape
    "llama-1b": dict(kind="llama", vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                     num_attention_heads=32, num_key_value_heads=8, head_dim=64, max_position_embeddings=8192,
                     tie_word_embeddings=True, rope_theta=500000.0),
    # a reduced Llama shape for CPU runs
    "llama-small": dict(kind="llama", vocab_size=32000, hidden_size=512, intermediate_size=1408, num_hidden_layers=4,
                        num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=2048),
    # Gemma 1/2/3 and Qwen3: reduced shapes for CPU (window shorter than prompt + new tokens), real ones for GPU
    "gemma-small": dict(kind="GemmaConfig", vocab_size=32000, hidden_size=512, intermediate_size=1408,
                        num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=1, head_dim=64),
    "gemma2-small": dict(kind="Gemma2Config", vocab_size=32000, hidden_size=512, intermediate_size=1408,
                         num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=2, head_dim=64,
                         query_pre_attn_scalar=64, sliding_window=16),
    "gemma3-small": dict(kind="Gemma3TextConfig", vocab_size=32000, hidden_size=512, intermediate_size=1408,
                         num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=2, head_dim=64,
                         query_pre_attn_scalar=64, sliding_window=16, sliding_window_pattern=2),
    "qwen3-small": dict(kind="Qwen3Config", vocab_size=32000, hidden_size=512, intermediate_size=1408,
                        num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=2, head_dim=64),
    # Gemma 3 1B and Qwen3 0.6B shapes
    "gemma3-1b": dict(kind="Gemma3TextConfig", vocab_size=262144, hidden_size=1152, intermediate_size=6912,
                      num_hidden_layers=26, num_attention_heads=4, num_key_value_heads=1, head_dim=256,
                      query_pre_attn_scalar=256, sliding_window=512, sliding_window_pattern=6,
                      max_position_embeddings=32768),
    "qwen3-0.6b": dict(kind="Qwen3Config", vocab_size=151936, hidden_size=1024, intermediate_size=3072,
                       num_hidden_layers=28, num_attention_heads=16, num_key_value_heads=8, head_dim=128,
                       max_position_embeddings=40960, tie_word_embeddings=True,
                       rope_parameters=dict(rope_type="default", rope_theta=1000000.0)),
    # issue 14's families: reduced shapes for CPU, ~1-2B shapes for GPU (8 experts top-2 / 32 experts top-4)
    "mixtral-small": dict(kind="MixtralConfig", vocab_size=32000, hidden_size=512, intermediate_size=704, num_hidden_layers=4,
                          num_attention_heads=8, num_key_value_heads=2, num_local_experts=8, num_experts_per_tok=2),
    "mixtral-1b": dict(kind="MixtralConfig", vocab_size=32000, hidden_size=1024, intermediate_size=2048,
                       num_hidden_layers=16, num_attention_heads=16, num_key_value_heads=4, num_local_experts=8,
                       num_experts_per_tok=2),
    "qwen3moe-small": dict(kind="Qwen3MoeConfig", vocab_size=32000, hidden_size=512, intermediate_size=1408,
                           moe_intermediate_size=256, num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=2,
                           head_dim=64, num_experts=16, num_experts_per_tok=4, norm_topk_prob=True),
    "qwen3moe-1b": dict(kind="Qwen3MoeConfig", vocab_size=151936, hidden_size=1024, intermediate_size=3072,
                        moe_intermediate_size=384, num_hidden_layers=16, num_attention_heads=16, num_key_value_heads=4,
                        head_dim=128, num_experts=32, num_experts_per_tok=4, norm_topk_prob=True),
    "phi3-small": dict(kind="Phi3Config", vocab_size=32064, hidden_size=512, intermediate_size=1408, num_hidden_layers=4,
                       num_attention_heads=8, num_key_value_heads=8, max_position_embeddings=2048),
    "phi3-mini": dict(kind="Phi3Config", vocab_size=32064, hidden_size=3072, intermediate_size=8192, num_hidden_layers=32,
                      num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096),
}
PRESETS = {
    "cpu": dict(models=["gpt2", "llama-small", "gemma-small", "gemma2-small", "gemma3-small", "qwen3-small"],
                batch_sizes=[1, 4], prompt_len=16, new_tokens=16, repeats=2),
    "gpu": dict(models=["gpt2", "llama-1b", "gemma3-1b", "qwen3-0.6b"], batch_sizes=[1, 32], prompt_len=32,
                new_tokens=256, repeats=3),
    "families-cpu": dict(models=["mixtral-small", "qwen3moe-small", "phi3-small"], batch_sizes=[1, 4], prompt_len=16,
                         new_tokens=16, repeats=2),
    "families-gpu": dict(models=["mixtral-1b", "qwen3moe-1b", "phi3-mini"], batch_sizes=[1, 32], prompt_len=32,
                         new_tokens=256, repeats=3),
}


def build(name: str, dtype: str, folder: str):
    import torch
    import transformers

    import fxformers

    spec = dict(SHAPES[name])
    kind = spec.pop("kind")
    common = dict(bos_token_id=None, eos_token_id=None, pad_token_id=0)
    if kind == "gpt2":
        config = transformers.GPT2Config(**spec, **common)
        tm = transformers.GPT2LMHeadModel(config)
    elif kind != "llama":  # a transformers config class name (Gemma, Qwen3 ...)
        config = getattr(transformers, kind)(**spec, **common)
        tm = transformers.AutoModelForCausalLM.from_config(config)
    else:
        tm = transformers.LlamaForCausalLM(transformers.LlamaConfig(**spec, **common))
    tm.eval()
    tm.save_pretrained(folder)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tm = tm.to(device=device, dtype=getattr(torch, dtype))
    fm = fxformers.AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(jnp, dtype))
    return tm, fm, device


def time_fx(fm, ids, new_tokens, repeats):
    run = lambda: np.asarray(fm.generate(ids, max_new_tokens=new_tokens, min_new_tokens=None))
    out = run()  # compile
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = run()
        times.append(time.perf_counter() - start)
    return min(times), out


def time_torch(tm, ids, new_tokens, repeats, device):
    import torch

    x = torch.tensor(ids, device=device)
    mask = torch.ones_like(x)
    gen = lambda: tm.generate(x, attention_mask=mask, max_new_tokens=new_tokens, do_sample=False)
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


def roofline(fm, batch, prompt_len, new_tokens, t_full, t_prefill, bandwidth_gbs):
    """Share of the bandwidth roofline reached by one decode step (weights + mean KV cache read per step)."""
    c = fm.config
    itemsize = jnp.dtype(fm.dtype).itemsize
    weight_bytes = fm.num_parameters() * itemsize
    mean_len = prompt_len + new_tokens / 2
    kv_bytes = 2 * c.num_hidden_layers * batch * mean_len * c.num_key_value_heads * c.head_dim * itemsize
    step = (t_full - t_prefill) / max(new_tokens - 1, 1)
    ideal = (weight_bytes + kv_bytes) / (bandwidth_gbs * 1e9)
    return {"decode_step_s": step, "bytes_per_step": weight_bytes + kv_bytes, "ideal_step_s": ideal,
            "roofline_fraction": ideal / step if step > 0 else None}


def measure_bandwidth(size_mb: int = 256, repeats: int = 5) -> float:
    """Copy bandwidth of the default JAX device in GB/s, counting bytes read plus bytes written."""
    x = jnp.ones((size_mb * 2**20 // 4,), jnp.float32)
    copy = jax.jit(lambda a: a * 1.0001)
    copy(x).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        copy(x).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2 * x.nbytes / best / 1e9


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    parser.add_argument("--models", nargs="+", choices=sorted(SHAPES))
    parser.add_argument("--batch-sizes", nargs="+", type=int)
    parser.add_argument("--prompt-len", type=int)
    parser.add_argument("--new-tokens", type=int)
    parser.add_argument("--repeats", type=int)
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--bandwidth", type=float, default=None, help="device memory bandwidth in GB/s (roofline)")
    parser.add_argument("--measure-bandwidth", action="store_true",
                        help="measure the JAX device's copy bandwidth (bytes read + written) and use it as --bandwidth")
    parser.add_argument("--skip-torch", action="store_true")
    parser.add_argument("--out", default="bench_generation.json")
    args = parser.parse_args()
    settings = dict(PRESETS[args.preset])
    for key in ("models", "batch_sizes", "prompt_len", "new_tokens", "repeats"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)

    import torch

    if args.measure_bandwidth:
        args.bandwidth = measure_bandwidth()
        print(f"measured copy bandwidth: {args.bandwidth:.1f} GB/s", flush=True)
    torch.manual_seed(0)
    results = []
    for name in settings["models"]:
        with tempfile.TemporaryDirectory() as folder:
            tm, fm, device = build(name, args.dtype, folder)
            for batch in settings["batch_sizes"]:
                rng = np.random.RandomState(0)
                ids = rng.randint(1, fm.config.vocab_size, (batch, settings["prompt_len"])).astype(np.int32)
                n = settings["new_tokens"]
                t_fx, out_fx = time_fx(fm, ids, n, settings["repeats"])
                row = {"model": name, "batch": batch, "prompt_len": settings["prompt_len"], "new_tokens": n,
                       "dtype": args.dtype, "fxformers_s": t_fx, "fxformers_tokens_per_s": batch * n / t_fx}
                if not args.skip_torch:
                    t_pt, out_pt = time_torch(tm, ids, n, settings["repeats"], device)
                    row.update(transformers_s=t_pt, transformers_tokens_per_s=batch * n / t_pt, speedup=t_pt / t_fx,
                               same_tokens=bool(np.array_equal(out_fx, out_pt)))
                if args.bandwidth and SHAPES[name]["kind"] == "llama":
                    t_prefill, _ = time_fx(fm, ids, 1, settings["repeats"])
                    row["roofline"] = roofline(fm, batch, settings["prompt_len"], n, t_fx, t_prefill, args.bandwidth)
                print(json.dumps(row), flush=True)
                results.append(row)
            del tm, fm
    report = {
        "preset": args.preset, "settings": settings, "bandwidth_gbs": args.bandwidth,
        "jax_backend": jax.default_backend(), "jax_devices": [str(d) for d in jax.devices()],
        "torch_device": device, "machine": platform.platform(), "cpu_count": os.cpu_count(), "results": results,
    }
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
