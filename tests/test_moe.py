"""Mixtral and Qwen3-MoE parity with PyTorch transformers: routing (top-1/top-2, norm_topk_prob on/off, sparse steps,
dense-only layers), router logits and the load-balancing auxiliary loss, heads, generation, round trips, sharding."""

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

CASES = {
    "mixtral-top2-gqa-window": ("MixtralConfig", dict(num_local_experts=4, num_experts_per_tok=2, sliding_window=4)),
    "mixtral-top1-mha-tied": ("MixtralConfig", dict(num_local_experts=3, num_experts_per_tok=1, num_key_value_heads=4,
                                                    tie_word_embeddings=True, router_aux_loss_coef=0.1)),
    "qwen3moe-top2-norm-head_dim": ("Qwen3MoeConfig", dict(num_experts=4, num_experts_per_tok=2, norm_topk_prob=True,
                                                           head_dim=12, moe_intermediate_size=20)),
    "qwen3moe-top1-dense-layer-window": ("Qwen3MoeConfig", dict(num_experts=3, num_experts_per_tok=1,
                                                                norm_topk_prob=False, mlp_only_layers=[0],
                                                                moe_intermediate_size=16, use_sliding_window=True,
                                                                sliding_window=4, router_aux_loss_coef=0.1)),
    "qwen3moe-step2-bias": ("Qwen3MoeConfig", dict(num_experts=4, num_experts_per_tok=2, norm_topk_prob=False,
                                                   decoder_sparse_step=2, attention_bias=True, num_key_value_heads=1,
                                                   moe_intermediate_size=16)),
}
FAMILY_CASE = {"mixtral": "mixtral-top2-gqa-window", "qwen3_moe": "qwen3moe-top2-norm-head_dim"}


def torch_config(case: str, **extra):
    config_cls, overrides = CASES[case]
    return getattr(transformers, config_cls)(**{**BASE, **overrides, **extra})


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """case -> (torch causal LM, folder it was saved in), built once per module."""
    cache = {}

    def get(case):
        if case not in cache:
            torch.manual_seed(0)
            tm = transformers.AutoModelForCausalLM.from_config(torch_config(case)).eval()
            folder = tmp_path_factory.mktemp(case)
            tm.save_pretrained(folder)
            cache[case] = tm, folder
        return cache[case]

    return get


@pytest.mark.parametrize("case", list(CASES))
def test_logits_and_greedy_generation_match(checkpoints, case):
    tm, folder = checkpoints(case)
    fm = fxformers.AutoModelForCausalLM.from_pretrained(folder)
    assert type(fm).__name__ == type(tm).__name__
    ids, mask = left_padded_batch(VOCAB, PAD)
    ref = torch_forward(tm, ids, mask).logits.numpy()
    assert rel_err(fm(ids, attention_mask=mask).logits, ref, mask == 1) <= 1e-5
    expected = torch_generate(tm, ids, mask, max_new_tokens=6, do_sample=False)
    np.testing.assert_array_equal(np.asarray(fm.generate(ids, attention_mask=mask, max_new_tokens=6)), expected)


@pytest.mark.parametrize("family", list(FAMILY_CASE))
def test_beam_search_and_top_k_1_sampling_match(checkpoints, family):
    tm, folder = checkpoints(FAMILY_CASE[family])
    fm = fxformers.AutoModelForCausalLM.from_pretrained(folder)
    ids, mask = left_padded_batch(VOCAB, PAD, seed=1)
    beam = torch_generate(tm, ids, mask, max_new_tokens=5, do_sample=False, num_beams=3)
    np.testing.assert_array_equal(np.asarray(fm.generate(ids, attention_mask=mask, max_new_tokens=5, num_beams=3)), beam)
    torch.manual_seed(0)
    sampled = torch_generate(tm, ids, mask, max_new_tokens=5, do_sample=True, top_k=1)
    ours = fm.generate(ids, attention_mask=mask, max_new_tokens=5, do_sample=True, top_k=1, prng_key=jax.random.PRNGKey(3))
    np.testing.assert_array_equal(np.asarray(ours), sampled)


