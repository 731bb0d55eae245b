"""Phi-3 parity with PyTorch transformers: fused qkv/gate_up layouts both ways, partial rotary, LongRoPE in its short
and long regimes (and the legacy ``su`` spelling), sliding windows shorter than the prompt, heads, generation."""

import copy
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

import fxformers
from fxformers.convert import flatten
from fxformers.sharding import check_rules, create_mesh, param_shardings
from decoder_helpers import left_padded_batch, rel_err, torch_forward, torch_generate

VOCAB = 99
PAD = 0
BASE = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=24, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=64, bos_token_id=1, eos_token_id=2, pad_token_id=PAD)
# head_dim 8, partial_rotary_factor 0.75 -> rotary dim 6 -> 3 factors each
LONGROPE = dict(rope_type="longrope", rope_theta=10000.0, partial_rotary_factor=0.75,
                short_factor=[1.0, 1.3, 2.0], long_factor=[1.5, 3.0, 7.0])

CASES = {
    "mha-tied": dict(num_key_value_heads=4, tie_word_embeddings=True),
    "gqa-window-partial": dict(sliding_window=4, partial_rotary_factor=0.5, num_key_value_heads=1),
    # the prompt (9 positions) is longer than the original 6: long factors throughout
    "longrope-long": dict(rope_parameters=LONGROPE, original_max_position_embeddings=6, sliding_window=5),
    # generation stays within the original 32: short factors throughout
    "longrope-short": dict(rope_parameters=LONGROPE, original_max_position_embeddings=32),
    # a 9-column prompt generating past the original 10: Transformers re-encodes everything at the crossing
    "longrope-crossing": dict(rope_parameters=dict(LONGROPE, long_factor=[4.0, 20.0, 60.0]),
                              original_max_position_embeddings=10),
}


def torch_config(case: str, **extra):
    # a deep copy: Transformers writes original_max_position_embeddings into the rope dict it is given
    return transformers.Phi3Config(**copy.deepcopy({**BASE, **CASES[case], **extra}))


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    cache = {}

    def get(case):
        if case not in cache:
            torch.manual_seed(0)
            tm = transformers.Phi3ForCausalLM(torch_config(case)).eval()
            folder = tmp_path_factory.mktemp(case)
            tm.save_pretrained(folder)
            cache[case] = tm, folder
        return cache[case]

    return get


@pytest.mark.parametrize("case", list(CASES))
def test_logits_and_greedy_generation_match(checkpoints, case):
    tm, folder = checkpoints(case)
    fm = fxformers.AutoModelForCausalLM.from_pretrained(folder)
    assert type(fm).__name__ == "Phi3ForCausalLM"
    ids, mask = left_padded_batch(VOCAB, PAD)
    ref = torch_forward(tm, ids, mask).logits.numpy()
    assert rel_err(fm(ids, attention_mask=mask).logits, ref, mask == 1) <= 1e-5
    expected = torch_generate(tm, ids, mask, max_new_tokens=6, do_sample=False)
    np.testing.assert_array_equal(np.asarray(fm.generate(ids, attention_mask=mask, max_new_tokens=6)), expected)


def test_longrope_switches_factors_with_the_longest_position(checkpoints):
    """Same weights, original length 6: a batch whose positions stay below 6 uses the short factors, a longer one
    the long factors, in both frameworks (the logits differ between the regimes)."""
    tm, folder = checkpoints("longrope-long")
    fm = fxformers.AutoModelForCausalLM.from_pretrained(folder)
    short_ids, short_mask = left_padded_batch(VOCAB, PAD, seed=4, shape=(2, 6), pads=(0, 2))  # positions 0..5
    long_ids, long_mask = np.concatenate([short_ids, short_ids[:, :1]], 1), np.ones((2, 7), np.int64)  # 0..6
    long_mask[1, :2] = 0
    for ids, mask in ((short_ids, short_mask), (long_ids, long_mask)):
        ref = torch_forward(tm, ids, mask).logits.numpy()
        assert rel_err(fm(ids, attention_mask=mask).logits, ref, mask == 1) <= 1e-5
    # the long batch extends the short one by a token: causal attention leaves the first 6 positions unchanged,
    # so only the rope regime (long factors once position 6 exists) tells them apart
    assert rel_err(fm(long_ids, attention_mask=long_mask).logits[:, :6], fm(short_ids, attention_mask=short_mask).logits,
                   short_mask == 1) > 1e-3


