"""Gradient checkpointing: every architecture's layers under jax.checkpoint give the same loss and gradients, the
same param tree, and far fewer activations saved for the backward pass (counted with saved_residuals)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax._src.ad_checkpoint import saved_residuals

from fxformers.auto import AutoConfig, _load
from fxformers.convert import flatten
from fxformers.training import Trainer, TrainingArguments

SMALL = dict(hidden_size=16, num_attention_heads=2, intermediate_size=32, max_position_embeddings=512)
ENCODER = dict(vocab_size=64, num_hidden_layers=2, **SMALL)
DECODER = dict(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=4, num_attention_heads=2,
               num_key_value_heads=1, max_position_embeddings=512)
DECODER_2 = dict(DECODER, num_hidden_layers=2)
SEQ2SEQ = dict(vocab_size=64, d_model=16, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
               decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=512)
# (model_type, class, config) for each layer stack in the library; the tiny shapes make the layer stack dominate.
# XLM-RoBERTa runs RoBERTa's modules and Mistral / Qwen2 run Llama's (only their configs differ), so the RoBERTa
# and Llama cases cover them; test_every_family_builds_its_layers_through_maybe_remat checks that they do.
FAMILIES = [
    ("bert", "BertForMaskedLM", ENCODER),
    ("roberta", "RobertaForMaskedLM", dict(ENCODER, max_position_embeddings=520)),
    ("distilbert", "DistilBertForMaskedLM", dict(vocab_size=64, dim=16, n_layers=2, n_heads=2, hidden_dim=32,
                                                  max_position_embeddings=512)),
    ("gpt2", "GPT2LMHeadModel", dict(vocab_size=64, n_embd=16, n_layer=2, n_head=2, n_positions=512)),
    ("llama", "LlamaForCausalLM", DECODER_2),
    ("t5", "T5ForConditionalGeneration", dict(vocab_size=64, d_model=16, d_kv=8, d_ff=32, num_layers=2,
                                               num_decoder_layers=2, num_heads=2, decoder_start_token_id=0, pad_token_id=0)),
    ("bart", "BartForConditionalGeneration", SEQ2SEQ),
    ("mbart", "MBartForConditionalGeneration", SEQ2SEQ),
]


def activation_bytes(loss, params):
    """Bytes the backward pass keeps from the forward (residuals), leaving out the inputs themselves."""
    return sum(int(np.prod(aval.shape)) * aval.dtype.itemsize
               for aval, source in saved_residuals(loss, params) if "argument" not in source)


def batch_for(model, length, seq2seq):
    ids = jnp.asarray(np.random.default_rng(0).integers(3, 64, (2, length)), jnp.int32)
    mask = jnp.ones_like(ids).at[1, length - 5:].set(0)  # one padded row
    batch = {"input_ids": ids, "attention_mask": mask}
    if seq2seq:
        batch["labels"] = ids[:, : length // 2]
    elif "SequenceClassification" in type(model).__name__:
        batch["labels"] = jnp.array([0, 1])
    else:
        batch["labels"] = ids
    return batch


def loss_for(model, batch):
    def loss(params):
        return model.module.apply({"params": params}, **batch, deterministic=True).loss

    return loss


@pytest.mark.parametrize("model_type, class_name, kwargs", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_checkpointed_layers_same_gradients_fewer_activations(model_type, class_name, kwargs):
    config = AutoConfig.for_model(model_type, **kwargs)
    model = _load(model_type, class_name)(config, seed=0)
    seq2seq = model_type in ("t5", "bart", "mbart")
    batch = batch_for(model, 32, seq2seq)
    plain_bytes = activation_bytes(loss_for(model, batch), model.params)
    plain_loss, plain_grads = jax.jit(jax.value_and_grad(loss_for(model, batch)))(model.params)

    model.gradient_checkpointing_enable()
    assert model.is_gradient_checkpointing
    shapes = jax.eval_shape(lambda: model.module.init(jax.random.PRNGKey(0), **model.dummy_inputs())["params"])
    assert flatten(shapes).keys() == flatten(model.params).keys()  # remat changes no param name
    remat_bytes = activation_bytes(loss_for(model, batch), model.params)
    remat_loss, remat_grads = jax.jit(jax.value_and_grad(loss_for(model, batch)))(model.params)
    assert float(remat_loss) == pytest.approx(float(plain_loss), rel=1e-6)
    for (path, a), b in zip(flatten(plain_grads).items(), flatten(remat_grads).values()):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-6, atol=1e-6, err_msg=path)
    assert remat_bytes * 2 <= plain_bytes, (remat_bytes, plain_bytes)
    assert "gradient_checkpointing" not in config.to_json_string()  # never written to config.json

    model.gradient_checkpointing_disable()
    assert not model.is_gradient_checkpointing


def test_llama_8_layers_at_512_tokens():
    """The issue's acceptance case: 8 layers, 512 tokens, both policies; gradients equal to 1e-6."""
    config = AutoConfig.for_model("llama", **dict(DECODER, num_hidden_layers=8))
    model = _load("llama", "LlamaForCausalLM")(config, seed=0)
    batch = batch_for(model, 512, False)
    plain = activation_bytes(loss_for(model, batch), model.params)
    grads = jax.jit(jax.grad(loss_for(model, batch)))(model.params)
    for policy, factor in (("nothing_saveable", 20), ("dots_with_no_batch_dims_saveable", 2)):
        model.gradient_checkpointing_enable({"policy": policy})
        saved = activation_bytes(loss_for(model, batch), model.params)
        assert saved * factor <= plain, (policy, saved, plain)
        if policy == "nothing_saveable":
            remat_grads = jax.jit(jax.grad(loss_for(model, batch)))(model.params)
            for (path, a), b in zip(flatten(grads).items(), flatten(remat_grads).values()):
                np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-6, atol=1e-6, err_msg=path)


