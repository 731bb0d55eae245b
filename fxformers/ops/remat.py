"""Gradient checkpointing: each layer under ``jax.checkpoint`` (flax ``nn.remat``), switched by the config.

``model.gradient_checkpointing_enable()`` (or ``TrainingArguments(gradient_checkpointing=True)``) sets
``config._gradient_checkpointing`` to a policy name; every family builds its layer stack through
``maybe_remat(LayerClass, config)``, which then returns a subclass whose ``__call__`` runs under ``nn.remat``.
The param tree is unchanged (the subclass keeps the layer's name and submodules), so checkpoints load as before.

Policy (``gradient_checkpointing_kwargs={"policy": name}``, any name in ``jax.checkpoint_policies``):

- ``"nothing_saveable"`` (default): keep only each layer's inputs, recompute the rest in the backward pass. This
  is what Transformers' gradient checkpointing does (one extra forward per layer, about a third more compute),
  and it is the policy that makes the saved activations independent of the attention scores [B, N, T, T] and the
  MLP's [B, T, F] intermediates, the terms that dominate at long sequence lengths.
- ``"dots_with_no_batch_dims_saveable"``: also keep the outputs of the weight matmuls (q/k/v/o, MLP projections)
  and recompute only the cheap element-wise work and the attention einsums: less recompute, more memory.

Non-array arguments of a layer (``deterministic``, ``output_attentions``, layer indices, helper objects) are held
as Python constants of the checkpointed function, so each layer's signature needs no ``static_argnums``.
"""

from __future__ import annotations

import functools
import logging
from typing import Any, Optional

import flax.linen as nn
import jax
import numpy as np

logger = logging.getLogger(__name__)

DEFAULT_POLICY = "nothing_saveable"
CONFIG_FIELD = "_gradient_checkpointing"  # the policy name, or None; private: never written to config.json


def policy_name(gradient_checkpointing_kwargs: Optional[dict] = None) -> str:
    """The ``jax.checkpoint_policies`` name that ``gradient_checkpointing_kwargs`` selects (checked)."""
    kwargs = dict(gradient_checkpointing_kwargs or {})
    name = kwargs.pop("policy", None) or DEFAULT_POLICY
    if kwargs:  # e.g. Transformers' {"use_reentrant": False}: a PyTorch detail with no JAX meaning
        logger.info("gradient_checkpointing_kwargs %s have no effect in fxformers (only 'policy' does)", sorted(kwargs))
    if not isinstance(name, str) or not callable(getattr(jax.checkpoint_policies, name, None)):
        names = sorted(n for n in dir(jax.checkpoint_policies) if n.endswith("saveable"))
        raise ValueError(f"Unknown gradient checkpointing policy {name!r}; use one of jax.checkpoint_policies: "
                         f"{', '.join(names)}.")
    return name


def maybe_remat(layer_cls: type, config: Any) -> type:
    """``layer_cls`` itself, or (with gradient checkpointing on in ``config``) its checkpointed subclass.

    Use it where a family builds its layer stack: ``self.layers = [maybe_remat(Layer, c)(c, i) for i in ...]``.
    """
    policy = getattr(config, CONFIG_FIELD, None)
    return remat_class(layer_cls, policy) if policy else layer_cls


@functools.lru_cache(maxsize=None)
def remat_class(layer_cls: type, policy: str = DEFAULT_POLICY) -> type:
    """A subclass of the linen module ``layer_cls`` whose ``__call__`` is checkpointed with ``policy``."""
    checkpoint_policy = getattr(jax.checkpoint_policies, policy)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        leaves, treedef = jax.tree_util.tree_flatten((args, kwargs))
        is_array = [isinstance(leaf, (jax.Array, np.ndarray)) for leaf in leaves]  # tracers are jax.Arrays

        def run(module: nn.Module, *arrays: Any) -> Any:
            it = iter(arrays)
            a, kw = jax.tree_util.tree_unflatten(treedef, [next(it) if x else leaf for leaf, x in zip(leaves, is_array)])
            return layer_cls.__call__(module, *a, **kw)

        arrays = [leaf for leaf, x in zip(leaves, is_array) if x]
        return nn.remat(run, policy=checkpoint_policy, prevent_cse=True)(self, *arrays)

    return type(layer_cls.__name__, (layer_cls,), {
        "__call__": __call__, "__module__": layer_cls.__module__, "__qualname__": layer_cls.__qualname__,
        "__doc__": f"{layer_cls.__name__} under jax.checkpoint (policy {policy}).",
    })
