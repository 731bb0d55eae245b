"""fxformers.optimization against PyTorch/Transformers: schedules, AdamW, clipping, decay mask, freezing."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from fxformers import optimization as opt  # noqa: E402

T, W, LR = 57, 7, 3e-4


def torch_lrs(make, steps):
    """The learning rate Transformers' scheduler gives each optimizer update 0 .. steps-1."""
    p = torch.nn.Parameter(torch.zeros(1))
    o = torch.optim.AdamW([p], lr=LR)
    sched = make(o)
    lrs = []
    for _ in range(steps):
        lrs.append(sched.get_last_lr()[0])
        o.step()
        sched.step()
    return np.array(lrs)


@pytest.mark.parametrize(
    "name, ours, theirs",
    [
        ("linear", lambda: opt.get_linear_schedule_with_warmup(LR, W, T),
         lambda o: transformers.get_linear_schedule_with_warmup(o, W, T)),
        ("linear_no_warmup", lambda: opt.get_linear_schedule_with_warmup(LR, 0, T),
         lambda o: transformers.get_linear_schedule_with_warmup(o, 0, T)),
        ("cosine", lambda: opt.get_cosine_schedule_with_warmup(LR, W, T),
         lambda o: transformers.get_cosine_schedule_with_warmup(o, W, T)),
        ("cosine_1.5", lambda: opt.get_cosine_schedule_with_warmup(LR, W, T, num_cycles=1.5),
         lambda o: transformers.get_cosine_schedule_with_warmup(o, W, T, num_cycles=1.5)),
        ("cosine_restarts", lambda: opt.get_cosine_with_hard_restarts_schedule_with_warmup(LR, W, T, num_cycles=3),
         lambda o: transformers.get_cosine_with_hard_restarts_schedule_with_warmup(o, W, T, num_cycles=3)),
        ("constant_with_warmup", lambda: opt.get_constant_schedule_with_warmup(LR, W),
         lambda o: transformers.get_constant_schedule_with_warmup(o, W)),
        ("constant", lambda: opt.get_constant_schedule(LR), lambda o: transformers.get_constant_schedule(o)),
        ("polynomial", lambda: opt.get_polynomial_decay_schedule_with_warmup(LR, W, T, lr_end=1e-6, power=2.0),
         lambda o: transformers.get_polynomial_decay_schedule_with_warmup(o, W, T, lr_end=1e-6, power=2.0)),
        ("inverse_sqrt", lambda: opt.get_inverse_sqrt_schedule(LR, W),
         lambda o: transformers.get_inverse_sqrt_schedule(o, W)),
    ],
)
def test_schedule_equals_transformers_at_every_step(name, ours, theirs):
    steps = T + 10  # past the end too
    expected = torch_lrs(theirs, steps)
    schedule = ours()
    got = np.asarray(jax.jit(schedule)(jnp.arange(steps)))  # every step at once, as optax calls it under jit
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-12, err_msg=name)
    for i in (0, W, T, T + 3):  # and with plain Python ints
        np.testing.assert_allclose(float(schedule(i)), expected[i], rtol=1e-6, atol=1e-12, err_msg=f"{name} step {i}")


@pytest.mark.parametrize("name", ["linear", "cosine", "cosine_with_restarts", "polynomial", "constant",
                                  "constant_with_warmup", "inverse_sqrt"])
def test_get_scheduler_by_name_matches_transformers(name):
    expected = torch_lrs(lambda o: transformers.get_scheduler(name, o, num_warmup_steps=W, num_training_steps=T), T)
    schedule = opt.get_scheduler(name, LR, W, T)
    np.testing.assert_allclose([float(schedule(i)) for i in range(T)], expected, rtol=1e-6, atol=1e-12)


def test_unknown_scheduler_is_named():
    with pytest.raises(ValueError, match="warmup_stable_nonsense"):
        opt.get_scheduler("warmup_stable_nonsense", 1e-3, 0, 10)


def _tree(rng):
    return {
        "dense": {"kernel": rng.normal(size=(4, 3)).astype(np.float32), "bias": rng.normal(size=(3,)).astype(np.float32)},
        "LayerNorm": {"scale": rng.normal(size=(3,)).astype(np.float32), "bias": rng.normal(size=(3,)).astype(np.float32)},
        "embed": {"embedding": rng.normal(size=(5, 3)).astype(np.float32)},
    }


def test_adamw_with_clipping_matches_torch():
    """create_optimizer == torch AdamW + clip_grad_norm_ + Transformers' schedule and no-decay groups."""
    rng = np.random.default_rng(0)
    params = _tree(rng)
    steps, wd, clip = 12, 0.1, 0.5
    grads_seq = [jax.tree_util.tree_map(lambda p: rng.normal(size=p.shape).astype(np.float32) * 3, params) for _ in range(steps)]

    tx, _ = opt.create_optimizer(1e-2, num_training_steps=steps, num_warmup_steps=3, weight_decay=wd, max_grad_norm=clip)
    p, s = jax.tree_util.tree_map(jnp.asarray, params), None
    s = tx.init(p)
    for g in grads_seq:
        u, s = tx.update(g, s, p)
        p = optax.apply_updates(p, u)

    flat = {k: v for k, v in opt._flat_paths(params)}
    tparams = {k: torch.nn.Parameter(torch.tensor(v)) for k, v in flat.items()}
    decay = [v for k, v in tparams.items() if not opt.is_no_decay_path(k)]
    no_decay = [v for k, v in tparams.items() if opt.is_no_decay_path(k)]
    topt = torch.optim.AdamW([{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}], lr=1e-2,
                             betas=(0.9, 0.999), eps=1e-8)
    sched = transformers.get_linear_schedule_with_warmup(topt, 3, steps)
    for g in grads_seq:
        for k, v in opt._flat_paths(g):
            tparams[k].grad = torch.tensor(np.asarray(v))
        torch.nn.utils.clip_grad_norm_(list(tparams.values()), clip)
        topt.step()
        sched.step()
    for k, v in opt._flat_paths(p):
        np.testing.assert_allclose(np.asarray(v), tparams[k].detach().numpy(), rtol=2e-5, atol=2e-6, err_msg=k)


