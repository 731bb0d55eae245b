"""Pure, jitted training and evaluation steps.

``train_step(state, batch, rng=None) -> (state, metrics)`` runs the model's own ``labels=`` loss with dropout on,
takes the gradient, and applies one optimizer update. It is a pure function of its inputs: the dropout key is
``fold_in(rng or state.rng, state.step)``, so a resumed run draws the same dropout masks as an uninterrupted one.

Shapes: B batch (global), A accumulation steps. ``batch`` is a dict of arrays ``[B, ...]``, or ``[A, B, ...]`` when
``accumulation_steps > 1`` (A micro-batches, gradients averaged, one update).
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import optax

from ..optimization import FreezeSpec, Schedule, global_norm, trainable_mask
from .train_state import TrainState


def _module_for(model: Any, compute_dtype: Any):
    """The model's linen module computing in ``compute_dtype`` (params stay float32: flax casts per op)."""
    if compute_dtype is None or jnp.dtype(compute_dtype) == jnp.dtype(model.dtype):
        return model.module
    return model.module.clone(dtype=jnp.dtype(compute_dtype))  # clone keeps the module's class (adapted models)


def label_smoothed_loss(logits: jax.Array, labels: jax.Array, epsilon: float, shift_labels: bool = False) -> jax.Array:
    """Transformers' ``LabelSmoother``: ``(1 - eps) * NLL + eps * mean over classes of -log p``, averaged over the
    labels that are not -100. logits [B, ..., V], labels [B, ...]; ``shift_labels`` for causal LMs (position t
    predicts label t + 1)."""
    if shift_labels:
        logits, labels = logits[..., :-1, :], labels[..., 1:]
    log_probs = -jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)  # [B, ..., V]
    if labels.ndim == log_probs.ndim - 1:
        labels = labels[..., None]
    padding = labels == -100
    safe = jnp.where(padding, 0, labels)
    nll = jnp.where(padding, 0.0, jnp.take_along_axis(log_probs, safe, axis=-1))
    smoothed = jnp.where(padding, 0.0, log_probs.sum(axis=-1, keepdims=True))
    active = padding.size - padding.sum()
    return (1 - epsilon) * nll.sum() / active + epsilon * smoothed.sum() / (active * log_probs.shape[-1])


def loss_fn_for(model: Any, compute_dtype: Any = None, label_smoothing: float = 0.0,
                shift_labels: bool = False) -> Callable:
    """``loss(params, batch, dropout_rng) -> (loss, outputs)`` from the model's own ``labels=`` loss (or the
    label-smoothed loss over its logits when ``label_smoothing > 0`` and the batch has ``labels``)."""
    module = _module_for(model, compute_dtype)

    def loss(params, batch, dropout_rng):
        if label_smoothing and "labels" in batch:  # Transformers: labels leave the batch, the smoother takes them
            inputs = {k: v for k, v in batch.items() if k != "labels"}
            out = module.apply({"params": params}, **inputs, deterministic=False, rngs={"dropout": dropout_rng})
            smoothed = label_smoothed_loss(out.logits, batch["labels"], label_smoothing, shift_labels)
            return smoothed, out.replace(loss=smoothed)
        out = module.apply({"params": params}, **batch, deterministic=False, rngs={"dropout": dropout_rng})
        if out.loss is None:
            raise ValueError(
                f"{type(model).__name__} returned no loss: the batch needs labels ({sorted(batch)} given). "
                "Add a `labels` column (or start_positions/end_positions for question answering)."
            )
        return out.loss.astype(jnp.float32), out

    return loss


