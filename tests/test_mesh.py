"""Models on a device mesh: the mesh helper, every family's partition rules, sharded loading, inference, generation,
saving and training (tensor parallel x FSDP x data parallel), against the unsharded model and PyTorch.

Tests marked `mesh` run with 8 simulated CPU devices in tests/test_mesh_runner.py's subprocess.
"""

import importlib

import jax
import numpy as np
import pytest

from fxformers.auto import REGISTRY
from fxformers.convert import flatten
from fxformers.sharding import check_rules

# A tiny config for every registered model_type: the rule check below fails for a family that has none, so every
# family added later is checked too.
_BERT = dict(vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=40)
_LLAMA = dict(vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2,
              intermediate_size=40)
_T5 = dict(vocab_size=64, d_model=32, d_kv=8, d_ff=40, num_layers=1, num_heads=4)
_BART = dict(vocab_size=64, d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=4,
             decoder_attention_heads=4, encoder_ffn_dim=40, decoder_ffn_dim=40)
TINY_CONFIGS = {
    "bert": [_BERT], "roberta": [_BERT], "xlm-roberta": [_BERT],
    "distilbert": [dict(vocab_size=64, dim=32, n_layers=1, n_heads=4, hidden_dim=40)],
    "gpt2": [dict(vocab_size=64, n_embd=32, n_layer=1, n_head=4)],
    "llama": [_LLAMA, dict(_LLAMA, attention_bias=True, mlp_bias=True)], "mistral": [_LLAMA], "qwen2": [_LLAMA],
    "t5": [_T5, dict(_T5, feed_forward_proj="gated-gelu")], "mt5": [_T5],
    "bart": [_BART], "mbart": [_BART],
    "qwen3": [dict(_LLAMA, head_dim=8)], "gemma": [dict(_LLAMA, head_dim=8)], "gemma2": [dict(_LLAMA, head_dim=8)],
    "gemma3_text": [dict(_LLAMA, head_dim=8)],
    "mpnet": [_BERT],
    "mixtral": [dict(_LLAMA, num_local_experts=4, num_experts_per_tok=2)],
    "qwen3_moe": [dict(_LLAMA, head_dim=8, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=16),
                  dict(_LLAMA, head_dim=8, num_hidden_layers=2, num_experts=4, num_experts_per_tok=1,
                       moe_intermediate_size=16, decoder_sparse_step=2, attention_bias=True)],
    "phi3": [_LLAMA, dict(_LLAMA, partial_rotary_factor=0.5)],
    "marian": [_BART, dict(_BART, share_encoder_decoder_embeddings=False, decoder_vocab_size=48)],
    "modernbert": [dict(_BERT, num_hidden_layers=2),
                   dict(_BERT, num_hidden_layers=2, attention_bias=True, mlp_bias=True, decoder_bias=False)],
    "electra": [dict(_BERT, embedding_size=16), dict(_BERT, embedding_size=32)],
    "albert": [dict(_BERT, embedding_size=16), dict(_BERT, embedding_size=16, num_hidden_layers=2, num_hidden_groups=2,
                                                    inner_group_num=2)],
    "deberta-v2": [dict(_BERT, relative_attention=True, pos_att_type="p2c|c2p", position_buckets=8, share_att_key=True,
                        position_biased_input=False, norm_rel_ebd="layer_norm"),
                   dict(_BERT, relative_attention=True, pos_att_type=["c2p"], conv_kernel_size=3, type_vocab_size=2,
                        embedding_size=16)],
}


def family_shapes(model_type: str, overrides: dict) -> tuple[dict, tuple]:
    """{flat path: shape} over every class of the family (each head), and the family's rules for that config."""
    package, config_name, classes = REGISTRY[model_type]
    config_cls = getattr(importlib.import_module(f"fxformers.models.{package}.configuration"), config_name)
    config = config_cls(**overrides)
    modeling = importlib.import_module(f"fxformers.models.{package}.modeling")
    shapes, rules = {}, None
    for class_name in classes.values():
        cls = getattr(modeling, class_name)
        model = cls._from_parts(config, None, "float32")
        class_shapes = {p: s.shape for p, s in model.param_shapes().items()}
        class_rules = cls.partition_rules(config)
        check_rules(class_rules, class_shapes, what=class_name, allow_unused=True)  # every param covered
        shapes.update(class_shapes)
        assert rules is None or rules == class_rules, f"{class_name}: one rule table per family"
        rules = class_rules
    return shapes, rules


