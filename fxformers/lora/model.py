"""``get_peft_model`` and ``PeftModel``: LoRA adapters on any fxformers model, with PEFT's API and file format.

An adapted model is an instance of a subclass of the base model's own class (``LoraLlamaForCausalLM``), so
``__call__``, ``generate()``, pipelines, the Trainer and ``jax.jit``/``jax.grad`` over the model pytree all work
unchanged. Its ``params`` are the base tree with, inside each targeted Dense scope, the active adapter's
``lora_A`` [in, r] and ``lora_B`` [r, out] (and the adapter's trained copies of the ``modules_to_save``); the
module's ``apply`` installs the Dense interceptor of :mod:`.layers`. The adapter tree is ``adapter_params()``; the
frozen base is everything else, and ``frozen_parameters`` tells the Trainer / ``make_train_step`` so (no gradient,
no optimizer state for it). Inactive adapters wait on the host until ``set_adapter``.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
import os
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ..convert import flatten, unflatten
from .config import LoraConfig
from .layers import BASE_PRECISIONS, LoraRuntime, dequantize, init_adapter, lora_module_class, quantize_int8, quantize_nf4
from .targeting import Targets, resolve

logger = logging.getLogger(__name__)

LORA_LEAVES = ("lora_A", "lora_B")
QUANTIZED_LEAVES = ("kernel_q", "kernel_scale", "kernel_nf4", "kernel_absmax")


class PeftModel:
    """Mixin of every adapted model class (``isinstance(m, fxformers.PeftModel)``); PEFT's ``PeftModel`` API.

    ``PeftModel.from_pretrained(model, folder)`` loads an adapter saved by PyTorch PEFT or fxformers onto an
    fxformers model.
    """

    base_model_class: ClassVar[type]
    lora_runtime: ClassVar[LoraRuntime]

    # -- construction --------------------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, model: Any, model_id: str | os.PathLike, adapter_name: str = "default",
                        is_trainable: bool = False, base_precision: Optional[str] = None, **_: Any) -> "PeftModel":
        """``model`` (an fxformers model) with the adapter in folder ``model_id`` (adapter_config.json +
        adapter_model.safetensors / .bin, PEFT's key names). ``is_trainable=False`` (PEFT's default) marks nothing
        trainable."""
        from .io import read_adapter

        config, weights = read_adapter(model_id)
        peft = get_peft_model(model, config, adapter_name=adapter_name, base_precision=base_precision,
                              _weights=weights)
        peft._inference[adapter_name] = not is_trainable
        return peft

    def _setup(self, base: Any, base_precision: Optional[str]) -> None:
        self.peft_config: dict[str, LoraConfig] = {}
        self._targets: dict[str, Targets] = {}
        self._stash: dict[str, dict] = {}  # adapter name -> {flax path: array}, for inactive adapters
        self._originals: dict = {}  # flax path -> the base's own leaves of modules_to_save
        self._inference: dict[str, bool] = {}
        self._base_shapes = {p: tuple(v.shape) for p, v in flatten(base.params).items()}
        self._base_count = int(sum(np.prod(s) for s in self._base_shapes.values()))
        self.base_precision = base_precision
        self.active_adapter: Optional[str] = None

    # -- adapters ------------------------------------------------------------------------------------------------------
    def add_adapter(self, adapter_name: str, peft_config: LoraConfig, *, seed: int = 0,
                    _weights: Optional[dict] = None) -> None:
        """Add a new adapter (initialised per ``init_lora_weights``, or from PEFT-named ``_weights``) and make it
        active, as PEFT's ``add_adapter`` + ``set_adapter``."""
        from .io import adapter_leaves_from_peft

        if adapter_name in self.peft_config:
            raise ValueError(f"An adapter named {adapter_name!r} already exists; pick another adapter_name.")
        targets = resolve(self.base_model_class, self.config, self._base_shapes, peft_config)
        flat = flatten(self.params)
        for path in targets.saved:
            if path not in self._originals:
                self._originals[path] = flat[path]
        if _weights is not None:
            leaves = adapter_leaves_from_peft(self, targets, _weights)
        else:
            leaves = {}
            keys = jax.random.split(jax.random.PRNGKey(seed), max(1, len(targets.layers)))
            for key, t in zip(keys, targets.layers):
                a, b = init_adapter(key, t.shape[0], t.shape[1], peft_config.r, peft_config.init_lora_weights)
                leaves[t.scope + "/lora_A"], leaves[t.scope + "/lora_B"] = a, b
            for path in targets.saved:  # trained copies, float32 master weights
                leaves[path] = np.array(self._originals[path], np.float32)
        self.peft_config[adapter_name] = peft_config
        self._targets[adapter_name] = targets
        self._inference[adapter_name] = False
        self._stash[adapter_name] = {p: jnp.asarray(v) for p, v in leaves.items()}
        self.set_adapter(adapter_name)

    def load_adapter(self, model_id: str | os.PathLike, adapter_name: str, is_trainable: bool = False, **_: Any) -> None:
        """Load another adapter from a folder under ``adapter_name`` and make it active."""
        from .io import read_adapter

        config, weights = read_adapter(model_id)
        self.add_adapter(adapter_name, config, _weights=weights)
        self._inference[adapter_name] = not is_trainable

    def set_adapter(self, adapter_name: str) -> None:
        """Make ``adapter_name`` the one the forward uses (and the one that trains)."""
        if adapter_name not in self.peft_config:
            raise ValueError(f"No adapter named {adapter_name!r}; adapters: {sorted(self.peft_config)}.")
        if adapter_name == self.active_adapter:
            return
        if self.active_adapter is not None:
            self._stash[self.active_adapter] = self._adapter_leaves(self.active_adapter)
        base = self._base_flat()
        base.update(self._stash.pop(adapter_name))
        self.active_adapter = adapter_name
        config = self.peft_config[adapter_name]
        self._switch_class(LoraRuntime(float(config.scaling), float(config.lora_dropout)))
        self.params = unflatten(base)

    @property
    def active_adapters(self) -> list[str]:
        return [self.active_adapter] if self.active_adapter is not None else []

    def _switch_class(self, runtime: LoraRuntime) -> None:
        self.__class__ = peft_class(self.base_model_class, runtime)
        self.module = self.module_class(config=self.config, dtype=self.dtype)

    def _adapter_paths(self, name: str) -> list[str]:
        t = self._targets[name]
        return [l.scope + "/" + leaf for l in t.layers for leaf in LORA_LEAVES] + list(t.saved)

    def _adapter_leaves(self, name: str) -> dict:
        if name != self.active_adapter:
            return dict(self._stash[name])
        flat = flatten(self.params)
        return {p: flat[p] for p in self._adapter_paths(name)}

    def _base_flat(self) -> dict:
        """The frozen base as a flat dict: no adapter leaves, the original modules_to_save."""
        flat = flatten(self.params)
        if self.active_adapter is not None:
            for path in self._adapter_paths(self.active_adapter):
                flat.pop(path, None)
        flat.update(self._originals)
        return flat

    @contextlib.contextmanager
    def disable_adapter(self) -> Iterator[None]:
        """Context manager: inside it the model is the plain base (no LoRA, original modules_to_save)."""
        adapted = self.params
        self.params = unflatten(self._base_flat())
        try:
            yield
        finally:
            self.params = adapted

    def adapter_params(self, adapter_name: Optional[str] = None) -> dict:
        """The adapter's own tree (``lora_A``/``lora_B`` per targeted layer, plus the modules_to_save copies)."""
        return unflatten(self._adapter_leaves(adapter_name or self.active_adapter))

    # -- training --------------------------------------------------------------------------------------------------------
    @property
    def frozen_parameters(self) -> Callable[[str, Any], bool]:
        """The freeze predicate for the Trainer / ``create_optimizer`` / ``make_train_step``: everything but the
        active adapter (nothing at all when it was loaded with ``is_trainable=False``)."""
        trainable = set() if self._inference.get(self.active_adapter, False) else set(self._adapter_paths(self.active_adapter))
        return lambda path, leaf: path not in trainable

    def get_nb_trainable_parameters(self) -> tuple[int, int]:
        """(trainable, all) as PEFT counts them: the adapter and modules_to_save copies are trainable; all = the
        base's parameters (at their unquantised sizes) + the trainable ones."""
        sizes = {n: int(sum(np.prod(np.shape(v)) for v in self._adapter_leaves(n).values())) for n in self.peft_config}
        trainable = 0 if self._inference.get(self.active_adapter, False) else sizes[self.active_adapter]
        return trainable, self._base_count + sum(sizes.values())

    def print_trainable_parameters(self) -> None:
        """Print PEFT's line: ``trainable params: 1,024 || all params: 6,448 || trainable%: 15.8809``."""
        trainable, total = self.get_nb_trainable_parameters()
        print(f"trainable params: {trainable:,d} || all params: {total:,d} || trainable%: {100 * trainable / total:.4f}")

    def num_parameters(self, only_trainable: bool = False, exclude_embeddings: bool = False) -> int:
        trainable, total = self.get_nb_trainable_parameters()
        return trainable if only_trainable else total

    def param_shapes(self) -> dict[str, jax.ShapeDtypeStruct]:
        """{flat param path: ShapeDtypeStruct} of the params as they are (adapter and quantised leaves included)."""
        return {p: jax.ShapeDtypeStruct(np.shape(v), v.dtype) for p, v in flatten(self.params).items()}

    def resolved_partition_rules(self) -> Any:
        """The base's partition rules, after rules that replicate the adapter and quantised-kernel leaves (they are
        small; splitting adapters over the ``model`` axis is not implemented yet)."""
        from jax.sharding import PartitionSpec

        extra = [(r"/lora_[AB]$", PartitionSpec()), (r"/kernel_(q|scale|nf4|absmax)$", PartitionSpec())]
        return extra + list(super().resolved_partition_rules())

    # -- merging and saving ----------------------------------------------------------------------------------------------
    def get_base_model(self) -> Any:
        """The base model (adapters removed, not merged)."""
        return self.base_model_class._from_parts(self.config, unflatten(self._base_flat()), self.dtype.name, self.mesh)

    def unload(self) -> Any:
        return self.get_base_model()

    def merge_and_unload(self) -> Any:
        """The base model class with the active adapter folded into its kernels (``W + scaling * A @ B``) and the
        trained modules_to_save in place, as PEFT's ``merge_and_unload``; ``save_pretrained`` on it writes a plain
        model. Quantised kernels come back dequantised in the model's dtype."""
        flat = flatten(self.params)
        scaling = self.peft_config[self.active_adapter].scaling
        for t in self._targets[self.active_adapter].layers:
            a, b = (np.asarray(flat.pop(f"{t.scope}/{n}"), np.float32) for n in LORA_LEAVES)
            quantized = {n: flat.pop(f"{t.scope}/{n}") for n in QUANTIZED_LEAVES if f"{t.scope}/{n}" in flat}
            if quantized:
                kernel, dtype = dequantize(quantized, t.shape), self.dtype
            else:
                kernel, dtype = np.asarray(flat[f"{t.scope}/kernel"], np.float32), flat[f"{t.scope}/kernel"].dtype
            flat[f"{t.scope}/kernel"] = jnp.asarray(kernel + scaling * (a @ b), dtype)
        for path in self._targets[self.active_adapter].saved:
            flat[path] = jnp.asarray(flat[path], self._originals[path].dtype)
        merged = unflatten(_dequantize_rest(flat, self._base_shapes, self.dtype))
        return self.base_model_class._from_parts(self.config, merged, self.dtype.name, self.mesh)

    def save_pretrained(self, save_directory: str | os.PathLike, selected_adapters: Optional[list[str]] = None,
                        **_: Any) -> None:
        """Write each adapter as PEFT does: ``adapter_config.json`` + ``adapter_model.safetensors`` (keys
        ``base_model.model.<module>.lora_A.weight`` …) in ``save_directory``, other adapters in
        ``save_directory/<name>``; ``peft.PeftModel.from_pretrained(torch_model, folder)`` loads them."""
        from .io import write_adapter

        for name in selected_adapters or list(self.peft_config):
            folder = Path(save_directory) if name == "default" else Path(save_directory, name)
            write_adapter(self, name, folder)

    def astype(self, dtype: Any) -> "PeftModel":
        """A copy computing in ``dtype``, float leaves cast (quantised kernels stay quantised)."""
        from ..modeling import resolve_dtype

        dtype = resolve_dtype(dtype)
        cast = lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a
        new = copy.copy(self)
        new.params, new.dtype = jax.tree_util.tree_map(cast, self.params), dtype
        new.module = new.module_class(config=self.config, dtype=dtype)
        return new

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.config.model_type}, adapters {sorted(self.peft_config)}, "
                f"active {self.active_adapter!r})")


