"""Parity checks shared by the decoder-family tests (Qwen3, Gemma 1/2/3): one function per acceptance criterion."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

import fxformers
from decoder_helpers import left_padded_batch, rel_err, torch_forward, torch_generate


def build(config_cls: str, base: dict, overrides: dict, auto: str = "AutoModelForCausalLM", seed: int = 0):
    if auto == "AutoModelForSequenceClassification":
        overrides = {"num_labels": 3, **overrides}
    config = getattr(transformers, config_cls)(**{**base, **overrides})
    torch.manual_seed(seed)
    model = getattr(transformers, auto).from_config(config).eval()
    with torch.no_grad():  # Gemma norms start at zero (an identity gain): randomise them so their weights matter
        for name, p in model.named_parameters():
            if "norm" in name:
                p.normal_(0.0, 0.5)
    return model


def check_logits_and_generation(tm, folder: Path, vocab: int, pad: int, *, beam: bool = False, sample: bool = False,
                                greedy: bool = True,
                                prompt=(3, 9), pads=(0, 3, 1)):
    """float32 logits to 1e-5 and greedy (optionally beam and top_k=1 sampling) generation token-exact."""
    tm.save_pretrained(folder)
    fm = fxformers.AutoModelForCausalLM.from_pretrained(folder)
    assert type(fm).__name__ == type(tm).__name__
    ids, mask = left_padded_batch(vocab, pad, shape=prompt, pads=pads)
    ref = torch_forward(tm, ids, mask).logits.numpy()
    assert rel_err(fm(ids, attention_mask=mask).logits, ref, mask == 1) <= 1e-5
    settings = [dict(do_sample=False)] if greedy else []
    if beam:
        settings.append(dict(do_sample=False, num_beams=3))
    if sample:
        settings.append(dict(do_sample=True, top_k=1))
    for kw in settings:
        expected = torch_generate(tm, ids, mask, max_new_tokens=6, **kw)
        got = np.asarray(fm.generate(ids, attention_mask=mask, max_new_tokens=6, **kw))
        np.testing.assert_array_equal(got, expected, err_msg=str(kw))
    return fm


def check_loss_and_base_model(tm, folder: Path, vocab: int, pad: int, base_name: str):
    tm.save_pretrained(folder)
    ids, mask = left_padded_batch(vocab, pad)
    ids, mask = ids[:, ::-1].copy(), mask[:, ::-1].copy()  # right padding for training
    labels = np.where(mask == 1, ids, -100)
    ref = torch_forward(tm, ids, mask, labels=torch.tensor(labels), output_hidden_states=True)
    out = fxformers.AutoModelForCausalLM.from_pretrained(folder)(ids, attention_mask=mask, labels=labels)
    assert abs(float(out.loss) - float(ref.loss)) <= 1e-5 * float(ref.loss)
    base = fxformers.AutoModel.from_pretrained(folder)
    assert type(base).__name__ == base_name
    hidden = base(ids, attention_mask=mask).last_hidden_state
    assert rel_err(hidden, ref.hidden_states[-1].numpy(), mask == 1) <= 1e-5


def check_sequence_classification(tm, folder: Path, vocab: int, pad: int):
    tm.save_pretrained(folder)
    fm = fxformers.AutoModelForSequenceClassification.from_pretrained(folder)
    assert type(fm).__name__ == type(tm).__name__
    ids, mask = left_padded_batch(vocab, pad)
    labels = np.array([0, 2, 1])
    ref = torch_forward(tm, ids, mask, labels=torch.tensor(labels))
    out = fm(ids, attention_mask=mask, labels=labels)
    assert rel_err(out.logits, ref.logits.numpy()) <= 1e-5
    assert abs(float(out.loss) - float(ref.loss)) <= 1e-5 * float(ref.loss)


def check_save_round_trip(tm, folder: Path, vocab: int, pad: int, auto: str = "AutoModelForCausalLM"):
    tm.save_pretrained(folder / "torch")
    fm = getattr(fxformers, auto).from_pretrained(folder / "torch")
    fm.save_pretrained(folder / "ours")
    back, info = getattr(transformers, auto).from_pretrained(folder / "ours", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    assert type(back) is type(tm)
    ids, mask = left_padded_batch(vocab, pad)
    ref = torch_forward(tm, ids, mask).logits.numpy()
    assert rel_err(torch_forward(back.eval(), ids, mask).logits.numpy(), ref, mask == 1) <= 1e-6


def rewrite_config(folder: Path, edit) -> None:
    """Edit a saved config.json in place (to test the other spelling of a field)."""
    path = folder / "config.json"
    config = json.loads(path.read_text())
    edit(config)
    path.write_text(json.dumps(config))


def check_bfloat16(tm, folder: Path, vocab: int, pad: int, tol: float = 5e-2, generate: bool = True):
    tm.save_pretrained(folder)
    fm = fxformers.AutoModelForCausalLM.from_pretrained(folder, dtype=jnp.bfloat16)
    assert fm.params["model"]["embed_tokens"]["embedding"].dtype == jnp.bfloat16
    ids, mask = left_padded_batch(vocab, pad)
    logits = fm(ids, attention_mask=mask).logits
    assert logits.dtype == jnp.float32
    assert rel_err(logits, torch_forward(tm, ids, mask).logits.numpy(), mask == 1) <= tol
    if generate:
        out = fm.generate(ids, attention_mask=mask, max_new_tokens=4)
        assert out.shape == (3, 13) and out.dtype == jnp.int32


def check_partition_rules(models: list, vocab: int, pad: int):
    """Rules cover the union of every class's params with no unused rule; sharded logits equal unsharded ones."""
    from fxformers.convert import flatten
    from fxformers.sharding import check_rules, create_mesh, param_shardings

    rules = type(models[0]).partition_rules(models[0].config)
    shapes = {}
    for m in models:
        assert type(m).partition_rules(m.config) == rules
        shapes.update({p: tuple(v.shape) for p, v in flatten(m.params).items()})
    check_rules(rules, shapes, allow_unused=False)
    if len(jax.devices()) < 8:
        pytest.skip("the sharded comparison needs XLA_FLAGS=--xla_force_host_platform_device_count=8")
    mesh = create_mesh(data=2, fsdp=2, model=2)
    ids, mask = left_padded_batch(vocab, pad)
    for m in models:
        if not type(m).__name__.endswith("ForCausalLM"):
            continue  # the same rules and modules: one compiled comparison per family is enough
        sharded = jax.device_put(m.params, param_shardings(rules, m.params, mesh))
        ref, got = m(ids, attention_mask=mask), m(ids, attention_mask=mask, params=sharded)
        key = "logits" if "logits" in ref else "last_hidden_state"
        assert rel_err(got[key], ref[key], None) <= 1e-5
