"""Sparse mixture-of-experts: top-k routing, the expert feed-forward over stacked weights, the load-balancing loss.

Shapes: T tokens (batch and length flattened), D hidden size, E experts, F expert intermediate size, k experts per
token.

The experts run in the *dense-dispatch* formulation: every token goes through every expert as three einsums over the
stacked ``[E, D, F]`` weights, and the outputs are combined with the sparse routing weights (zero for the experts a
token was not routed to). Why this formulation:

- it is exact: an expert a token was not routed to contributes ``0.0 * y``, which adds nothing, so the float32 result
  equals Transformers' per-expert loop up to summation order;
- it compiles once into three batched matmuls, with no data-dependent shapes, no Python loop over experts, and no
  scatter; gradients flow through the routing weights exactly as in PyTorch;
- on a mesh the expert axis E is split over ``model`` (expert parallelism): each device runs its own experts on all
  of its tokens and one all-reduce sums the combined outputs, with no token shuffling (GSPMD derives it from the
  weights' sharding).

Its cost is E/k times the FLOPs of a sparse dispatch (4x for Mixtral's 8 experts, top-2), which is what CPUs and small
batches can afford; a grouped-matmul dispatch (``jax.lax.ragged_dot``) would cut that for large expert counts.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp


def top_k_routing(router_logits, top_k: int, normalize: bool):
    """router_logits [T, E] -> (weights [T, k] float32, experts [T, k] int32), as Transformers' top-k routers.

    Softmax over the experts in float32, the k most probable experts (ties: the lower index, as ``torch.topk``),
    and with ``normalize`` their probabilities rescaled to sum to one.
    """
    probs = jax.nn.softmax(router_logits.astype(jnp.float32), axis=-1)  # [T, E]
    weights, experts = jax.lax.top_k(probs, top_k)  # [T, k]
    if normalize:
        weights = weights / jnp.sum(weights, axis=-1, keepdims=True)
    return weights, experts.astype(jnp.int32)


def combine_weights(weights, experts, num_experts: int):
    """Sparse routing as a dense [T, E] matrix: weight of expert e for token t, zero where t was not routed to e."""
    return jnp.einsum("tk,tke->te", weights, jax.nn.one_hot(experts, num_experts, dtype=weights.dtype))


def experts_feed_forward(x, combine, gate_kernel, up_kernel, down_kernel, act: Callable):
    """The gated expert MLPs ``down(act(gate(x)) * up(x))`` combined with ``combine`` [T, E].

    x [T, D]; gate/up kernels [E, D, F]; down kernel [E, F, D]; returns [T, D] in x's dtype.
    """
    gate = jnp.einsum("td,edf->tef", x, gate_kernel)  # [T, E, F]
    up = jnp.einsum("td,edf->tef", x, up_kernel)  # [T, E, F]
    out = jnp.einsum("tef,efd->ted", act(gate) * up, down_kernel)  # [T, E, D]
    # the routing weights multiply each expert's output before the sum, as in Transformers (weights in float32 there
    # for Mixtral, so the product promotes; cast back to the compute dtype as its index_add_ does)
    return jnp.einsum("ted,te->td", out.astype(jnp.float32), combine.astype(jnp.float32)).astype(x.dtype)


def load_balancing_loss(router_logits: Sequence, num_experts: int, top_k: int, attention_mask=None):
    """Transformers' ``load_balancing_loss_func`` (Switch Transformer eqs. 4-6) over the MoE layers' router logits.

    router_logits: one [B*T, E] array per sparse layer; attention_mask [B, T] (padding excluded) or None.
    Returns the float32 scalar ``E * sum_e(fraction of top-k assignments to e * mean router probability of e)``,
    both averaged over the real tokens of every layer together.
    """
    if not router_logits:
        return jnp.zeros((), jnp.float32)
    rows = router_logits[0].shape[0]
    mask = jnp.ones((rows,), jnp.float32) if attention_mask is None else attention_mask.reshape(-1).astype(jnp.float32)
    if mask.shape[0] != rows:
        raise ValueError(
            f"attention_mask covers {mask.shape[0]} tokens but the router saw {rows}; pass the [batch, length] mask "
            "of this forward call."
        )
    counts = jnp.zeros((num_experts,), jnp.float32)
    prob_sum = jnp.zeros((num_experts,), jnp.float32)
    total = jnp.zeros((), jnp.float32)
    for logits in router_logits:
        probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)  # [B*T, E]
        _, selected = jax.lax.top_k(probs, top_k)  # [B*T, k]
        counts = counts + jnp.einsum("rke,r->e", jax.nn.one_hot(selected, num_experts, dtype=jnp.float32), mask)
        prob_sum = prob_sum + jnp.einsum("re,r->e", probs, mask)
        total = total + mask.sum()
    return jnp.sum((counts / total) * (prob_sum / total)) * num_experts


def aux_loss_or_none(router_logits: Optional[Sequence], num_experts: int, top_k: int, attention_mask):
    return None if router_logits is None else load_balancing_loss(router_logits, num_experts, top_k, attention_mask)
