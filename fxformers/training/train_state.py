"""The training state: one pytree holding everything a step changes, so a checkpoint is that pytree."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct


@struct.dataclass
class TrainState:
    """``step``: optimizer steps taken (Transformers' ``global_step``; a skipped non-finite update still counts).
    ``params``: the float32 master weights. ``opt_state``: the optax state. ``rng``: the run's base PRNG key
    (dropout keys are ``fold_in(rng, step)``, so they never need saving separately). ``data_position``: training
    examples consumed from the shuffled example stream, which is where a resumed run picks up the data.
    """

    step: jax.Array  # int32 []
    params: Any
    opt_state: Any
    rng: jax.Array  # PRNG key data, uint32 [2]
    data_position: jax.Array  # int32 [] (examples)

    @classmethod
    def create(cls, params: Any, tx: optax.GradientTransformation, seed: int | jax.Array = 0) -> "TrainState":
        """A fresh state: step 0, ``tx.init(params)``, the key of ``seed`` (an int or an existing key)."""
        rng = jax.random.PRNGKey(seed) if isinstance(seed, int) else seed
        return cls(
            step=jnp.zeros((), jnp.int32),
            params=params,
            opt_state=tx.init(params),
            rng=rng,
            data_position=jnp.zeros((), jnp.int32),
        )