def make_train_step(
    model: Any,
    tx: optax.GradientTransformation,
    *,
    schedule: Optional[Schedule] = None,
    frozen: FreezeSpec = None,
    compute_dtype: Any = None,
    accumulation_steps: int = 1,
    state_sharding: Any = None,
    batch_sharding: Any = None,
    donate: bool = True,
    label_smoothing: float = 0.0,
    shift_labels: bool = False,
) -> Callable[..., tuple[TrainState, dict]]:
    """Build the jitted ``train_step(state, batch, rng=None) -> (state, metrics)``.

    model: an fxformers model (its ``module`` and ``config``; its params are not used).
    tx: the optax transformation (``create_optimizer(...).tx``); schedule: reported as ``learning_rate``.
    frozen: the same spec given to ``create_optimizer``: those parameters get no gradient (their backward pass is
        skipped) and stay bit-identical.
    compute_dtype: e.g. ``jnp.bfloat16`` for bf16 compute over float32 master weights.
    accumulation_steps: A > 1 expects ``[A, B, ...]`` batches and averages A micro-batch gradients per update.
    state_sharding / batch_sharding: ``jax.sharding`` trees for ``jit`` (see ``training.sharding``); None lets
        JAX follow the inputs.

    A non-finite loss or gradient leaves params and optimizer state untouched (the step still counts);
    ``metrics["nonfinite"]`` says so, and the Trainer stops or skips on it.
    metrics: loss (mean over micro-batches), grad_norm (before clipping), learning_rate, nonfinite.
    """
    loss_fn = loss_fn_for(model, compute_dtype, label_smoothing, shift_labels)

    def gradients(params, batch, key, mask):
        """(loss, grads): with a mask, only the trainable leaves are differentiated (the frozen ones are closed over,
        so XLA has no backward pass, no gradient buffers and no accumulators for them) and the frozen leaves'
        gradients are scalar zeros (broadcast by the optimizer, never materialised at full size)."""
        trainable, rebuild, expand = split_trainable(params, mask)
        grad_fn = jax.value_and_grad(lambda t, b, k: loss_fn(rebuild(t), b, k), has_aux=True)
        if accumulation_steps == 1:
            (loss, _), grads = grad_fn(trainable, batch, key)
            return loss, expand(grads)

        def micro(carry, inputs):  # one micro-batch: add its loss and gradient to the running sums
            index, micro_batch = inputs
            (loss, _), grads = grad_fn(trainable, micro_batch, jax.random.fold_in(key, index))
            total_loss, total_grads = carry
            return (total_loss + loss, jax.tree_util.tree_map(jnp.add, total_grads, grads)), None

        zeros = jax.tree_util.tree_map(lambda p: jnp.zeros(p.shape, jnp.float32), trainable)
        (loss, grads), _ = jax.lax.scan(micro, (jnp.zeros((), jnp.float32), zeros), (jnp.arange(accumulation_steps), batch))
        scale = 1.0 / accumulation_steps
        return loss * scale, expand(jax.tree_util.tree_map(lambda g, p: (g * scale).astype(p.dtype), grads, trainable))

    def train_step(state: TrainState, batch: dict, rng: Optional[jax.Array] = None):
        key = jax.random.fold_in(state.rng if rng is None else rng, state.step)
        mask = trainable_mask(state.params, frozen) if frozen is not None else None  # Python bools, fixed at trace
        loss, grads = gradients(state.params, batch, key, mask)
        grad_norm = global_norm(grads)  # frozen leaves contribute scalar zeros
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        if mask is not None:
            params = jax.tree_util.tree_map(lambda m, new, old: new if m else old, mask, params, state.params)
        keep = lambda new, old: jax.tree_util.tree_map(lambda n, o: jnp.where(finite, n, o), new, old)
        examples = jax.tree_util.tree_leaves(batch)[0]
        examples = examples.shape[0] * (examples.shape[1] if accumulation_steps > 1 else 1)
        new_state = state.replace(
            step=state.step + 1,
            params=keep(params, state.params),
            opt_state=keep(opt_state, state.opt_state),
            data_position=state.data_position + examples,
        )
        metrics = {
            "loss": loss,
            "grad_norm": grad_norm,
            "learning_rate": schedule(state.step) if schedule is not None else jnp.nan,
            "nonfinite": ~finite,
        }
        return new_state, metrics

    jit_kwargs: dict = {"donate_argnums": (0,) if donate else ()}
    if state_sharding is not None:
        jit_kwargs["in_shardings"] = (state_sharding, batch_sharding, None)
        jit_kwargs["out_shardings"] = (state_sharding, None)
    jitted = jax.jit(train_step, **jit_kwargs)

    def step(state: TrainState, batch: dict, rng: Optional[jax.Array] = None) -> tuple[TrainState, dict]:
        return jitted(state, batch, rng)

    step.jitted = jitted  # for .lower(state, batch, None).compile().cost_analysis() and the like
    return step