def right_padded_batch():
    ids, mask = left_padded_batch(VOCAB, PAD, seed=2)
    return ids[:, ::-1].copy(), mask[:, ::-1].copy()


@pytest.mark.parametrize("case", ["mixtral-top2-gqa-window", "qwen3moe-top1-dense-layer-window", "qwen3moe-step2-bias"])
def test_loss_includes_the_load_balancing_loss(checkpoints, case):
    tm, folder = checkpoints(case)
    fm = fxformers.AutoModelForCausalLM.from_pretrained(folder)
    ids, mask = right_padded_batch()
    labels = np.where(mask == 1, ids, -100)
    ref = torch_forward(tm, ids, mask, labels=torch.tensor(labels), output_router_logits=True)
    out = fm(ids, attention_mask=mask, labels=labels, output_router_logits=True)
    assert abs(float(out.aux_loss) - float(ref.aux_loss)) <= 1e-5 * float(ref.aux_loss)
    assert abs(float(out.loss) - float(ref.loss)) <= 1e-5 * float(ref.loss)
    assert len(out.router_logits) == len(ref.router_logits) == sum(
        fm.config.is_sparse_layer(i) for i in range(fm.config.num_hidden_layers))
    real = mask.reshape(-1) == 1
    for ours, theirs in zip(out.router_logits, ref.router_logits):
        assert rel_err(ours, theirs.numpy(), real) <= 1e-5
    # without router logits there is no auxiliary loss, as in Transformers
    plain = fm(ids, attention_mask=mask, labels=labels)
    assert plain.aux_loss is None and plain.router_logits is None
    ref_plain = torch_forward(tm, ids, mask, labels=torch.tensor(labels))
    assert abs(float(plain.loss) - float(ref_plain.loss)) <= 1e-5 * float(ref_plain.loss)
    # config.output_router_logits turns it on by default; no attention_mask: every token counts
    on = fxformers.AutoModelForCausalLM.from_pretrained(folder, output_router_logits=True)
    tm.config.output_router_logits = True
    try:
        with torch.no_grad():
            ref_all = tm(input_ids=torch.tensor(ids), labels=torch.tensor(labels))
    finally:
        tm.config.output_router_logits = False
    out_all = on(ids, labels=labels)
    assert abs(float(out_all.loss) - float(ref_all.loss)) <= 1e-5 * float(ref_all.loss)
    assert abs(float(out_all.aux_loss) - float(ref_all.aux_loss)) <= 1e-5 * float(ref_all.aux_loss)


@pytest.mark.parametrize("family", list(FAMILY_CASE))
def test_base_model_and_sequence_classification(tmp_path, checkpoints, family):
    case = FAMILY_CASE[family]
    tm, folder = checkpoints(case)
    ids, mask = left_padded_batch(VOCAB, PAD)
    base = fxformers.AutoModel.from_pretrained(folder)
    assert type(base).__name__ == type(tm.model).__name__
    ref = torch_forward(tm.model, ids, mask).last_hidden_state.numpy()
    assert rel_err(base(ids, attention_mask=mask).last_hidden_state, ref, mask == 1) <= 1e-5

    torch.manual_seed(1)
    tc = transformers.AutoModelForSequenceClassification.from_config(torch_config(case, num_labels=3)).eval()
    tc.save_pretrained(tmp_path / "cls")
    fc = fxformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "cls")
    assert type(fc).__name__ == type(tc).__name__
    labels = np.array([0, 2, 1])
    ref = torch_forward(tc, ids, mask, labels=torch.tensor(labels))
    out = fc(ids, attention_mask=mask, labels=labels)
    assert rel_err(out.logits, ref.logits.numpy()) <= 1e-5
    assert abs(float(out.loss) - float(ref.loss)) <= 1e-5 * float(ref.loss)
    # a causal-LM checkpoint loads into the classifier with a fresh head, as in Transformers
    assert fxformers.AutoModelForSequenceClassification.from_pretrained(folder, num_labels=2).params["score"]


