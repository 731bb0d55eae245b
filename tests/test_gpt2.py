"""GPT-2 parity with PyTorch transformers: every checkpoint format, padded batches, heads, losses, round trips."""

import numpy as np
import pytest
import torch
import transformers

import fxformers
from decoder_helpers import left_padded_batch, rel_err, save, torch_forward

VOCAB = 99
PAD = 0


def tiny_config(**overrides):
    kwargs = dict(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=32, bos_token_id=98, eos_token_id=98,
                  pad_token_id=PAD)
    kwargs.update(overrides)
    return transformers.GPT2Config(**kwargs)


def torch_model(cls="GPT2LMHeadModel", seed=0, **overrides):
    torch.manual_seed(seed)
    return getattr(transformers, cls)(tiny_config(**overrides)).eval()


@pytest.mark.parametrize("fmt", ["safetensors", "sharded", "bin"])
def test_lm_head_logits_every_format(tmp_path, fmt):
    tm = torch_model()
    fm = fxformers.AutoModelForCausalLM.from_pretrained(save(tm, tmp_path / fmt, fmt))
    assert type(fm).__name__ == "GPT2LMHeadModel"
    ids, mask = left_padded_batch(VOCAB, PAD)
    ref = torch_forward(tm, ids, mask).logits.numpy()
    out = fm(ids, attention_mask=mask).logits
    assert out.dtype == np.float32
    assert rel_err(out, ref, mask == 1) <= 1e-5


@pytest.mark.parametrize(
    "overrides",
    [dict(tie_word_embeddings=False), dict(scale_attn_by_inverse_layer_idx=True, activation_function="gelu"),
     dict(scale_attn_weights=False, n_inner=50)],
    ids=["untied", "inverse-layer-idx", "unscaled"],
)
def test_config_variants(tmp_path, overrides):
    tm = torch_model(**overrides)
    tm.save_pretrained(tmp_path)
    fm = fxformers.GPT2LMHeadModel.from_pretrained(tmp_path)
    ids, mask = left_padded_batch(VOCAB, PAD)
    ids, mask = ids[:, ::-1].copy(), mask[:, ::-1].copy()  # right padding, as for training
    labels = np.where(mask == 1, ids, -100)
    ref = torch_forward(tm, ids, mask, labels=torch.tensor(labels))
    out = fm(ids, attention_mask=mask, labels=labels)
    assert rel_err(out.logits, ref.logits.numpy(), mask == 1) <= 1e-5
    assert abs(float(out.loss) - float(ref.loss)) <= 1e-5 * abs(float(ref.loss))


def test_base_model_hidden_states_and_prefix_free_loading(tmp_path):
    tm = torch_model("GPT2Model")
    tm.save_pretrained(tmp_path)
    ids, mask = left_padded_batch(VOCAB, PAD)
    ref = torch_forward(tm, ids, mask, output_hidden_states=True)
    for cls in (fxformers.GPT2Model, fxformers.AutoModel):
        out = cls.from_pretrained(tmp_path)(ids, attention_mask=mask, output_hidden_states=True)
        assert rel_err(out.last_hidden_state, ref.last_hidden_state.numpy(), mask == 1) <= 1e-5
        assert len(out.hidden_states) == len(ref.hidden_states)
        for a, b in zip(out.hidden_states, ref.hidden_states):
            assert rel_err(a, b.numpy(), mask == 1) <= 1e-5
    # a base checkpoint loads under the LM head (prefix added, tied head) and the LM checkpoint under the base
    lm = fxformers.GPT2LMHeadModel.from_pretrained(tmp_path)
    assert rel_err(lm(ids, attention_mask=mask).logits, (ref.last_hidden_state @ tm.wte.weight.T).detach().numpy(), mask == 1) <= 1e-5


@pytest.mark.parametrize("side", ["left", "right"])
def test_sequence_classification_pools_last_non_pad_token(tmp_path, side):
    tm = torch_model("GPT2ForSequenceClassification", num_labels=3)
    tm.save_pretrained(tmp_path)
    fm = fxformers.AutoModelForSequenceClassification.from_pretrained(tmp_path)
    assert type(fm).__name__ == "GPT2ForSequenceClassification"
    ids, mask = left_padded_batch(VOCAB, PAD)
    if side == "right":
        ids, mask = ids[:, ::-1].copy(), mask[:, ::-1].copy()
    labels = np.array([0, 2, 1])
    ref = torch_forward(tm, ids, mask, labels=torch.tensor(labels))
    out = fm(ids, attention_mask=mask, labels=labels)
    assert out.logits.shape == (3, 3)
    assert rel_err(out.logits, ref.logits.numpy()) <= 1e-5
    assert abs(float(out.loss) - float(ref.loss)) <= 1e-5 * abs(float(ref.loss))


@pytest.mark.parametrize("tied", [True, False])
def test_save_pretrained_round_trip_loads_in_transformers(tmp_path, tied):
    tm = torch_model(tie_word_embeddings=tied)
    tm.save_pretrained(tmp_path / "torch")
    fm = fxformers.GPT2LMHeadModel.from_pretrained(tmp_path / "torch")
    fm.save_pretrained(tmp_path / "ours")
    back, info = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "ours", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    ids, mask = left_padded_batch(VOCAB, PAD)
    ref = torch_forward(tm, ids, mask).logits.numpy()
    assert rel_err(torch_forward(back.eval(), ids, mask).logits.numpy(), ref, mask == 1) <= 1e-6
    again = fxformers.GPT2LMHeadModel.from_pretrained(tmp_path / "ours")
    assert rel_err(again(ids, attention_mask=mask).logits, ref, mask == 1) <= 1e-5


def test_inputs_longer_than_the_context_are_rejected(tmp_path):
    fm = fxformers.GPT2LMHeadModel(fxformers.GPT2Config(**tiny_config().to_dict()))
    too_long = np.ones((1, 40), np.int32)
    with pytest.raises(ValueError, match="n_positions|max_position_embeddings"):
        fm(too_long)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        fm.generate(np.ones((1, 20), np.int32), max_new_tokens=20)