def split_trainable(params: Any, mask: Any) -> tuple[list, Callable[[list], Any], Callable[[list], Any]]:
    """(trainable leaves, rebuild: leaves -> full params tree, expand: leaf grads -> full grads tree).

    ``mask`` is a bool tree like ``params`` (None: everything trains). ``expand`` fills frozen leaves with scalar
    zeros of their dtype, which optax transformations broadcast (``set_to_zero`` for frozen labels)."""
    leaves, treedef = jax.tree_util.tree_flatten(params)
    flags = [True] * len(leaves) if mask is None else treedef.flatten_up_to(mask)
    trainable = [leaf for leaf, f in zip(leaves, flags) if f]

    def merge(values: list, fill: Callable[[Any], Any]) -> Any:
        it = iter(values)
        return treedef.unflatten([next(it) if f else fill(leaf) for leaf, f in zip(leaves, flags)])

    return trainable, lambda t: merge(t, lambda leaf: leaf), lambda g: merge(g, lambda leaf: jnp.zeros((), leaf.dtype))


def master_weights(params: Any, frozen: FreezeSpec = None, dtype: Any = jnp.float32) -> Any:
    """Fresh copies of the params for a ``TrainState``: trainable float leaves in ``dtype`` (float32 master
    weights), frozen leaves in their own dtype (a bfloat16 or quantised frozen base stays small)."""
    mask = trainable_mask(params, frozen) if frozen is not None else jax.tree_util.tree_map(lambda _: True, params)

    def copy(trains: bool, p: Any) -> jax.Array:
        floating = jnp.issubdtype(jnp.asarray(p).dtype, jnp.floating)
        return jnp.array(p, dtype=dtype if trains and floating else None, copy=True)

    return jax.tree_util.tree_map(copy, mask, params)


def optimizer_state_bytes(opt_state: Any) -> int:
    """Bytes the optimizer state holds (its array leaves; masked-out frozen parameters hold none)."""
    return int(sum(x.nbytes for x in jax.tree_util.tree_leaves(opt_state) if hasattr(x, "nbytes")))


def prediction_fields(outputs: Any) -> dict:
    """The arrays ``predict()`` returns from a model output: every field but loss, hidden states and attentions."""
    skip = {"loss", "hidden_states", "attentions", "encoder_hidden_states", "encoder_attentions",
            "decoder_hidden_states", "decoder_attentions", "cross_attentions", "past_key_values"}
    items = outputs.items() if hasattr(outputs, "items") else vars(outputs).items()
    return {k: v for k, v in items if k not in skip and v is not None}


def make_eval_step(model: Any, *, compute_dtype: Any = None, params_sharding: Any = None,
                   batch_sharding: Any = None, label_smoothing: float = 0.0,
                   shift_labels: bool = False) -> Callable[[Any, dict], dict]:
    """Build the jitted ``eval_step(params, batch) -> {"loss": ..., <prediction fields>}`` (dropout off).

    ``loss`` is present when the batch has labels; the other entries are the model's outputs (``logits`` ...).
    """
    module = _module_for(model, compute_dtype)

    def eval_step(params, batch):
        out = module.apply({"params": params}, **batch, deterministic=True)
        result = {k: (v.astype(jnp.float32) if jnp.issubdtype(v.dtype, jnp.floating) else v)
                  for k, v in prediction_fields(out).items()}
        if getattr(out, "loss", None) is not None:
            result["loss"] = out.loss.astype(jnp.float32)
            if label_smoothing and "labels" in batch:  # the eval loss is smoothed too, as in Transformers
                result["loss"] = label_smoothed_loss(out.logits, batch["labels"], label_smoothing, shift_labels)
        return result

    kwargs = {}
    if params_sharding is not None:
        kwargs["in_shardings"] = (params_sharding, batch_sharding)
    return jax.jit(eval_step, **kwargs)