@pytest.mark.parametrize("model_type", sorted(REGISTRY))
def test_partition_rules_cover_every_param_and_every_rule_matches(model_type):
    assert model_type in TINY_CONFIGS, f"add a tiny config for {model_type!r} to TINY_CONFIGS"
    for tie in (True, False):
        for overrides in TINY_CONFIGS[model_type]:
            shapes, rules = family_shapes(model_type, dict(overrides, tie_word_embeddings=tie))
            specs = check_rules(rules, shapes, what=model_type)  # raises on uncovered params and unused rules
            split = [p for p, s in specs.items() if "model" in str(s)]
            assert split, f"{model_type}: no parameter is split over `model`"


def test_check_rules_names_uncovered_params_and_unused_rules():
    from jax.sharding import PartitionSpec as P

    shapes = {"a/kernel": (4, 4), "b/bias": (4,)}
    with pytest.raises(ValueError, match=r"no partition rule covers \(1\): b/bias"):
        check_rules([(r"kernel$", P("fsdp", "model"))], shapes)
    with pytest.raises(ValueError, match=r"match no parameter: 'nothing'"):
        check_rules([(r"kernel$", P()), (r"bias$", P()), ("nothing", P())], shapes)
    with pytest.raises(ValueError, match="may split over 'fsdp' and 'model' only"):
        check_rules([(r"kernel$", P("data")), (r"bias$", P())], shapes)