def test_beam_search_across_the_original_length_reencodes_like_transformers(checkpoints):
    """Beam search crossing original_max_position_embeddings: the cache is rebuilt with the long factors once, at the
    same step as Transformers (greedy is covered by test_logits_and_greedy_generation_match)."""
    tm, folder = checkpoints("longrope-crossing")
    fm = fxformers.AutoModelForCausalLM.from_pretrained(folder)
    ids, mask = left_padded_batch(VOCAB, PAD)
    beam = torch_generate(tm, ids, mask, max_new_tokens=6, do_sample=False, num_beams=3)
    np.testing.assert_array_equal(np.asarray(fm.generate(ids, attention_mask=mask, max_new_tokens=6, num_beams=3)), beam)


def test_legacy_su_rope_scaling_spelling(tmp_path, checkpoints):
    tm, folder = checkpoints("longrope-long")
    config = json.loads((folder / "config.json").read_text())
    rope = config.pop("rope_parameters")
    config["rope_theta"] = rope.pop("rope_theta")
    config["partial_rotary_factor"] = rope.pop("partial_rotary_factor")
    config["rope_scaling"] = {"type": "su", "short_factor": rope["short_factor"], "long_factor": rope["long_factor"]}
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes())
    fm = fxformers.AutoModelForCausalLM.from_pretrained(tmp_path)
    ids, mask = left_padded_batch(VOCAB, PAD)
    assert rel_err(fm(ids, attention_mask=mask).logits, torch_forward(tm, ids, mask).logits.numpy(), mask == 1) <= 1e-5
    bad = dict(config, rope_scaling={"type": "longrope", "short_factor": [1.0, 1.0, 1.0]})
    with pytest.raises(ValueError, match="long_factor"):
        fxformers.Phi3Config(**bad)


def test_beam_search_and_top_k_1_sampling_match(checkpoints):
    tm, folder = checkpoints("gqa-window-partial")
    fm = fxformers.AutoModelForCausalLM.from_pretrained(folder)
    ids, mask = left_padded_batch(VOCAB, PAD, seed=1)
    beam = torch_generate(tm, ids, mask, max_new_tokens=5, do_sample=False, num_beams=3)
    np.testing.assert_array_equal(np.asarray(fm.generate(ids, attention_mask=mask, max_new_tokens=5, num_beams=3)), beam)
    torch.manual_seed(0)
    sampled = torch_generate(tm, ids, mask, max_new_tokens=5, do_sample=True, top_k=1)
    ours = fm.generate(ids, attention_mask=mask, max_new_tokens=5, do_sample=True, top_k=1, prng_key=jax.random.PRNGKey(3))
    np.testing.assert_array_equal(np.asarray(ours), sampled)


def test_loss_base_model_and_sequence_classification(tmp_path, checkpoints):
    case = "longrope-short"
    tm, folder = checkpoints(case)
    ids, mask = left_padded_batch(VOCAB, PAD, seed=2)
    rids, rmask = ids[:, ::-1].copy(), mask[:, ::-1].copy()
    labels = np.where(rmask == 1, rids, -100)
    ref = torch_forward(tm, rids, rmask, labels=torch.tensor(labels), output_hidden_states=True)
    out = fxformers.AutoModelForCausalLM.from_pretrained(folder)(rids, attention_mask=rmask, labels=labels)
    assert abs(float(out.loss) - float(ref.loss)) <= 1e-5 * float(ref.loss)
    base = fxformers.AutoModel.from_pretrained(folder)
    assert type(base).__name__ == "Phi3Model"
    assert rel_err(base(rids, attention_mask=rmask).last_hidden_state, ref.hidden_states[-1].numpy(), rmask == 1) <= 1e-5

    torch.manual_seed(1)
    tc = transformers.Phi3ForSequenceClassification(torch_config(case, num_labels=3)).eval()
    tc.save_pretrained(tmp_path / "cls")
    fc = fxformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "cls")
    assert type(fc).__name__ == "Phi3ForSequenceClassification"
    labels = np.array([0, 2, 1])
    ref = torch_forward(tc, ids, mask, labels=torch.tensor(labels))
    out = fc(ids, attention_mask=mask, labels=labels)
    assert rel_err(out.logits, ref.logits.numpy()) <= 1e-5
    assert abs(float(out.loss) - float(ref.loss)) <= 1e-5 * float(ref.loss)


