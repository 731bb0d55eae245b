"""Optimizers and learning-rate schedules with Transformers' meanings, as optax objects.

Schedules are functions ``step -> learning rate`` (optax schedules). The value at step ``i`` is the learning rate
Transformers' ``LambdaLR`` gives the ``i``-th optimizer update (the first update is step 0, so warmup starts at 0).

``create_optimizer`` builds AdamW as the Trainer does: decoupled weight decay on every weight except biases and
normalisation scales/biases, gradient clipping by global norm (PyTorch's ``clip_grad_norm_`` formula), gradient
accumulation (``optax.MultiSteps``) and freezing any part of the parameter tree.

Parameter paths are the ``/``-joined keys of the params tree, e.g. ``bert/encoder/layer_0/attention/query/kernel``.
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable, NamedTuple, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import optax

Schedule = Callable[[Any], Any]
# What to freeze: a path prefix ("bert"), several, or a predicate (path, leaf) -> bool.
FreezeSpec = Union[None, str, Sequence[str], Callable[[str, Any], bool]]

SCHEDULER_TYPES = (
    "linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup", "inverse_sqrt",
    "cosine_with_min_lr",
)


# -- schedules -----------------------------------------------------------------------------------------------------
def _warmup(step, num_warmup_steps: int):
    """step / max(1, warmup) during warmup (the caller selects the branch)."""
    return step / max(1, num_warmup_steps)


def _as_float(step):
    return jnp.asarray(step, jnp.float32)


def get_constant_schedule(learning_rate: float) -> Schedule:
    """The learning rate at every step."""
    return lambda step: jnp.full_like(_as_float(step), learning_rate)


def get_constant_schedule_with_warmup(learning_rate: float, num_warmup_steps: int) -> Schedule:
    """Linear warmup from 0 over ``num_warmup_steps``, then constant."""

    def schedule(step):
        s = _as_float(step)
        return learning_rate * jnp.where(s < num_warmup_steps, _warmup(s, num_warmup_steps), 1.0)

    return schedule


def get_linear_schedule_with_warmup(learning_rate: float, num_warmup_steps: int, num_training_steps: int) -> Schedule:
    """Linear warmup from 0, then linear decay to 0 at ``num_training_steps`` (Transformers' default)."""

    def schedule(step):
        s = _as_float(step)
        decay = jnp.maximum(0.0, (num_training_steps - s) / max(1, num_training_steps - num_warmup_steps))
        return learning_rate * jnp.where(s < num_warmup_steps, _warmup(s, num_warmup_steps), decay)

    return schedule


def get_cosine_schedule_with_warmup(
    learning_rate: float, num_warmup_steps: int, num_training_steps: int, num_cycles: float = 0.5,
    min_lr_rate: float = 0.0,
) -> Schedule:
    """Linear warmup, then a cosine from the peak down to ``min_lr_rate * peak`` (``num_cycles`` half-waves * 2)."""

    def schedule(step):
        s = _as_float(step)
        # 0.5 * (1 + cos(2 pi c progress)) = cos(pi c progress)**2 = sin(pi x / (2 span))**2 with x = span - 2c (s - w).
        # x is an exact integer for half-integer c; reducing it to [0, span] (sin**2 has period 2 span in x and is
        # symmetric) before the sine keeps float32's full relative precision near the zeros of the curve.
        span = max(1, num_training_steps - num_warmup_steps)
        x = jnp.mod(span - 2.0 * num_cycles * (s - num_warmup_steps), 2.0 * span)
        x = jnp.minimum(x, 2.0 * span - x)
        factor = jnp.sin(math.pi * x / (2.0 * span)) ** 2
        factor = jnp.maximum(0.0, factor * (1 - min_lr_rate) + min_lr_rate)
        return learning_rate * jnp.where(s < num_warmup_steps, _warmup(s, num_warmup_steps), factor)

    return schedule


def get_cosine_with_hard_restarts_schedule_with_warmup(
    learning_rate: float, num_warmup_steps: int, num_training_steps: int, num_cycles: int = 1
) -> Schedule:
    """Linear warmup, then ``num_cycles`` cosine decays to 0, each restarting at the peak."""

    def schedule(step):
        s = _as_float(step)
        span = max(1, num_training_steps - num_warmup_steps)
        progress = (s - num_warmup_steps) / span
        # 0.5 * (1 + cos(pi frac)) with frac = m / span = cos(pi frac / 2)**2 = sin(pi (span - m) / (2 span))**2, m exact
        m = jnp.mod(float(num_cycles) * (s - num_warmup_steps), span)
        factor = jnp.sin(math.pi * (span - m) / (2.0 * span)) ** 2
        factor = jnp.where(progress >= 1.0, 0.0, factor)
        return learning_rate * jnp.where(s < num_warmup_steps, _warmup(s, num_warmup_steps), factor)

    return schedule


def get_polynomial_decay_schedule_with_warmup(
    learning_rate: float, num_warmup_steps: int, num_training_steps: int, lr_end: float = 1e-7, power: float = 1.0
) -> Schedule:
    """Linear warmup, then polynomial decay from the peak to ``lr_end`` at ``num_training_steps``, constant after."""
    if not learning_rate > lr_end:
        raise ValueError(f"lr_end ({lr_end}) must be smaller than the initial learning rate ({learning_rate}).")

    def schedule(step):
        s = _as_float(step)
        pct_remaining = 1 - (s - num_warmup_steps) / max(1, num_training_steps - num_warmup_steps)
        decay = (learning_rate - lr_end) * jnp.maximum(pct_remaining, 0.0) ** power + lr_end
        value = jnp.where(s > num_training_steps, lr_end, decay)
        return jnp.where(s < num_warmup_steps, learning_rate * _warmup(s, num_warmup_steps), value)

    return schedule


def get_inverse_sqrt_schedule(learning_rate: float, num_warmup_steps: int, timescale: Optional[int] = None) -> Schedule:
    """Linear warmup, then ``1 / sqrt((step + timescale - warmup) / timescale)``."""
    timescale = timescale if timescale is not None else (num_warmup_steps or 10_000)

    def schedule(step):
        s = _as_float(step)
        decay = 1.0 / jnp.sqrt((s + (timescale - num_warmup_steps)) / timescale)
        return learning_rate * jnp.where(s < num_warmup_steps, _warmup(s, num_warmup_steps), decay)

    return schedule


def get_scheduler(
    name: str,
    learning_rate: float,
    num_warmup_steps: int = 0,
    num_training_steps: Optional[int] = None,
    scheduler_specific_kwargs: Optional[dict] = None,
) -> Schedule:
    """A schedule by Transformers' ``lr_scheduler_type`` name."""
    kwargs = dict(scheduler_specific_kwargs or {})
    name = getattr(name, "value", name)
    if name == "constant":
        return get_constant_schedule(learning_rate)
    if name == "constant_with_warmup":
        return get_constant_schedule_with_warmup(learning_rate, num_warmup_steps)
    if name == "inverse_sqrt":
        return get_inverse_sqrt_schedule(learning_rate, num_warmup_steps, **kwargs)
    builders = {
        "linear": get_linear_schedule_with_warmup,
        "cosine": get_cosine_schedule_with_warmup,
        "cosine_with_min_lr": get_cosine_schedule_with_warmup,
        "cosine_with_restarts": get_cosine_with_hard_restarts_schedule_with_warmup,
        "polynomial": get_polynomial_decay_schedule_with_warmup,
    }
    if name not in builders:
        raise ValueError(f"Unknown lr_scheduler_type {name!r}; choose one of {', '.join(SCHEDULER_TYPES)}.")
    if num_training_steps is None:
        raise ValueError(f"The {name!r} schedule needs num_training_steps.")
    return builders[name](learning_rate, num_warmup_steps, num_training_steps, **kwargs)


# -- parameter paths, decay mask, freezing --------------------------------------------------------------------------
def _key_name(key: Any) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def path_str(key_path: Sequence[Any]) -> str:
    """A ``jax.tree_util`` key path as ``a/b/c``."""
    return "/".join(_key_name(k) for k in key_path)


def map_paths(fn: Callable[[str, Any], Any], tree: Any) -> Any:
    """``tree_map`` with the ``/``-joined path of each leaf: ``fn(path, leaf)``."""
    return jax.tree_util.tree_map_with_path(lambda kp, leaf: fn(path_str(kp), leaf), tree)


_NO_DECAY_COMPONENT = re.compile(r"bias|norm|^ln(_|$)", re.IGNORECASE)


def is_no_decay_path(path: str) -> bool:
    """True for biases and normalisation parameters (Transformers' Trainer excludes them from weight decay).

    A parameter is excluded when its leaf is named ``scale`` (flax's norm layers), or any part of its path names a
    bias (``bias``, T5's ``relative_attention_bias``, as Transformers matches "bias") or a norm layer
    (``LayerNorm``, ``layer_norm``, ``final_layer_norm``, ``input_layernorm``, ``norm``, ``ln_1``, ``ln_f`` ...).
    """
    parts = path.split("/")
    return parts[-1] == "scale" or any(_NO_DECAY_COMPONENT.search(p) for p in parts)


def decay_mask(params: Any) -> Any:
    """A bool tree like ``params``: True where weight decay applies."""
    return map_paths(lambda path, _: not is_no_decay_path(path), params)


def _freeze_predicate(frozen: FreezeSpec) -> Callable[[str, Any], bool]:
    if frozen is None:
        return lambda path, leaf: False
    if callable(frozen):
        return frozen
    prefixes = [frozen] if isinstance(frozen, str) else list(frozen)
    prefixes = [p.strip("/") for p in prefixes]
    return lambda path, leaf: any(path == p or path.startswith(p + "/") for p in prefixes)


def trainable_mask(params: Any, frozen: FreezeSpec = None) -> Any:
    """A bool tree like ``params``: False for the frozen leaves (a path prefix, list of prefixes or predicate)."""
    predicate = _freeze_predicate(frozen)
    mask = map_paths(lambda path, leaf: not predicate(path, leaf), params)
    if frozen is not None and isinstance(frozen, (str, list, tuple)):
        prefixes = [frozen] if isinstance(frozen, str) else list(frozen)
        paths = [path for path, _ in _flat_paths(params)]
        unknown = [p for p in prefixes if not any(q == p.strip("/") or q.startswith(p.strip("/") + "/") for q in paths)]
        if unknown:
            tops = sorted({q.split("/")[0] for q in paths})
            raise ValueError(f"No parameter path starts with {unknown}; top-level names are {tops}.")
    return mask


def freeze_union(*specs: FreezeSpec) -> FreezeSpec:
    """One spec freezing what any of ``specs`` freezes (None when none is given)."""
    given = [s for s in specs if s is not None and s != []]
    if len(given) <= 1:
        return given[0] if given else None
    predicates = [_freeze_predicate(s) for s in given]
    return lambda path, leaf: any(p(path, leaf) for p in predicates)


def _flat_paths(tree: Any) -> list[tuple[str, Any]]:
    return [(path_str(kp), leaf) for kp, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]]


