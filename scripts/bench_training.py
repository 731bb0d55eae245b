#!/usr/bin/env python
"""Training throughput: fxformers' jitted train step vs PyTorch transformers with AMP, side by side in one run.

A BERT sequence-classification model of random weights, AdamW (weight decay 0.01, clipping at 1.0, linear
schedule), dropout on, a fixed random batch. Reports sequences/s for both, their ratio, and model FLOPs
utilisation (MFU) against ``--peak-tflops``.

    # the issue's target size, on a GPU (H100 bf16 dense peak 989 TFLOP/s):
    python scripts/bench_training.py --size base --batch 32 --seq 128 --dtype bf16 --peak-tflops 989
    # a reduced size that finishes in a few minutes on a laptop CPU (the default):
    python scripts/bench_training.py

Model FLOPs per step = 6 x (non-embedding parameters) x tokens + 12 x layers x batch x seq^2 x hidden
(forward + backward of the dense layers and of the attention scores/values), the usual MFU convention.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

SIZES = {
    # name: (hidden, layers, heads, intermediate)
    "base": (768, 12, 12, 3072),
    "small": (512, 4, 8, 2048),
    "mini": (256, 4, 4, 1024),
}


def model_flops_per_step(hidden: int, layers: int, intermediate: int, batch: int, seq: int, num_labels: int = 2) -> float:
    per_layer = 4 * hidden * hidden + 2 * hidden * intermediate  # q, k, v, out + the two feed-forward matmuls
    dense = layers * per_layer + hidden * hidden + hidden * num_labels  # + pooler + classifier
    tokens = batch * seq
    return 6.0 * dense * tokens + 12.0 * layers * batch * seq * seq * hidden


def bench_fxformers(cfg: dict, batch: int, seq: int, dtype: str, steps: int, warmup: int) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from fxformers.models.bert.configuration import BertConfig
    from fxformers.models.bert.modeling import BertForSequenceClassification
    from fxformers.optimization import create_optimizer
    from fxformers.training import TrainState, make_train_step

    model = BertForSequenceClassification(BertConfig(**cfg), seed=0)
    tx, schedule = create_optimizer(1e-4, num_training_steps=steps + warmup, num_warmup_steps=0, weight_decay=0.01)
    step = make_train_step(model, tx, schedule=schedule, compute_dtype=jnp.bfloat16 if dtype == "bf16" else None)
    state = TrainState.create(model.params, tx, seed=0)
    rng = np.random.default_rng(0)
    inputs = {
        "input_ids": jnp.asarray(rng.integers(0, cfg["vocab_size"], (batch, seq)), jnp.int32),
        "attention_mask": jnp.ones((batch, seq), jnp.int32),
        "labels": jnp.asarray(rng.integers(0, 2, (batch,)), jnp.int32),
    }
    t0 = time.perf_counter()
    state, metrics = step(state, inputs)
    jax.block_until_ready(metrics)
    compile_s = time.perf_counter() - t0
    for _ in range(warmup):
        state, metrics = step(state, inputs)
    jax.block_until_ready(metrics)
    t0 = time.perf_counter()
    for _ in range(steps):
        state, metrics = step(state, inputs)
    jax.block_until_ready(metrics)
    elapsed = time.perf_counter() - t0
    return {"seq_per_s": batch * steps / elapsed, "step_ms": 1000 * elapsed / steps, "first_step_s": compile_s,
            "loss": float(metrics["loss"]), "device": str(jax.devices()[0].device_kind), "jax": jax.__version__}


def bench_torch(cfg: dict, batch: int, seq: int, dtype: str, steps: int, warmup: int) -> dict:
    import torch
    import transformers

    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(transformers.BertConfig(**cfg)).to(device).train()
    decay = [p for n, p in model.named_parameters() if not ("bias" in n or "LayerNorm" in n)]
    rest = [p for n, p in model.named_parameters() if "bias" in n or "LayerNorm" in n]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": rest, "weight_decay": 0.0}], lr=1e-4)
    scheduler = transformers.get_linear_schedule_with_warmup(optimizer, 0, steps + warmup + 1)
    g = torch.Generator().manual_seed(0)
    inputs = {
        "input_ids": torch.randint(0, cfg["vocab_size"], (batch, seq), generator=g).to(device),
        "attention_mask": torch.ones(batch, seq, dtype=torch.long, device=device),
        "labels": torch.randint(0, 2, (batch,), generator=g).to(device),
    }
    amp = torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=dtype == "bf16")

    def one_step():
        with amp:
            loss = model(**inputs).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for _ in range(max(1, warmup)):
        one_step()
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = one_step()
    sync()
    elapsed = time.perf_counter() - t0
    name = torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu"
    return {"seq_per_s": batch * steps / elapsed, "step_ms": 1000 * elapsed / steps, "loss": float(loss.detach()),
            "device": name, "torch": torch.__version__, "transformers": transformers.__version__}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="mini")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--dtype", choices=["bf16", "fp32"], default="bf16")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--vocab", type=int, default=30522)
    parser.add_argument("--peak-tflops", type=float, default=None, help="the device's peak (H100 bf16 dense: 989)")
    parser.add_argument("--skip-torch", action="store_true")
    parser.add_argument("--out", default=None, help="also write the results as JSON here")
    args = parser.parse_args()

    hidden, layers, heads, intermediate = SIZES[args.size]
    cfg = dict(vocab_size=args.vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
               intermediate_size=intermediate, max_position_embeddings=max(512, args.seq), num_labels=2)
    flops = model_flops_per_step(hidden, layers, intermediate, args.batch, args.seq)
    result = {"size": args.size, "config": cfg, "batch": args.batch, "seq": args.seq, "dtype": args.dtype,
              "steps": args.steps, "model_tflops_per_step": flops / 1e12}
    result["fxformers"] = bench_fxformers(cfg, args.batch, args.seq, args.dtype, args.steps, args.warmup)
    if not args.skip_torch:
        result["pytorch_amp"] = bench_torch(cfg, args.batch, args.seq, args.dtype, args.steps, args.warmup)
        result["speedup_seq_per_s"] = result["fxformers"]["seq_per_s"] / result["pytorch_amp"]["seq_per_s"]
    if args.peak_tflops:
        for side in ("fxformers", "pytorch_amp"):
            if side in result:
                achieved = flops * result[side]["seq_per_s"] / args.batch
                result[side]["mfu_pct"] = 100 * achieved / (args.peak_tflops * 1e12)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
