"""ModernBERT parity with transformers: alternating global / windowed attention (windows shorter than the text),
separate rotary bases, GeGLU, optional biases, cls / mean pooling, every head, losses, save round trip."""

from __future__ import annotations

import jax
import numpy as np
import pytest
import torch
import transformers

import fxformers
from fxformers.convert import flatten

HEADS = ["Model", "ForMaskedLM", "ForSequenceClassification", "ForTokenClassification", "ForQuestionAnswering"]
VOCAB = 101
BASE = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=40, num_hidden_layers=4, num_attention_heads=4,
            local_attention=8, global_attn_every_n_layers=2, pad_token_id=0, bos_token_id=1, eos_token_id=2,
            cls_token_id=1, sep_token_id=2, max_position_embeddings=64)
CONFIGS = {
    "base": dict(),
    "biases-mean": dict(attention_bias=True, mlp_bias=True, norm_bias=True, classifier_bias=True,
                        classifier_pooling="mean", global_rope_theta=5000.0, local_rope_theta=300.0,
                        global_attn_every_n_layers=3, local_attention=6, hidden_activation="gelu_new",
                        tie_word_embeddings=False, decoder_bias=False),
}


def rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


def torch_model(head: str, name: str, seed: int = 0, **overrides):
    config = transformers.ModernBertConfig(**{**BASE, **CONFIGS[name], **overrides})
    config._attn_implementation = "eager"
    torch.manual_seed(seed)
    return getattr(transformers, "ModernBert" + head)(config).eval()


def batch(seed: int = 0):
    rng = np.random.RandomState(seed)
    ids = rng.randint(3, VOCAB, (2, 20))  # longer than every window
    mask = np.ones_like(ids)
    ids[1, 13:], mask[1, 13:] = 0, 0
    return {"input_ids": ids, "attention_mask": mask}


def run_torch(model, inputs, **kwargs):
    with torch.no_grad():
        return model(**{k: torch.tensor(v) for k, v in inputs.items()}, **kwargs)


def key(head):
    return {"Model": "last_hidden_state", "ForQuestionAnswering": "start_logits"}.get(head, "logits")


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("head", HEADS)
def test_every_head_matches_pytorch(tmp_path, head, name):
    tm = torch_model(head, name)
    tm.save_pretrained(tmp_path)
    fm = getattr(fxformers, "ModernBert" + head).from_pretrained(tmp_path)
    inputs = batch()
    ref = run_torch(tm, inputs, output_hidden_states=True, output_attentions=True)
    out = fm(**inputs, output_hidden_states=True, output_attentions=True)
    mask = inputs["attention_mask"].astype(bool)
    real = (lambda a: np.asarray(a)[mask]) if head in ("Model", "ForMaskedLM", "ForTokenClassification") else np.asarray
    assert rel(real(out[key(head)]), real(ref[key(head)])) < 1e-5
    if head == "ForQuestionAnswering":
        assert rel(out.end_logits, ref.end_logits) < 1e-5
    assert len(out.attentions) == len(ref.attentions)
    for ours, theirs in zip(out.attentions, ref.attentions):
        assert rel(ours, theirs) < 1e-5
    assert len(out.hidden_states) == len(ref.hidden_states)
    for ours, theirs in zip(out.hidden_states, ref.hidden_states):
        assert rel(np.asarray(ours)[mask], np.asarray(theirs)[mask]) < 1e-5