# -- 8 devices ---------------------------------------------------------------------------------------------------------
@pytest.mark.mesh
def test_create_mesh_axes_sizes_and_errors():
    from fxformers import create_mesh

    mesh = create_mesh()
    assert mesh.axis_names == ("data", "fsdp", "model") and dict(mesh.shape) == {"data": 8, "fsdp": 1, "model": 1}
    assert dict(create_mesh(data=2, model=4).shape) == {"data": 2, "fsdp": 1, "model": 4}
    assert dict(create_mesh(data=2, fsdp=-1, model=2).shape) == {"data": 2, "fsdp": 2, "model": 2}
    assert dict(create_mesh(devices=jax.devices()[:2], model=2).shape) == {"data": 1, "fsdp": 1, "model": 2}
    with pytest.raises(ValueError, match="do not divide"):
        create_mesh(model=3)
    with pytest.raises(ValueError, match="needs 4 devices, but 8"):
        create_mesh(data=2, model=2)
    with pytest.raises(ValueError, match="only one axis may be -1"):
        create_mesh(data=-1, fsdp=-1)
    with pytest.raises(ValueError, match="positive integer"):
        create_mesh(model=0)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Tiny PyTorch checkpoints, saved by transformers: {name: (folder, fxformers auto class)}."""
    import torch
    import transformers

    torch.manual_seed(0)
    made = {
        "llama": (transformers.LlamaForCausalLM(transformers.LlamaConfig(
            vocab_size=128, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
            intermediate_size=96, tie_word_embeddings=False)), "AutoModelForCausalLM"),
        "gpt2": (transformers.GPT2LMHeadModel(transformers.GPT2Config(
            vocab_size=128, n_embd=64, n_layer=2, n_head=4, n_positions=64)), "AutoModelForCausalLM"),
        "bert": (transformers.BertForMaskedLM(transformers.BertConfig(
            vocab_size=128, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96,
            max_position_embeddings=64)), "AutoModelForMaskedLM"),
        "bert-encoder": (transformers.BertModel(transformers.BertConfig(
            vocab_size=128, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96,
            max_position_embeddings=64)), "AutoModel"),
        "t5": (transformers.T5ForConditionalGeneration(transformers.T5Config(
            vocab_size=128, d_model=64, d_kv=16, d_ff=96, num_layers=2, num_heads=4, decoder_start_token_id=0)),
            "AutoModelForSeq2SeqLM"),
    }
    out = {}
    for name, (model, auto) in made.items():
        folder = tmp_path_factory.mktemp(name)
        model.eval().save_pretrained(folder)
        out[name] = (folder, auto)
    return out


def _inputs(name):
    rng = np.random.RandomState(0)
    ids = rng.randint(3, 128, (4, 9))
    mask = np.ones_like(ids)
    mask[0, :3] = 0  # left padding (decoders) or ignored positions (encoders)
    if name in ("bert", "t5"):
        mask = mask[:, ::-1].copy()  # right padding
    return ids, mask


def _load(name, checkpoints, **kwargs):
    import fxformers

    folder, auto = checkpoints[name]
    return getattr(fxformers, auto).from_pretrained(folder, **kwargs)


@pytest.mark.mesh
@pytest.mark.parametrize("name", ["llama", "gpt2", "bert", "t5"])
def test_loaded_on_a_mesh_equals_the_unsharded_model(name, checkpoints):
    from fxformers import create_mesh
    from fxformers.sharding import bytes_per_device

    mesh = create_mesh(data=2, model=4)
    one, sharded = _load(name, checkpoints), _load(name, checkpoints, mesh=mesh)
    flat = flatten(sharded.params)
    projections = [p for p in flat if any(k in p for k in ("q_proj/kernel", "attention/query/kernel", "c_attn/kernel",
                                                            "SelfAttention/q/kernel", "gate_proj/kernel"))]
    assert projections
    for path in projections:
        assert flat[path].sharding.spec[-1] == "model", (path, flat[path].sharding)
    total = sum(v.nbytes for v in jax.tree_util.tree_leaves(one.params))
    replicated = sum(v.nbytes for p, v in flatten(one.params).items() if not any(
        a == "model" or (isinstance(a, tuple) and "model" in a) for a in flat[p].sharding.spec))
    per_device = bytes_per_device(sharded.params)
    assert len(per_device) == 8 and max(per_device.values()) <= total / 4 + replicated, (per_device, total, replicated)

    ids, mask = _inputs(name)
    kwargs = {"decoder_input_ids": ids[:, :5]} if name == "t5" else {}
    a = np.asarray(one(input_ids=ids, attention_mask=mask, **kwargs).logits)
    b = np.asarray(sharded(input_ids=ids, attention_mask=mask, **kwargs).logits)
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)
    if name != "bert":
        for settings in (dict(do_sample=False), dict(do_sample=False, num_beams=3)):
            want = one.generate(ids, attention_mask=mask, max_new_tokens=6, **settings)
            got = sharded.generate(ids, attention_mask=mask, max_new_tokens=6, **settings)
            np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


@pytest.mark.mesh
def test_the_kv_cache_is_split_over_batch_and_heads(checkpoints):
    from fxformers import create_mesh
    from fxformers.sharding import constrain_kv_cache

    mesh = create_mesh(data=2, model=4)
    model = _load("llama", checkpoints, mesh=mesh)
    ids, mask = _inputs("llama")

    @jax.jit
    def prefill(params, ids, mask):
        return constrain_kv_cache(model.prepare_generation(params, ids, mask, 16)[1], mesh)

    cache = prefill(model.params, ids, mask)["cache"][0]["key"]  # [B, L, K, H]
    assert cache.sharding.spec == jax.sharding.PartitionSpec("data", None, "model")  # fsdp has size 1 here
    assert cache.addressable_shards[0].data.shape == (2, 16, 1, 16)


@pytest.mark.mesh
def test_save_from_a_mesh_loads_in_transformers(checkpoints, tmp_path):
    import torch
    import transformers

    from fxformers import create_mesh

    sharded = _load("llama", checkpoints, mesh=create_mesh(data=2, fsdp=2, model=2))
    sharded.save_pretrained(tmp_path, max_shard_size="100KB")  # several shard files, gathered tensor by tensor
    assert (tmp_path / "model.safetensors.index.json").exists()
    theirs = transformers.LlamaForCausalLM.from_pretrained(tmp_path).state_dict()
    original = transformers.LlamaForCausalLM.from_pretrained(checkpoints["llama"][0]).state_dict()
    assert theirs.keys() == original.keys()
    for key in original:
        assert torch.equal(theirs[key], original[key]), key


@pytest.mark.mesh
def test_a_new_head_on_a_mesh_is_the_unsharded_init(checkpoints):
    from fxformers import AutoModelForSequenceClassification, create_mesh

    folder = checkpoints["bert-encoder"][0]
    one = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=4, seed=3)
    sharded = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=4, seed=3,
                                                                 mesh=create_mesh(data=2, model=4))
    for path, value in flatten(one.params).items():
        np.testing.assert_array_equal(np.asarray(flatten(sharded.params)[path]), np.asarray(value), err_msg=path)
    assert flatten(sharded.params)["classifier/kernel"].sharding.mesh.shape["model"] == 4


@pytest.mark.mesh
def test_custom_partition_rules_and_their_errors(checkpoints):
    from jax.sharding import PartitionSpec as P

    from fxformers import create_mesh

    mesh = create_mesh(model=8)
    everything_replicated = [(r".*", P())]
    model = _load("llama", checkpoints, mesh=mesh, partition_rules=everything_replicated)
    assert all(v.sharding.is_fully_replicated for v in jax.tree_util.tree_leaves(model.params))
    with pytest.raises(ValueError, match="no partition rule covers"):
        _load("llama", checkpoints, mesh=mesh, partition_rules=[(r"kernel$", P("fsdp", "model"))])


# -- training on the mesh ---------------------------------------------------------------------------------------------
def _lm_rows(n=32, length=12, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(3, 128, size=(n, length)).astype(np.int32)
    return [{"input_ids": row, "attention_mask": np.ones_like(row), "labels": row} for row in ids]


def _train(checkpoints, out, mesh, per_device, resume=None, **kwargs):
    from fxformers import TrainingArguments
    from fxformers.training import Trainer

    model = _load("llama", checkpoints, mesh=mesh)
    args = TrainingArguments(output_dir=str(out), learning_rate=1e-2, per_device_train_batch_size=per_device,
                             max_steps=4, warmup_steps=1, weight_decay=0.01, logging_steps=2, save_steps=2, seed=5,
                             disable_tqdm=True, **kwargs)
    trainer = Trainer(model, args, train_dataset=_lm_rows())
    trainer.train(resume_from_checkpoint=resume)
    return trainer


@pytest.fixture(scope="module")
def one_device_run(checkpoints, tmp_path_factory):
    from fxformers import create_mesh

    trainer = _train(checkpoints, tmp_path_factory.mktemp("one"), create_mesh(devices=jax.devices()[:1]), 8)
    return {p: np.asarray(v) for p, v in flatten(trainer.model.params).items()}


def _assert_params_close(params, reference):
    got = {p: np.asarray(v) for p, v in flatten(params).items()}
    assert got.keys() == reference.keys()
    for path in reference:
        np.testing.assert_allclose(got[path], reference[path], rtol=1e-5, atol=1e-5, err_msg=path)


@pytest.mark.mesh
def test_trainer_on_data_fsdp_model_mesh_equals_one_device(checkpoints, one_device_run, tmp_path):
    from fxformers import create_mesh

    trainer = _train(checkpoints, tmp_path, create_mesh(data=2, fsdp=2, model=2), 2)  # global batch 8, as above
    _assert_params_close(trainer.model.params, one_device_run)
    # every array the trainer created: params and both Adam moments of every matrix are split, none whole on a device
    leaves = jax.tree_util.tree_flatten_with_path(trainer.train_state)[0]
    matrices = [(jax.tree_util.keystr(k), v) for k, v in leaves if getattr(v, "ndim", 0) >= 2]
    assert len(matrices) >= 3 * 15  # params, mu, nu of every kernel and embedding
    for name, value in matrices:
        shard = value.addressable_shards[0].data.shape
        assert np.prod(shard) * 4 <= np.prod(value.shape), (name, value.shape, value.sharding.spec)


@pytest.mark.mesh
def test_a_checkpoint_resumes_on_another_layout(checkpoints, one_device_run, tmp_path):
    from fxformers import create_mesh

    _train(checkpoints, tmp_path, create_mesh(data=2, fsdp=2, model=2), 2)  # writes checkpoint-2 and -4
    resumed = _train(checkpoints, tmp_path, create_mesh(data=1, fsdp=2, model=4), 4,
                     resume=str(tmp_path / "checkpoint-2"))
    assert resumed.global_step == 4
    _assert_params_close(resumed.model.params, one_device_run)


@pytest.mark.mesh
def test_pipelines_take_a_mesh_loaded_model():
    from fxformers import AutoModel, AutoTokenizer, create_mesh, pipeline
    from fxformers.testing_assets import minilm_path

    path = minilm_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    texts = ["A man is eating food.", "A short one.", "Someone plays a large guitar on a sunny stage today."]
    one = pipeline("feature-extraction", model=AutoModel.from_pretrained(path), tokenizer=tokenizer)(texts)
    sharded_model = AutoModel.from_pretrained(path, mesh=create_mesh(data=2, model=4))
    sharded = pipeline("feature-extraction", model=sharded_model, tokenizer=tokenizer)(texts)
    for a, b in zip(one, sharded):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-5)


def test_param_dtype_bfloat16_keeps_params_and_adam_state_in_bf16(tmp_path):
    import jax.numpy as jnp

    from fxformers import LlamaConfig, LlamaForCausalLM, TrainingArguments
    from fxformers.training import Trainer

    model = LlamaForCausalLM(LlamaConfig(**dict(_LLAMA, vocab_size=128)))
    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=4, max_steps=3, learning_rate=1e-2,
                             save_strategy="no", param_dtype="bfloat16", disable_tqdm=True)
    rows = _lm_rows(n=12, length=8)
    trainer = Trainer(model, args, train_dataset=rows)
    first = trainer.evaluate(rows)["eval_loss"]
    trainer.train()
    floats = [x for x in jax.tree_util.tree_leaves((trainer.train_state.params, trainer.train_state.opt_state))
              if jnp.issubdtype(x.dtype, jnp.floating) and x.ndim >= 1]
    assert floats and all(x.dtype == jnp.bfloat16 for x in floats), {str(x.dtype) for x in floats}
    assert trainer.evaluate(rows)["eval_loss"] < first
