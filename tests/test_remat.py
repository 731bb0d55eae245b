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
ENCODER = dict(vocab_size=64, num_hidden_layers=4, **SMALL)
DECODER = dict(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=4, num_attention_heads=2,
               num_key_value_heads=1, max_position_embeddings=512)
SEQ2SEQ = dict(vocab_size=64, d_model=16, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
               decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=512)
# (model_type, class, config) for each architecture family present; the tiny shapes make the layer stack dominate.
FAMILIES = [
    ("bert", "BertForMaskedLM", ENCODER),
    ("roberta", "RobertaForMaskedLM", dict(ENCODER, max_position_embeddings=520)),
    ("xlm-roberta", "XLMRobertaForSequenceClassification", dict(ENCODER, max_position_embeddings=520)),
    ("distilbert", "DistilBertForMaskedLM", dict(vocab_size=64, dim=16, n_layers=4, n_heads=2, hidden_dim=32,
                                                  max_position_embeddings=512)),
    ("gpt2", "GPT2LMHeadModel", dict(vocab_size=64, n_embd=16, n_layer=4, n_head=2, n_positions=512)),
    ("llama", "LlamaForCausalLM", DECODER),
    ("mistral", "MistralForCausalLM", DECODER),
    ("qwen2", "Qwen2ForCausalLM", DECODER),
    ("t5", "T5ForConditionalGeneration", dict(vocab_size=64, d_model=16, d_kv=8, d_ff=32, num_layers=2,
                                               num_decoder_layers=2, num_heads=2)),
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
    batch = batch_for(model, 64, seq2seq)
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
    assert activation_bytes(loss_for(model, batch), model.params) == plain_bytes


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


def test_trainer_gradient_checkpointing_trains_the_same(tmp_path):
    """TrainingArguments(gradient_checkpointing=True): the same params after 2 steps with dropout on."""
    config = AutoConfig.for_model("bert", **dict(ENCODER, num_hidden_layers=2, num_labels=2))
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 64, (16, 12)).astype(np.int32)
    data = {"input_ids": ids, "attention_mask": np.ones_like(ids), "label": (ids[:, 0] > 32).astype(np.int64)}
    results = []
    for on in (False, True):
        model = _load("bert", "BertForSequenceClassification")(config.__class__(**config.to_dict()), seed=0)
        args = TrainingArguments(output_dir=str(tmp_path / str(on)), per_device_train_batch_size=8, max_steps=2,
                                 learning_rate=1e-3, save_strategy="no", disable_tqdm=True, gradient_checkpointing=on)
        Trainer(model, args, train_dataset=data).train()
        assert model.is_gradient_checkpointing == on
        results.append(flatten(jax.device_get(model.params)))
    for path in results[0]:
        np.testing.assert_allclose(results[1][path], results[0][path], rtol=1e-6, atol=1e-6, err_msg=path)
