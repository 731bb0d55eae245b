"""PEFT's adapter files: ``adapter_config.json`` + ``adapter_model.safetensors`` (or ``adapter_model.bin``).

Keys are ``base_model.model.<PyTorch module>.lora_A.weight`` [r, in] / ``.lora_B.weight`` [out, r] for adapted
layers and ``base_model.model.<PyTorch key>`` for modules_to_save, exactly as PEFT's ``save_pretrained`` writes them
(the adapter name is not part of the saved keys). PyTorch names come from the architecture's conversion table.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..checkpoints import load_safetensors, load_torch_bin
from ..checkpoints.safetensors_io import write_safetensors
from ..convert import flatten
from .config import LoraConfig
from .targeting import Targets, pt_names

PREFIX = "base_model.model."
WEIGHTS_NAME = "adapter_model.safetensors"
WEIGHTS_BIN_NAME = "adapter_model.bin"


def read_adapter(folder: str | os.PathLike) -> tuple[LoraConfig, dict[str, np.ndarray]]:
    """(config, {PEFT key: array}) of an adapter folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder; PeftModel.from_pretrained needs a local adapter folder.")
    config = LoraConfig.from_pretrained(folder)
    if (folder / WEIGHTS_NAME).is_file():
        weights = load_safetensors(folder / WEIGHTS_NAME)
    elif (folder / WEIGHTS_BIN_NAME).is_file():
        weights = load_torch_bin(folder / WEIGHTS_BIN_NAME)
    else:
        raise FileNotFoundError(f"{folder} has no {WEIGHTS_NAME} (or {WEIGHTS_BIN_NAME}).")
    return config, weights


def adapter_leaves_from_peft(model: Any, targets: Targets, weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """{flax path: float32 array} of an adapter's PEFT-named weights; every missing, unexpected or mis-shaped key
    is reported at once."""
    by_module = {t.module: t for t in targets.layers}
    names = pt_names(model.base_model_class, model.config, {p: None for p in targets.saved})
    saved = {key: (path, rule) for path, (key, rule) in names.items()}
    leaves, unexpected, mismatched = {}, [], []
    for raw, value in weights.items():
        key = raw[len(PREFIX):] if raw.startswith(PREFIX) else raw
        value = np.asarray(value, np.float32)
        for leaf in ("lora_A", "lora_B"):
            suffix = f".{leaf}.weight"
            if key.endswith(suffix) and key[: -len(suffix)] in by_module:
                t = by_module[key[: -len(suffix)]]
                r = value.shape[0] if leaf == "lora_A" else value.shape[-1]
                want = (r, t.shape[0]) if leaf == "lora_A" else (t.shape[1], r)
                if value.shape != want:
                    mismatched.append(f"{raw} {value.shape} (layer is [in={t.shape[0]}, out={t.shape[1]}])")
                leaves[f"{t.scope}/{leaf}"] = np.ascontiguousarray(value.T)  # PEFT [r, in] / [out, r] -> [in, r] / [r, out]
                break
        else:
            if key in saved:
                path, rule = saved[key]
                leaves[path] = rule.transform.to_flax(value)
            else:
                unexpected.append(raw)
    expected = [f"{t.scope}/{leaf}" for t in targets.layers for leaf in ("lora_A", "lora_B")] + list(targets.saved)
    missing = [p for p in expected if p not in leaves]
    if missing or unexpected or mismatched:
        raise ValueError(
            "The adapter does not fit this model:"
            + (f"\n  missing ({len(missing)}): {', '.join(missing)}" if missing else "")
            + (f"\n  unexpected keys ({len(unexpected)}): {', '.join(unexpected)}" if unexpected else "")
            + (f"\n  shape mismatch: {', '.join(mismatched)}" if mismatched else "")
            + "\nCheck that the adapter was trained on this architecture (and that adapter_config.json's "
              "target_modules / modules_to_save are the ones it was saved with)."
        )
    return leaves


def write_adapter(model: Any, name: str, folder: Path) -> None:
    """Write adapter ``name`` of ``model`` in PEFT's format into ``folder``."""
    targets = model._targets[name]
    leaves = {p: np.asarray(v, np.float32) for p, v in model._adapter_leaves(name).items()}
    tensors = {}
    for t in targets.layers:
        tensors[f"{PREFIX}{t.module}.lora_A.weight"] = leaves[f"{t.scope}/lora_A"].T  # [r, in]
        tensors[f"{PREFIX}{t.module}.lora_B.weight"] = leaves[f"{t.scope}/lora_B"].T  # [out, r]
    names = pt_names(model.base_model_class, model.config, {p: None for p in targets.saved})
    for path in targets.saved:
        key, rule = names[path]
        tensors[PREFIX + key] = rule.transform.to_pt(leaves[path])
    config = model.peft_config[name]
    config = dataclasses.replace(config, fan_in_fan_out=any(t.fan_in_fan_out for t in targets.layers))
    folder.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(folder)
    write_safetensors({k: np.ascontiguousarray(v) for k, v in tensors.items()}, folder / WEIGHTS_NAME,
                      metadata={"format": "pt"})