@pytest.mark.parametrize("case", ["mha-tied", "longrope-long"])
def test_save_pretrained_round_trip_fuses_the_projections(tmp_path, checkpoints, case):
    tm, folder = checkpoints(case)
    fm = fxformers.AutoModelForCausalLM.from_pretrained(folder)
    assert "q_proj" in fm.params["model"]["layers_0"]["self_attn"]
    state = fm.state_dict()
    for key in ("model.layers.0.self_attn.qkv_proj.weight", "model.layers.1.mlp.gate_up_proj.weight"):
        np.testing.assert_array_equal(state[key], tm.state_dict()[key].numpy())
    fm.save_pretrained(tmp_path / "ours")
    back, info = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "ours", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    ids, mask = left_padded_batch(VOCAB, PAD)
    ref = torch_forward(tm, ids, mask).logits.numpy()
    assert rel_err(torch_forward(back.eval(), ids, mask).logits.numpy(), ref, mask == 1) <= 1e-6


@pytest.mark.mesh
def test_partition_rules_cover_every_class_and_shard_exactly(checkpoints):
    tm, folder = checkpoints("longrope-long")
    fm = fxformers.AutoModelForCausalLM.from_pretrained(folder)
    config = fm.config
    shapes = {}
    for auto in (fxformers.AutoModel, fxformers.AutoModelForCausalLM, fxformers.AutoModelForSequenceClassification):
        model = auto.model_class(config)._from_parts(config, None, "float32")
        tree = jax.eval_shape(lambda r: model.module.init(r, **model.dummy_inputs())["params"], jax.random.PRNGKey(0))
        shapes.update({p: s.shape for p, s in flatten(tree).items()})
    rules = type(fm).partition_rules(config)
    check_rules(rules, shapes, allow_unused=False)
    if len(jax.devices()) < 8:
        pytest.skip("the sharded comparison needs XLA_FLAGS=--xla_force_host_platform_device_count=8")
    mesh = create_mesh(data=2, fsdp=2, model=2)
    sharded = jax.device_put(fm.params, param_shardings(rules, fm.params, mesh))
    ids, mask = left_padded_batch(VOCAB, PAD)
    expected = fm(ids, attention_mask=mask).logits
    assert rel_err(fm(ids, attention_mask=mask, params=sharded).logits, expected, mask == 1) <= 1e-5


def test_bfloat16_and_residual_dropout(checkpoints):
    tm, folder = checkpoints("longrope-long")
    fm = fxformers.AutoModelForCausalLM.from_pretrained(folder, dtype=jnp.bfloat16)
    ids, mask = left_padded_batch(VOCAB, PAD)
    logits = fm(ids, attention_mask=mask).logits
    assert logits.dtype == jnp.float32
    assert rel_err(logits, torch_forward(tm, ids, mask).logits.numpy(), mask == 1) <= 5e-2
    # resid_pdrop is applied in training mode only
    drop = fxformers.AutoModelForCausalLM.from_pretrained(folder, resid_pdrop=0.5)
    eval_logits = drop(ids, attention_mask=mask).logits
    train_logits = drop(ids, attention_mask=mask, train=True, dropout_rng=jax.random.PRNGKey(0)).logits
    assert rel_err(eval_logits, torch_forward(tm, ids, mask).logits.numpy(), mask == 1) <= 1e-5
    assert rel_err(train_logits, eval_logits, mask == 1) > 1e-3