@pytest.mark.parametrize("case", ["mixtral-top1-mha-tied", "qwen3moe-step2-bias"])
def test_save_pretrained_round_trip_loads_in_transformers(tmp_path, checkpoints, case):
    tm, folder = checkpoints(case)
    fm = fxformers.AutoModelForCausalLM.from_pretrained(folder)
    fm.save_pretrained(tmp_path / "ours")
    back, info = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "ours", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    assert type(back) is type(tm)
    ids, mask = left_padded_batch(VOCAB, PAD)
    ref = torch_forward(tm, ids, mask).logits.numpy()
    assert rel_err(torch_forward(back.eval(), ids, mask).logits.numpy(), ref, mask == 1) <= 1e-6


@pytest.mark.mesh
@pytest.mark.parametrize("case", ["mixtral-top2-gqa-window", "qwen3moe-top1-dense-layer-window"])
def test_partition_rules_cover_every_class_and_shard_exactly(checkpoints, case):
    tm, folder = checkpoints(case)
    fm = fxformers.AutoModelForCausalLM.from_pretrained(folder)
    config = fm.config
    shapes = {}
    for auto in (fxformers.AutoModel, fxformers.AutoModelForCausalLM, fxformers.AutoModelForSequenceClassification):
        cls = auto.model_class(config)
        model = cls._from_parts(config, None, "float32")
        tree = jax.eval_shape(lambda r: model.module.init(r, **model.dummy_inputs())["params"], jax.random.PRNGKey(0))
        shapes.update({p: s.shape for p, s in flatten(tree).items()})
    rules = type(fm).partition_rules(config)
    specs = check_rules(rules, shapes, allow_unused=False)
    assert specs["model/layers_1/mlp/experts/gate_proj"][0] == "model"  # experts split over `model`
    if len(jax.devices()) < 8:
        pytest.skip("the sharded comparison needs XLA_FLAGS=--xla_force_host_platform_device_count=8")
    mesh = create_mesh(data=2, fsdp=1, model=4)
    sharded = jax.device_put(fm.params, param_shardings(rules, fm.params, mesh))
    ids, mask = left_padded_batch(VOCAB, PAD)
    expected = fm(ids, attention_mask=mask).logits
    assert rel_err(fm(ids, attention_mask=mask, params=sharded).logits, expected, mask == 1) <= 1e-5


def test_bfloat16_inference_keeps_float32_logits(checkpoints):
    tm, folder = checkpoints("mixtral-top2-gqa-window")
    fm = fxformers.AutoModelForCausalLM.from_pretrained(folder, dtype=jnp.bfloat16)
    assert fm.params["model"]["layers_0"]["mlp"]["experts"]["gate_proj"].dtype == jnp.bfloat16
    ids, mask = left_padded_batch(VOCAB, PAD)
    logits = fm(ids, attention_mask=mask).logits
    assert logits.dtype == jnp.float32
    assert rel_err(logits, torch_forward(tm, ids, mask).logits.numpy(), mask == 1) <= 5e-2
    out = fm.generate(ids, attention_mask=mask, max_new_tokens=4)
    assert out.shape == (3, 13) and out.dtype == jnp.int32


def test_converter_reports_a_missing_expert(checkpoints):
    _, folder = checkpoints("mixtral-top2-gqa-window")
    from fxformers.checkpoints import load_state_dict

    state, _ = load_state_dict(folder)
    del state["model.layers.1.block_sparse_moe.experts.2.w3.weight"]
    config = fxformers.AutoConfig.from_pretrained(folder)
    with pytest.raises(ValueError, match="layers_1/mlp/experts/up_proj"):
        fxformers.MixtralForCausalLM.from_state_dict(state, config)