def _transformers_decay_names(model):
    from transformers.trainer_pt_utils import get_parameter_names

    patterns = [r"bias", r"layernorm", r"rmsnorm", r"(?:^|\.)norm(?:$|\.)", r"_norm(?:$|\.)"]
    return set(get_parameter_names(model, [torch.nn.LayerNorm], patterns))


@pytest.mark.parametrize("arch", ["bert", "roberta", "distilbert", "gpt2", "llama", "t5", "bart"])
def test_no_decay_rule_agrees_with_transformers_trainer(arch):
    """Our path rule, applied to each architecture's parameter names, picks Transformers' Trainer's decay set."""
    small = dict(vocab_size=64)
    configs = {
        "bert": transformers.BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8, **small),
        "roberta": transformers.RobertaConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8, **small),
        "distilbert": transformers.DistilBertConfig(dim=8, n_layers=1, n_heads=2, hidden_dim=8, **small),
        "gpt2": transformers.GPT2Config(n_embd=8, n_layer=1, n_head=2, **small),
        "llama": transformers.LlamaConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8, **small),
        "t5": transformers.T5Config(d_model=8, d_kv=4, d_ff=8, num_layers=1, num_heads=2, **small),
        "bart": transformers.BartConfig(d_model=8, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                                        decoder_attention_heads=2, encoder_ffn_dim=8, decoder_ffn_dim=8, **small),
    }
    model = transformers.AutoModelForCausalLM.from_config(configs[arch]) if arch in ("gpt2", "llama") else \
        transformers.AutoModel.from_config(configs[arch])
    expected = _transformers_decay_names(model)
    names = [n for n, _ in model.named_parameters()]
    ours = {n for n in names if not opt.is_no_decay_path(n.replace(".", "/"))}
    assert ours == expected & set(names)


def test_decay_mask_on_fxformers_bert_tree():
    from fxformers.models.bert.configuration import BertConfig
    from fxformers.models.bert.modeling import BertForSequenceClassificationModule

    config = BertConfig(vocab_size=32, hidden_size=8, num_hidden_layers=2, num_attention_heads=2, intermediate_size=8,
                        max_position_embeddings=16, num_labels=2)
    module = BertForSequenceClassificationModule(config)
    params = jax.eval_shape(lambda r: module.init(r, jnp.ones((1, 4), jnp.int32))["params"], jax.random.PRNGKey(0))
    flat = opt._flat_paths(opt.decay_mask(params))
    assert len(flat) > 30
    for path, decays in flat:
        leaf = path.split("/")[-1]
        assert decays == (leaf in ("kernel", "embedding")), path
        if "LayerNorm" in path:
            assert not decays


def test_freezing_keeps_params_bit_identical_and_no_state():
    rng = np.random.default_rng(1)
    params = jax.tree_util.tree_map(jnp.asarray, {"base": _tree(rng), "head": {"kernel": jnp.ones((3, 2))}})
    tx, _ = opt.create_optimizer(1e-1, num_training_steps=5, weight_decay=0.1, frozen="base")
    state = tx.init(params)
    p = params
    for _ in range(3):
        g = jax.tree_util.tree_map(lambda x: jnp.ones_like(x), p)
        u, state = tx.update(g, state, p)
        p = optax.apply_updates(p, u)
    for (k, a), (_, b) in zip(opt._flat_paths(params["base"]), opt._flat_paths(p["base"])):
        assert np.array_equal(np.asarray(a), np.asarray(b)), k
    assert not np.array_equal(np.asarray(p["head"]["kernel"]), np.asarray(params["head"]["kernel"]))
    # a predicate works too, and an unknown prefix is an error that names the top-level keys
    mask = opt.trainable_mask(params, lambda path, leaf: path.endswith("bias"))
    assert mask["base"]["dense"]["bias"] is False and mask["base"]["dense"]["kernel"] is True
    with pytest.raises(ValueError, match="bert.*top-level names are \\['base', 'head'\\]"):
        opt.trainable_mask(params, "bert")


def test_gradient_accumulation_averages_micro_batches():
    params = {"w": jnp.ones((3,))}
    acc, _ = opt.create_optimizer(1e-1, num_training_steps=4, gradient_accumulation_steps=2, max_grad_norm=None)
    one, _ = opt.create_optimizer(1e-1, num_training_steps=4, max_grad_norm=None)
    g1, g2 = {"w": jnp.array([1.0, 2.0, 3.0])}, {"w": jnp.array([3.0, 0.0, -1.0])}
    s = acc.init(params)
    u1, s = acc.update(g1, s, params)
    assert np.all(np.asarray(u1["w"]) == 0)
    u2, s = acc.update(g2, s, params)
    ref, _ = one.update({"w": (g1["w"] + g2["w"]) / 2}, one.init(params), params)
    np.testing.assert_allclose(np.asarray(u2["w"]), np.asarray(ref["w"]), rtol=1e-6)
