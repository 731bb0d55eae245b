"""The converter engine: rules in both directions, prefix alignment, and complete reports (property-based)."""

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fxformers.convert import (
    TRANSPOSE,
    ConversionTable,
    Rule,
    align_prefix,
    embedding,
    flatten,
    flax_to_pytorch,
    layer_norm,
    linear,
    pytorch_to_flax,
    unflatten,
)


def toy_table() -> ConversionTable:
    return ConversionTable(
        embedding("emb", "emb")
        + linear("layers.{i}.proj", "layers_{i}/proj")
        + layer_norm("layers.{i}.norm", "layers_{i}/norm")
        + linear("blocks.{i}.mlp.{j}", "block_{i}/mlp_{j}", bias=False),
        ignore_pt=(r"\.rotary\.inv_freq$",),
    )


@st.composite
def toy_state_dicts(draw):
    """A random state dict the toy table covers: random depth, widths, and nesting indices."""
    rng = np.random.RandomState(draw(st.integers(0, 2**16)))
    width = draw(st.integers(1, 5))
    sd = {"emb.weight": rng.randn(draw(st.integers(1, 7)), width).astype(np.float32)}
    for i in range(draw(st.integers(0, 3))):
        out = draw(st.integers(1, 5))
        sd[f"layers.{i}.proj.weight"] = rng.randn(out, width).astype(np.float32)
        sd[f"layers.{i}.proj.bias"] = rng.randn(out).astype(np.float32)
        sd[f"layers.{i}.norm.weight"] = rng.randn(width).astype(np.float32)
        sd[f"layers.{i}.norm.bias"] = rng.randn(width).astype(np.float32)
    for i in range(draw(st.integers(0, 2))):
        for j in range(draw(st.integers(1, 3))):
            sd[f"blocks.{i}.mlp.{j}.weight"] = rng.randn(3, width).astype(np.float32)
    return sd


def targets_for(table, sd):
    """What a model built for this state dict would expect: the converted shapes."""
    out = {}
    for key, value in sd.items():
        path, rule = table.flax_path(key)
        out[path] = jax.ShapeDtypeStruct(rule.transform.to_flax(value).shape, np.float32)
    return out


@settings(max_examples=60, deadline=None)
@given(toy_state_dicts())
def test_round_trip_is_identity(sd):
    table = toy_table()
    filled, report = pytorch_to_flax(table, sd, targets_for(table, sd))
    assert not (report.missing or report.unexpected or report.mismatched)
    back = flax_to_pytorch(table, filled)
    assert back.keys() == sd.keys()
    for key in sd:
        np.testing.assert_array_equal(back[key], sd[key])


@settings(max_examples=60, deadline=None)
@given(toy_state_dicts(), st.data())
def test_report_names_every_problem_at_once(sd, data):
    table = toy_table()
    target = targets_for(table, sd)
    broken = dict(sd)
    dropped = data.draw(st.sampled_from(sorted(sd)))
    del broken[dropped]
    reshaped = data.draw(st.sampled_from(sorted(k for k in sd if k != dropped) or [None]))
    if reshaped is not None:
        broken[reshaped] = np.zeros(broken[reshaped].shape + (2,), np.float32)
    broken["layers.99.unknown.weight"] = np.zeros(1, np.float32)
    broken["layers.0.rotary.inv_freq"] = np.zeros(1, np.float32)  # ignorable buffer: never reported
    _, report = pytorch_to_flax(table, broken, target)
    assert report.missing == [table.flax_path(dropped)[0]]
    assert [k for k, _, _ in report.mismatched] == ([reshaped] if reshaped else [])
    assert report.unexpected == ["layers.99.unknown.weight"]
    text = report.describe("ckpt")
    assert "layers.99.unknown.weight" in text and table.flax_path(dropped)[0] in text


