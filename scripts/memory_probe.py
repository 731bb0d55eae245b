"""Peak host memory of loading a checkpoint, measured in a fresh process (used by scripts/bench_mesh.py and the tests).

    python scripts/memory_probe.py make bert-base OUT [--shard-size 100MB]     # a random BERT-base BertModel folder
    python scripts/memory_probe.py make llama-500m OUT                         # a random Llama-shaped causal LM
    python scripts/memory_probe.py load OUT --class BertModel [--mesh data=2,model=4 --devices 8] [--dtype bfloat16]
                                                              [--head N]
    python scripts/memory_probe.py torch OUT --class BertModel                 # the same load in PyTorch transformers

``load``/``torch`` print one JSON line: the checkpoint's bytes on disk, the process's RSS before the load (after the
imports and, for fxformers, after the JAX backend has started), the peak RSS during the load (``VmHWM``), and
``ratio`` = (peak - before) / checkpoint bytes. ``make`` builds checkpoints without torch: the model's own shapes
(``param_shapes``) filled with random numbers, saved by ``save_pretrained`` (so with PyTorch key names).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
from pathlib import Path

SHAPES = {
    # BERT-base (bert-base-uncased's sizes): 110M parameters, 438 MB in float32
    "bert-base": ("bert", "BertModel", dict(vocab_size=30522, hidden_size=768, num_hidden_layers=12,
                                            num_attention_heads=12, intermediate_size=3072)),
    # a Llama-shaped decoder of ~500 MB in float32 (untied head, GQA)
    "llama-500m": ("llama", "LlamaForCausalLM", dict(vocab_size=32000, hidden_size=1024, num_hidden_layers=5,
                                                     num_attention_heads=16, num_key_value_heads=8,
                                                     intermediate_size=2816, tie_word_embeddings=False)),
}


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    """This process's peak RSS: VmHWM, the high-water mark of its own address space. (Not ``ru_maxrss``: Linux keeps
    that across exec, so a probe started from a large parent, e.g. a pytest worker, would report the parent's peak.)"""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # not Linux: kB on most systems


def checkpoint_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).iterdir() if p.suffix in (".safetensors", ".bin"))


def make(kind: str, out: str, shard_size: str) -> None:
    import importlib

    import jax
    import numpy as np

    from fxformers.convert import unflatten

    package, class_name, config = SHAPES[kind]
    modeling = importlib.import_module(f"fxformers.models.{package}.modeling")
    cls = getattr(modeling, class_name)
    model = cls._from_parts(cls.config_class(**config), None, "float32")
    rng = np.random.default_rng(0)
    params = {p: (rng.standard_normal(s.shape, dtype=np.float32) * 0.02) for p, s in model.param_shapes().items()}
    model.params = unflatten(params)
    model.save_pretrained(out, max_shard_size=shard_size)
    del jax


def load(folder: str, class_name: str, mesh_spec: str | None, dtype: str | None, head: int | None, torch: bool) -> dict:
    if torch:
        import torch as _torch  # noqa: F401
        import transformers

        cls = getattr(transformers, class_name)
        kwargs = {"dtype": getattr(_torch, dtype)} if dtype else {}
        if head:
            kwargs["num_labels"] = head
        before = rss_bytes()
        model = cls.from_pretrained(folder, **kwargs)
        with _torch.no_grad():  # touch every weight: transformers maps the file lazily
            sum(float(p.sum()) for p in model.parameters())
    else:
        import jax

        import fxformers

        cls = getattr(fxformers, class_name)
        mesh = None
        if mesh_spec:
            sizes = {k: int(v) for k, v in (item.split("=") for item in mesh_spec.split(","))}
            mesh = fxformers.create_mesh(**sizes)
        jax.device_put(0.0).block_until_ready()  # the backend is part of the baseline, not of the load
        kwargs = {"num_labels": head} if head else {}
        before = rss_bytes()
        model = cls.from_pretrained(folder, mesh=mesh, dtype=dtype, **kwargs)
        jax.block_until_ready(model.params)
    peak = peak_rss_bytes()
    size = checkpoint_bytes(Path(folder))
    return {"checkpoint_bytes": size, "rss_before": before, "peak_rss": peak, "ratio": (peak - before) / size}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("make")
    m.add_argument("kind", choices=sorted(SHAPES))
    m.add_argument("out")
    m.add_argument("--shard-size", default="5GB")
    for name in ("load", "torch"):
        p = sub.add_parser(name)
        p.add_argument("folder")
        p.add_argument("--class", dest="class_name", required=True)
        p.add_argument("--mesh", default=None, help="e.g. data=2,model=4 (needs that many devices)")
        p.add_argument("--dtype", default=None)
        p.add_argument("--head", type=int, default=None, help="num_labels of a new classification head")
        p.add_argument("--devices", type=int, default=None, help="simulated CPU devices (for --mesh)")
    args = parser.parse_args(argv)
    if getattr(args, "devices", None):
        os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.devices}"
    if args.command == "make":
        make(args.kind, args.out, args.shard_size)
        return
    result = load(args.folder, args.class_name, args.mesh, args.dtype, args.head, torch=args.command == "torch")
    print(json.dumps(result))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
