"""Scale-out figures: peak host memory of loading (fxformers next to PyTorch transformers, same files, one run) and
parameter memory per device for each mesh layout of a Llama-shaped model (measured next to the computed figure).

    python scripts/bench_mesh.py                    # both sections, writes docs/benchmarks_mesh.md
    python scripts/bench_mesh.py --section layouts  # only the per-device table

Every load runs in a fresh process (scripts/memory_probe.py); the layouts run on 8 simulated CPU devices (on a GPU
host, on the real devices: pass --devices 0).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROBE = REPO / "scripts" / "memory_probe.py"

LOADS = [  # (label, checkpoint, class, fxformers extra args, torch extra args or None)
    ("BERT-base, one safetensors file", "bert", "BertModel", [], []),
    ("BERT-base, 100 MB shards", "bert-sharded", "BertModel", [], []),
    ("BERT-base into a new classification head", "bert", "BertForSequenceClassification", ["--head", "3"],
     ["--head", "3"]),
    ("Llama-shaped 495 MB", "llama", "LlamaForCausalLM", [], []),
    ("Llama-shaped, onto a (fsdp 2, model 4) mesh of 8 devices", "llama", "LlamaForCausalLM",
     ["--mesh", "fsdp=2,model=4", "--devices", "8"], None),
    ("Llama-shaped fp32 file, dtype bfloat16", "llama", "LlamaForCausalLM", ["--dtype", "bfloat16"],
     ["--dtype", "bfloat16"]),
]

LAYOUTS = [dict(data=8), dict(fsdp=8), dict(model=8), dict(data=2, model=4), dict(fsdp=2, model=4),
           dict(data=2, fsdp=2, model=2)]


def run_probe(*args: str) -> dict:
    proc = subprocess.run([sys.executable, str(PROBE), *args], capture_output=True, text=True, cwd=REPO)
    if proc.returncode:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1]) if args[0] != "make" else {}


def memory_section(root: Path) -> list[str]:
    run_probe("make", "bert-base", str(root / "bert"))
    run_probe("make", "bert-base", str(root / "bert-sharded"), "--shard-size", "100MB")
    run_probe("make", "llama-500m", str(root / "llama"))
    lines = ["| load | checkpoint | fxformers peak / size | transformers peak / size |", "|---|---|---|---|"]
    for label, folder, cls, ours, theirs in LOADS:
        fx = run_probe("load", str(root / folder), "--class", cls, *ours)
        pt = run_probe("torch", str(root / folder), "--class", cls, *theirs) if theirs is not None else None
        row = f"| {label} | {fx['checkpoint_bytes'] / 1e6:.0f} MB | {fx['ratio']:.2f}x | "
        row += f"{pt['ratio']:.2f}x |" if pt else "n/a (no mesh) |"
        lines.append(row)
        print(row, flush=True)
    return lines


LAYOUT_SCRIPT = """
import json, jax, numpy as np
import fxformers
from fxformers.convert import flatten
from fxformers.sharding import bytes_per_device, estimate_bytes_per_device
folder, layouts = {folder!r}, {layouts!r}
rows = []
for sizes in layouts:
    mesh = fxformers.create_mesh(**sizes)
    model = fxformers.LlamaForCausalLM.from_pretrained(folder, mesh=mesh)
    measured = max(bytes_per_device(model.params).values())
    shapes = {{p: v.shape for p, v in flatten(model.params).items()}}
    computed = estimate_bytes_per_device(model.resolved_partition_rules(), shapes, dict(mesh.shape), 4)
    total = sum(v.nbytes for v in jax.tree_util.tree_leaves(model.params))
    rows.append(dict(layout=sizes, measured=measured, computed=computed, total=total))
    del model
print(json.dumps(rows))
"""


def layouts_section(root: Path, devices: int) -> list[str]:
    if not (root / "llama").exists():
        run_probe("make", "llama-500m", str(root / "llama"))
    env = dict(os.environ)
    if devices:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    script = LAYOUT_SCRIPT.format(folder=str(root / "llama"), layouts=LAYOUTS)
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True, env=env,
                          cwd=REPO)
    if proc.returncode:
        raise RuntimeError(proc.stderr[-3000:])
    rows = json.loads(proc.stdout.strip().splitlines()[-1])
    lines = ["| layout (8 devices) | params per device, measured | computed from the config | fraction of the model |",
             "|---|---|---|---|"]
    for r in rows:
        layout = " x ".join(f"{k} {v}" for k, v in r["layout"].items())
        lines.append(f"| {layout} | {r['measured'] / 1e6:.1f} MB | {r['computed'] / 1e6:.1f} MB | "
                     f"{r['measured'] / r['total']:.3f} |")
        print(lines[-1], flush=True)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--section", choices=["memory", "layouts", "all"], default="all")
    parser.add_argument("--devices", type=int, default=8, help="simulated CPU devices for the layouts (0: real ones)")
    parser.add_argument("--out", default=str(REPO / "docs" / "benchmarks_mesh.md"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        text = ["# Scale-out benchmarks", "", "Produced by `python scripts/bench_mesh.py` (fresh process per load; "
                "peak RSS over the RSS after the imports and backend start, against the checkpoint's bytes; "
                "transformers' weights touched after loading, since it maps the file lazily).", ""]
        if args.section in ("memory", "all"):
            text += ["## Peak host memory of from_pretrained", ""] + memory_section(root) + [""]
        if args.section in ("layouts", "all"):
            text += ["## Llama-shaped model (495 MB): parameters per device by layout", ""]
            text += layouts_section(root, args.devices) + [""]
    Path(args.out).write_text("\n".join(text))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