def test_placeholders_carry_between_sides():
    rule = Rule("a.{i}.b.{j}.weight", "a_{i}/b_{j}/kernel", TRANSPOSE)
    assert rule.match_pt("a.12.b.3.weight") == "a_12/b_3/kernel"
    assert rule.match_flax("a_12/b_3/kernel") == "a.12.b.3.weight"
    assert rule.match_pt("a.x.b.3.weight") is None and rule.match_pt("za.1.b.3.weight") is None


def test_prefix_alignment_both_ways():
    keys = ["bert.embeddings.x", "classifier.weight"]
    assert align_prefix(keys, "bert", model_has_prefix=False)("bert.embeddings.x") == "embeddings.x"
    assert align_prefix(["embeddings.x"], "bert", model_has_prefix=True)("embeddings.x") == "bert.embeddings.x"
    assert align_prefix(keys, "bert", model_has_prefix=True)("bert.embeddings.x") == "bert.embeddings.x"


def test_uncovered_parameters_are_named_on_save():
    with pytest.raises(ValueError, match="mystery/kernel"):
        flax_to_pytorch(toy_table(), {"emb/embedding": np.zeros((2, 2)), "mystery/kernel": np.zeros((2, 2))})


def test_flatten_unflatten_inverse():
    tree = {"a": {"b": {"c": 1}, "d": 2}, "e": 3}
    assert unflatten(flatten(tree)) == tree


def test_group_rules_split_fused_and_stack_per_expert_weights_both_ways():
    """fused_linear (one key <-> several kernels) and stacked_linears (several keys <-> one stacked kernel)."""
    from fxformers.convert import fused_linear, stacked_linears

    table = ConversionTable(
        fused_linear("layers.{i}.qkv", ["layers_{i}/q", "layers_{i}/k", "layers_{i}/v"], (4, 2, 2), bias=True)
        + stacked_linears("layers.{i}.experts.{e}.w1", 3, "layers_{i}/experts/w1")
    )
    rng = np.random.RandomState(0)
    sd = {}
    for i in range(2):
        sd[f"layers.{i}.qkv.weight"] = rng.randn(8, 5).astype(np.float32)
        sd[f"layers.{i}.qkv.bias"] = rng.randn(8).astype(np.float32)
        for e in range(3):
            sd[f"layers.{i}.experts.{e}.w1.weight"] = rng.randn(6, 5).astype(np.float32)
    target = {}
    for i in range(2):
        for name, n in (("q", 4), ("k", 2), ("v", 2)):
            target[f"layers_{i}/{name}/kernel"] = jax.ShapeDtypeStruct((5, n), np.float32)
            target[f"layers_{i}/{name}/bias"] = jax.ShapeDtypeStruct((n,), np.float32)
        target[f"layers_{i}/experts/w1"] = jax.ShapeDtypeStruct((3, 5, 6), np.float32)
    filled, report = pytorch_to_flax(table, sd, target)
    assert not report.missing and not report.unexpected and not report.mismatched
    np.testing.assert_array_equal(filled["layers_1/k/kernel"], sd["layers.1.qkv.weight"][4:6].T)
    np.testing.assert_array_equal(filled["layers_0/experts/w1"][2], sd["layers.0.experts.2.w1.weight"].T)
    back = flax_to_pytorch(table, filled)
    assert back.keys() == sd.keys()
    for key in sd:
        np.testing.assert_array_equal(back[key], sd[key])
    # an expert missing from the checkpoint leaves its stacked kernel missing, by name
    broken = {k: v for k, v in sd.items() if k != "layers.1.experts.1.w1.weight"}
    _, report = pytorch_to_flax(table, broken, target)
    assert report.missing == ["layers_1/experts/w1"]
    # a wrongly sized part is reported with the keys that built it
    target["layers_0/q/kernel"] = jax.ShapeDtypeStruct((5, 3), np.float32)
    _, report = pytorch_to_flax(table, sd, target)
    assert [m[0] for m in report.mismatched] == ["layers.0.qkv.weight -> layers_0/q/kernel"]