def _dequantize_rest(flat: dict, shapes: dict, dtype: Any) -> dict:
    """Replace any remaining quantised kernel leaves by float kernels."""
    scopes = {p.rsplit("/", 1)[0] for p in flat if p.rsplit("/", 1)[-1] in QUANTIZED_LEAVES}
    for scope in scopes:
        leaves = {n: flat.pop(f"{scope}/{n}") for n in QUANTIZED_LEAVES if f"{scope}/{n}" in flat}
        flat[f"{scope}/kernel"] = jnp.asarray(dequantize(leaves, shapes[f"{scope}/kernel"]), dtype)
    return flat


@functools.lru_cache(maxsize=None)
def peft_class(base_class: type, runtime: LoraRuntime) -> type:
    """The adapted subclass of ``base_class`` for this scaling/dropout (cached: one class, one jit cache)."""
    return type(f"Lora{base_class.__name__}", (PeftModel, base_class), {
        "module_class": lora_module_class(base_class.module_class, runtime),
        "base_model_class": base_class, "lora_runtime": runtime, "__module__": __name__,
    })


def _reduce_base(flat: dict, frozen_kernels: set[str], precision: Optional[str], dtype: Any) -> dict:
    """The frozen base in ``precision``: "bfloat16"/"float16" cast every float leaf; "int8"/"nf4" quantise the
    Dense kernels in ``frozen_kernels`` and keep the other float leaves in bfloat16."""
    if precision in (None, "float32") and jnp.dtype(dtype) == jnp.float32:
        return flat
    low = {"float32": jnp.float32, "float16": jnp.float16}.get(precision, jnp.bfloat16)
    out = {}
    for path, value in flat.items():
        if precision in ("int8", "nf4") and path in frozen_kernels:
            scope = path[: -len("/kernel")]
            quantize = quantize_int8 if precision == "int8" else quantize_nf4
            out.update({f"{scope}/{k}": jnp.asarray(v) for k, v in quantize(np.asarray(value, np.float32)).items()})
        elif jnp.issubdtype(value.dtype, jnp.floating):
            out[path] = jnp.asarray(value, low)
        else:
            out[path] = value
    return out