# -- gradient transformations -----------------------------------------------------------------------------------------
def global_norm(tree: Any) -> jax.Array:
    """The L2 norm of all leaves together, accumulated in float32."""
    leaves = [jnp.sum(jnp.square(x.astype(jnp.float32))) for x in jax.tree_util.tree_leaves(tree)]
    return jnp.sqrt(sum(leaves)) if leaves else jnp.zeros((), jnp.float32)


def clip_by_global_norm(max_norm: float) -> optax.GradientTransformation:
    """PyTorch's ``clip_grad_norm_``: scale by ``min(1, max_norm / (norm + 1e-6))``."""

    def update(updates, state, params=None):
        coef = jnp.minimum(1.0, max_norm / (global_norm(updates) + 1e-6))
        return jax.tree_util.tree_map(lambda g: (g * coef).astype(g.dtype), updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


class Optimizer(NamedTuple):
    """What ``create_optimizer`` returns: the optax transformation and its learning-rate schedule."""

    tx: optax.GradientTransformation
    schedule: Schedule


def create_optimizer(
    learning_rate: Union[float, Schedule] = 5e-5,
    *,
    num_training_steps: Optional[int] = None,
    num_warmup_steps: int = 0,
    lr_scheduler_type: str = "linear",
    lr_scheduler_kwargs: Optional[dict] = None,
    weight_decay: float = 0.0,
    adam_beta1: float = 0.9,
    adam_beta2: float = 0.999,
    adam_epsilon: float = 1e-8,
    max_grad_norm: Optional[float] = 1.0,
    gradient_accumulation_steps: int = 1,
    frozen: FreezeSpec = None,
    no_decay: Callable[[str], bool] = is_no_decay_path,
) -> Optimizer:
    """AdamW as Transformers' Trainer builds it, as an optax transformation.

    learning_rate: a peak rate (scheduled by ``lr_scheduler_type`` over ``num_training_steps`` optimizer updates
        with ``num_warmup_steps`` of warmup) or an optax schedule used as is.
    weight_decay: decoupled (AdamW) decay, not applied where ``no_decay(path)`` is true (biases, norms).
    max_grad_norm: clip the (accumulated) gradient's global norm, as ``torch.nn.utils.clip_grad_norm_``; None or 0
        turns clipping off.
    gradient_accumulation_steps: average this many micro-batch gradients before each update
        (``optax.MultiSteps``); the schedule advances once per update.
    frozen: a path prefix, list of prefixes or predicate ``(path, leaf) -> bool``: those parameters get zero
        updates and keep no optimizer state (pass the same spec to ``make_train_step`` to skip their gradients).

    Returns ``Optimizer(tx, schedule)``.
    """
    if callable(learning_rate):
        schedule = learning_rate
    else:
        schedule = get_scheduler(lr_scheduler_type, learning_rate, num_warmup_steps, num_training_steps, lr_scheduler_kwargs)
    adamw = optax.adamw(
        schedule, b1=adam_beta1, b2=adam_beta2, eps=adam_epsilon, weight_decay=weight_decay,
        mask=lambda params: map_paths(lambda path, _: not no_decay(path), params),
    )
    tx = optax.chain(clip_by_global_norm(max_grad_norm), adamw) if max_grad_norm else adamw
    if gradient_accumulation_steps > 1:
        tx = optax.MultiSteps(tx, every_k_schedule=gradient_accumulation_steps).gradient_transformation()
    if frozen is not None:
        labels = lambda params: map_paths(lambda p, trainable: "train" if trainable else "frozen", trainable_mask(params, frozen))
        tx = optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, labels)
    return Optimizer(tx, schedule)
