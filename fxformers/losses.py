"""Losses with PyTorch's semantics (mean over non-ignored targets, ignore_index=-100)."""

from __future__ import annotations

import jax.numpy as jnp
import optax


def cross_entropy(logits, labels, ignore_index: int = -100):
    """logits [..., C], labels [...] int; mean over labels != ignore_index (nan when all are ignored, as in torch)."""
    logits = logits.astype(jnp.float32)
    valid = labels != ignore_index
    safe = jnp.where(valid, labels, 0)
    per_token = optax.softmax_cross_entropy_with_integer_labels(logits, safe)
    return jnp.where(valid, per_token, 0.0).sum() / valid.sum()


def mse(predictions, targets):
    return jnp.mean((predictions.astype(jnp.float32) - targets.astype(jnp.float32)) ** 2)


def bce_with_logits(logits, targets):
    return optax.sigmoid_binary_cross_entropy(logits.astype(jnp.float32), targets.astype(jnp.float32)).mean()


def sequence_classification_loss(logits, labels, num_labels: int, problem_type):
    """Transformers' choice of loss for sequence classification heads (regression / single / multi label)."""
    if problem_type is None:
        if num_labels == 1:
            problem_type = "regression"
        elif jnp.issubdtype(labels.dtype, jnp.integer):
            problem_type = "single_label_classification"
        else:
            problem_type = "multi_label_classification"
    if problem_type == "regression":
        if num_labels == 1:
            return mse(logits.squeeze(-1), labels.squeeze() if labels.ndim > 1 else labels)
        return mse(logits, labels)
    if problem_type == "single_label_classification":
        return cross_entropy(logits.reshape(-1, num_labels), labels.reshape(-1))
    return bce_with_logits(logits, labels)


def span_loss(start_logits, end_logits, start_positions, end_positions):
    """Question answering: positions outside the sequence are clamped to its length and ignored, as in Transformers."""
    ignored = start_logits.shape[1]
    start = jnp.clip(start_positions.reshape(-1), 0, ignored)
    end = jnp.clip(end_positions.reshape(-1), 0, ignored)
    return (cross_entropy(start_logits, start, ignored) + cross_entropy(end_logits, end, ignored)) / 2


def shifted_lm_loss(logits, labels):
    """Causal LM: predict token t+1 from position t; -100 labels ignored."""
    return cross_entropy(logits[:, :-1, :], labels[:, 1:])