def get_peft_model(model: Any, peft_config: LoraConfig, adapter_name: str = "default", *,
                   base_precision: Optional[str] = None, seed: int = 0, _weights: Optional[dict] = None) -> PeftModel:
    """``model`` with a LoRA adapter (PEFT's ``get_peft_model``); ``model`` itself is not modified.

    base_precision: store the frozen base in reduced precision: "bfloat16" (or "float16"), or QLoRA-style
    "int8" (per-channel) / "nf4" (4-bit NormalFloat, blocks of 64) Dense kernels dequantised on the fly, the other
    frozen weights in bfloat16. Output layers and modules_to_save stay as they are. None keeps the base as loaded.
    seed: initialises the adapter.
    """
    if isinstance(model, PeftModel):
        raise ValueError("This model already has adapters: use model.add_adapter(name, config) for another one.")
    if not isinstance(peft_config, LoraConfig):
        raise TypeError(f"get_peft_model needs a fxformers.LoraConfig, got {type(peft_config).__name__}.")
    if base_precision not in BASE_PRECISIONS:
        raise ValueError(f"base_precision must be one of {BASE_PRECISIONS}, got {base_precision!r}.")
    peft_config = copy.deepcopy(peft_config)
    if peft_config.base_model_name_or_path is None:
        peft_config.base_model_name_or_path = getattr(model.config, "_name_or_path", None) or None
    shapes = {p: tuple(v.shape) for p, v in flatten(model.params).items()}
    targets = resolve(type(model), model.config, shapes, peft_config)
    flat = flatten(model.params)
    if base_precision is not None:
        from .targeting import output_kernels

        keep = set(targets.saved) | output_kernels(type(model), model.config, shapes)
        kernels = {p for p in flat if p.endswith("/kernel") and len(shapes[p]) == 2 and p not in keep}
        reduced = _reduce_base({p: v for p, v in flat.items() if p not in targets.saved}, kernels, base_precision, jnp.float32)
        flat = {**reduced, **{p: flat[p] for p in targets.saved}}
    cls = peft_class(type(model), LoraRuntime(float(peft_config.scaling), float(peft_config.lora_dropout)))
    peft = cls._from_parts(model.config, unflatten(flat), model.dtype.name)
    for key, value in vars(model).items():  # generation_config and the like
        if key not in ("params", "module", "config", "dtype"):
            setattr(peft, key, value)
    peft._setup(model, base_precision)
    peft.add_adapter(adapter_name, peft_config, seed=seed, _weights=_weights)
    return peft


def base_memory_bytes(model: PeftModel) -> int:
    """Bytes of the frozen base as stored (quantised kernels at their packed size)."""
    return int(sum(np.asarray(v).nbytes if not hasattr(v, "nbytes") else v.nbytes for v in model._base_flat().values()))