def test_unknown_policy_is_named():
    config = AutoConfig.for_model("gpt2", **FAMILIES[4][2])
    model = _load("gpt2", "GPT2LMHeadModel")(config, seed=0)
    with pytest.raises(ValueError, match="nothing_saveable"):
        model.gradient_checkpointing_enable({"policy": "save_everything_please"})


def test_trainer_switches_it_on(tmp_path):
    """TrainingArguments(gradient_checkpointing=True) turns it on for the model the Trainer trains: the loss the
    train step differentiates then holds one checkpointed region per layer."""
    from fxformers.training.steps import loss_fn_for

    config = AutoConfig.for_model("bert", **dict(ENCODER, num_labels=2))
    model = _load("bert", "BertForSequenceClassification")(config, seed=0)
    ids = np.ones((2, 8), np.int32)
    data = {"input_ids": ids, "attention_mask": ids, "label": np.array([0, 1])}
    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=2, max_steps=1, save_strategy="no",
                             disable_tqdm=True, gradient_checkpointing=True,
                             gradient_checkpointing_kwargs={"use_reentrant": False})  # a PyTorch-only key: ignored
    trainer = Trainer(model, args, train_dataset=data)
    assert not model.is_gradient_checkpointing
    assert np.isfinite(trainer.train().training_loss)
    assert model.is_gradient_checkpointing
    batch = {"input_ids": ids, "attention_mask": ids, "labels": np.array([0, 1])}
    jaxpr = str(jax.make_jaxpr(jax.grad(lambda p: loss_fn_for(model)(p, batch, jax.random.PRNGKey(0))[0]))(model.params))
    assert jaxpr.count("checkpoint[") + jaxpr.count("remat") >= config.num_hidden_layers


@pytest.mark.parametrize("model_type, class_name", [
    ("xlm-roberta", "XLMRobertaForMaskedLM"), ("mistral", "MistralForCausalLM"), ("qwen2", "Qwen2ForCausalLM"),
    ("qwen3", "Qwen3ForCausalLM"), ("gemma", "GemmaForCausalLM"), ("gemma2", "Gemma2ForCausalLM"),
    ("gemma3_text", "Gemma3ForCausalLM"), ("mixtral", "MixtralForCausalLM"), ("qwen3_moe", "Qwen3MoeForCausalLM"),
    ("phi3", "Phi3ForCausalLM"),
])
def test_every_family_builds_its_layers_through_maybe_remat(model_type, class_name):
    """The families that share another's modules, or build their own decoder stacks, get checkpointed layers too
    (traced, not compiled)."""
    kwargs = dict(ENCODER, max_position_embeddings=520) if model_type == "xlm-roberta" else dict(DECODER_2, head_dim=8)
    model = _load(model_type, class_name)(AutoConfig.for_model(model_type, **kwargs), seed=0)
    model.gradient_checkpointing_enable()
    ids = jnp.ones((1, 16), jnp.int32)
    loss = lambda p: model.module.apply({"params": p}, input_ids=ids, attention_mask=ids, labels=ids).loss
    jaxpr = str(jax.make_jaxpr(jax.grad(loss))(model.params))
    assert jaxpr.count("checkpoint[") + jaxpr.count("remat") >= 2, model_type
