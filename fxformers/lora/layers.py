"""The adapted Dense layer, as a flax method interceptor, plus adapter initialisation and base-weight quantisation.

Every Dense in every architecture runs through ``nn.Dense.__call__``; inside an adapted model's ``apply`` an
interceptor looks at the layer's own params scope:

* ``lora_A`` [in, r] and ``lora_B`` [r, out] present: ``y = dense(x) + scaling * dropout(x) @ A @ B`` (PEFT's
  ``lora_A.weight`` [r, in] and ``lora_B.weight`` [out, r] are their transposes);
* ``kernel_q`` int8 [in, out] + ``kernel_scale`` [out] (per-output-channel absmax) or ``kernel_nf4`` uint8 (two
  4-bit NormalFloat codes a byte, blocks of 64) + ``kernel_absmax``: the frozen kernel is stored quantised and
  dequantised on the fly (QLoRA-style), in the layer's compute dtype.

The adapter path runs on the activations (not folded into the kernel) so that ``lora_dropout`` acts on the adapter's
input as in PEFT and a large frozen kernel is never rewritten per step; ``merge_and_unload`` folds it in once.
Dropout runs only when the call has a ``dropout`` PRNG stream (training).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

NF4_BLOCK = 64
# The 16 NormalFloat-4 levels of QLoRA (Dettmers et al. 2023; bitsandbytes' NF4 table).
NF4_LEVELS = np.array([
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
    -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
    0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
], np.float32)
BASE_PRECISIONS = (None, "float32", "bfloat16", "float16", "int8", "nf4")


@dataclasses.dataclass(frozen=True)
class LoraRuntime:
    """What the forward needs besides the arrays (static, part of the module's identity): the active adapter's
    scaling and dropout rate."""

    scaling: float = 1.0
    dropout: float = 0.0


def _param(module: nn.Module, name: str) -> Any:
    return module.get_variable("params", name) if module.has_variable("params", name) else None


def dequantized_kernel(module: nn.Module, fan_in: int, dtype: Any) -> jax.Array | None:
    """The layer's kernel [in, out] in ``dtype`` when it is stored quantised, else None."""
    q = _param(module, "kernel_q")
    if q is not None:  # int8 [in, out] x scale [out]
        return q.astype(dtype) * _param(module, "kernel_scale").astype(dtype)
    packed = _param(module, "kernel_nf4")
    if packed is None:
        return None
    codes = jnp.stack([packed >> 4, packed & 15], axis=-1).reshape(-1)  # [blocks * 64]
    values = jnp.asarray(NF4_LEVELS)[codes].reshape(-1, NF4_BLOCK) * _param(module, "kernel_absmax")[:, None]
    return values.reshape(-1)[: fan_in * module.features].reshape(fan_in, module.features).astype(dtype)


def dense_interceptor(runtime: LoraRuntime, next_fun: Callable, args: tuple, kwargs: dict, context: Any) -> Any:
    """``nn.intercept_methods`` hook: quantised kernels and the LoRA path for Dense layers that carry them."""
    module = context.module
    if context.method_name != "__call__" or not isinstance(module, nn.Dense):
        return next_fun(*args, **kwargs)
    x = args[0] if args else kwargs["inputs"]
    dtype = module.dtype or x.dtype
    kernel = dequantized_kernel(module, x.shape[-1], dtype)
    a = _param(module, "lora_A")
    if kernel is None and a is None:
        return next_fun(*args, **kwargs)
    if kernel is None:
        y = next_fun(*args, **kwargs)
    else:
        y = jax.lax.dot_general(x.astype(dtype), kernel, (((x.ndim - 1,), (0,)), ((), ())), precision=module.precision)
        bias = _param(module, "bias")
        if bias is not None:
            y = y + bias.astype(dtype)
    if a is None:
        return y
    h = x
    if runtime.dropout > 0 and module.has_rng("dropout"):
        keep = jax.random.bernoulli(module.make_rng("dropout"), 1.0 - runtime.dropout, h.shape)
        h = jnp.where(keep, h / (1.0 - runtime.dropout), jnp.zeros_like(h))
    h = h.astype(dtype) @ a.astype(dtype)  # [..., r]
    delta = (h @ _param(module, "lora_B").astype(dtype)) * runtime.scaling  # [..., out]
    return (y + delta).astype(y.dtype)


def lora_module_class(module_class: type, runtime: LoraRuntime) -> type:
    """A subclass of ``module_class`` whose ``apply`` runs with the Dense interceptor (same fields, same params
    layout, same methods, so generation and every other caller of ``module.apply`` work unchanged)."""

    def apply(self, variables, *args, **kwargs):
        with nn.intercept_methods(lambda *a: dense_interceptor(type(self).lora_runtime, *a)):
            return module_class.apply(self, variables, *args, **kwargs)

    return type(f"Lora{module_class.__name__}", (module_class,),
                {"apply": apply, "lora_runtime": runtime, "__module__": __name__, "__doc__": module_class.__doc__})


# -- initialisation ----------------------------------------------------------------------------------------------------
def init_adapter(key: jax.Array, fan_in: int, fan_out: int, r: int, mode: Any) -> tuple[np.ndarray, np.ndarray]:
    """(A [in, r], B [r, out]) float32 as PEFT initialises ``lora_A``/``lora_B``.

    True: A ~ PyTorch's Kaiming-uniform(a=sqrt(5)) of a Linear(in, r), i.e. U(-1/sqrt(in), 1/sqrt(in)); B = 0.
    False: both keep PyTorch's default Linear init (B ~ U(-1/sqrt(r), 1/sqrt(r))). "gaussian": A ~ N(0, 1/r), B = 0.
    """
    ka, kb = jax.random.split(key)
    if mode == "gaussian":
        a = jax.random.normal(ka, (fan_in, r), jnp.float32) / r
    else:
        bound = 1.0 / math.sqrt(fan_in)
        a = jax.random.uniform(ka, (fan_in, r), jnp.float32, -bound, bound)
    if mode is False:
        bound = 1.0 / math.sqrt(r)
        b = jax.random.uniform(kb, (r, fan_out), jnp.float32, -bound, bound)
    else:
        b = jnp.zeros((r, fan_out), jnp.float32)
    return np.asarray(a), np.asarray(b)


# -- quantisation of frozen kernels --------------------------------------------------------------------------------------
def quantize_int8(kernel: np.ndarray) -> dict[str, np.ndarray]:
    """Symmetric per-output-channel int8: ``kernel ~= kernel_q * kernel_scale``."""
    w = np.asarray(kernel, np.float32)
    scale = np.abs(w).max(axis=0) / 127.0  # [out]
    scale = np.where(scale == 0, 1.0, scale).astype(np.float32)
    return {"kernel_q": np.clip(np.rint(w / scale), -127, 127).astype(np.int8), "kernel_scale": scale}


def quantize_nf4(kernel: np.ndarray) -> dict[str, np.ndarray]:
    """Blockwise NF4 (QLoRA): blocks of 64 values scaled by their absmax, each rounded to the nearest NF4 level;
    two 4-bit codes per byte. 4.5 bits a weight (the float32 absmax per block included)."""
    flat = np.asarray(kernel, np.float32).reshape(-1)
    pad = (-flat.size) % NF4_BLOCK
    blocks = np.concatenate([flat, np.zeros(pad, np.float32)]).reshape(-1, NF4_BLOCK)
    absmax = np.abs(blocks).max(axis=1)
    absmax = np.where(absmax == 0, 1.0, absmax).astype(np.float32)
    normed = blocks / absmax[:, None]
    codes = np.abs(normed[..., None] - NF4_LEVELS).argmin(-1).astype(np.uint8).reshape(-1)  # [blocks * 64]
    return {"kernel_nf4": (codes[0::2] << 4) | codes[1::2], "kernel_absmax": absmax}


def dequantize(leaves: dict[str, Any], shape: tuple[int, int]) -> np.ndarray:
    """The float32 kernel [in, out] of quantised leaves (host side, for merging and measuring error)."""
    if "kernel_q" in leaves:
        return np.asarray(leaves["kernel_q"], np.float32) * np.asarray(leaves["kernel_scale"], np.float32)
    packed = np.asarray(leaves["kernel_nf4"])
    codes = np.stack([packed >> 4, packed & 15], axis=-1).reshape(-1)
    values = NF4_LEVELS[codes].reshape(-1, NF4_BLOCK) * np.asarray(leaves["kernel_absmax"])[:, None]
    return values.reshape(-1)[: shape[0] * shape[1]].reshape(shape)
