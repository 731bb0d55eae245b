"""Shared helpers for the decoder-only parity tests (GPT-2, Llama family, generation)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def rel_err(ours, ref, where=None) -> float:
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    if where is not None:
        ours, ref = ours[where], ref[where]
    return float(np.abs(ours - ref).max() / (np.abs(ref).max() + 1e-12))


def save(model, folder: Path, fmt: str) -> Path:
    """Save a torch model as safetensors, sharded safetensors or pytorch_model.bin."""
    folder.mkdir(parents=True, exist_ok=True)
    if fmt == "safetensors":
        model.save_pretrained(folder)
    elif fmt == "sharded":
        model.save_pretrained(folder, max_shard_size="20KB")
        assert (folder / "model.safetensors.index.json").exists()
    elif fmt == "bin":
        model.config.save_pretrained(folder)
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        torch.save(state, folder / "pytorch_model.bin")
    else:
        raise ValueError(fmt)
    return folder


def left_padded_batch(vocab: int, pad: int, seed: int = 0, shape=(3, 9), pads=(0, 3, 1), low: int = 3):
    """ids [B, T] with row r left-padded by pads[r] (pad id ``pad``), and its attention mask."""
    rng = np.random.RandomState(seed)
    ids = rng.randint(low, vocab, shape)
    mask = np.ones_like(ids)
    for r, n in enumerate(pads):
        ids[r, :n], mask[r, :n] = pad, 0
    return ids, mask


def torch_forward(model, ids, mask, **kwargs):
    with torch.no_grad():
        return model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask), **kwargs)


def torch_generate(model, ids, mask, **kwargs) -> np.ndarray:
    with torch.no_grad():
        return model.generate(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask), **kwargs).numpy()
