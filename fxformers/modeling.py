"""PreTrainedModel: a linen module, a params pytree and a config, with Transformers' loading and saving API.

``model(**inputs)`` validates the inputs on the host (JAX would clamp out-of-range ids silently) and runs a cached
``jax.jit`` of ``module.apply``. The class is a pytree (params are the children; config and dtype are static), so
``jax.grad(loss)(model, batch)`` and ``jax.jit(f)(model, ...)`` work on it directly.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import inspect
import logging
import os
import re
from pathlib import Path
from typing import Any, ClassVar, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from jax.sharding import Mesh, NamedSharding

from .checkpoints.lazy import release_freed_memory
from .compilation_cache import enable_compilation_cache
from .configuration import PretrainedConfig, drop_torch_only_kwargs
from .convert import ConversionTable, align_prefix, flatten, flax_to_pytorch, pytorch_to_flax, unflatten
from .ops.bucketing import bucket_length
from .ops.unpadding import check_right_padded, unpadded_length
from .random import next_key
from .sharding import PartitionRules, gather_to_host, param_shardings, place_batch

logger = logging.getLogger(__name__)

_FLAGS = ("output_hidden_states", "output_attentions", "train")


def resolve_dtype(dtype: Any, config: Optional[PretrainedConfig] = None) -> jnp.dtype:
    """None -> float32; "auto" -> the checkpoint's dtype; names ("bfloat16", "torch.float16"), torch dtypes
    (``torch.bfloat16``, read by name: torch is never imported) or dtypes as given."""
    if dtype is None:
        return jnp.dtype(jnp.float32)
    if type(dtype).__module__ == "torch":
        dtype = str(dtype)  # "torch.bfloat16"
    if isinstance(dtype, str):
        if dtype == "auto":
            saved = getattr(config, "dtype", None) if config is not None else None
            return resolve_dtype(saved if saved not in (None, "auto") else None)
        name = dtype.removeprefix("torch.")
        try:
            return jnp.dtype({"float": "float32", "half": "float16", "bf16": "bfloat16"}.get(name, name))
        except TypeError:
            raise ValueError(f"Unknown dtype {dtype!r}; use float32, bfloat16 or float16.") from None
    return jnp.dtype(dtype)


# Keywords that change what is loaded and that fxformers does not implement: refused rather than ignored.
_UNSUPPORTED_LOAD_KWARGS = {
    "quantization_config": "quantization is not implemented; load in float32 or dtype='bfloat16'",
    "load_in_8bit": "quantization is not implemented; load in float32 or dtype='bfloat16'",
    "load_in_4bit": "quantization is not implemented; load in float32 or dtype='bfloat16'",
    "gguf_file": "GGUF files are not read; pass a folder with safetensors or pytorch_model.bin",
    "subfolder": "pass the subfolder's path itself (a local folder)",
    "variant": "rename the variant's weights file to model.safetensors (or pass a folder holding it)",
    "state_dict": "use Model.from_state_dict(state_dict, config)",
}


def pop_load_kwargs(class_name: str, dtype: Any, kwargs: dict) -> Any:
    """Take Transformers-only loading keywords out of ``kwargs`` (in place) and return the dtype to use.

    ``torch_dtype`` (Transformers 4) is ``dtype``; PyTorch-only keywords are dropped with one info line;
    keywords that would change what is loaded and are not implemented raise.
    """
    legacy = kwargs.pop("torch_dtype", None)
    if dtype is None:
        dtype = legacy
    for key, why in _UNSUPPORTED_LOAD_KWARGS.items():
        value = kwargs.pop(key, None)
        if value not in (None, False, ""):
            raise NotImplementedError(f"{class_name}.from_pretrained({key}=...) is not supported: {why}.")
    drop_torch_only_kwargs(class_name, kwargs)
    return dtype


def check_config_overrides(class_name: str, config: PretrainedConfig, overrides: dict) -> dict:
    """Transformers' rule: keyword arguments naming a config attribute override it; any other raises TypeError."""
    unknown = sorted(k for k in overrides if not hasattr(config, k))
    if unknown:
        raise TypeError(
            f"{class_name}.from_pretrained() got unexpected keyword arguments {unknown}: they are neither loading "
            f"options nor fields of {type(config).__name__}. Check the spelling (e.g. num_labels), or set a new "
            "config field explicitly with config=AutoConfig.from_pretrained(...) and config.<field> = value."
        )
    return overrides


class PreTrainedModel:
    """Base of every model class. Subclasses set the class attributes below and ``conversion_table``."""

    config_class: ClassVar[type[PretrainedConfig]] = PretrainedConfig
    module_class: ClassVar[type[nn.Module]]
    base_model_prefix: ClassVar[str] = ""
    # True for task heads: params nest the base model under `base_model_prefix` (as Transformers' state dicts do).
    has_base_prefix: ClassVar[bool] = False
    # Flax path regexes of weights a checkpoint may lack (initialised fresh with a warning), besides task heads.
    optional_weights: ClassVar[tuple[str, ...]] = ()
    # (flax path regex, axis) of every parameter with a vocabulary axis, for resize_token_embeddings.
    vocab_params: ClassVar[tuple[tuple[str, int], ...]] = ()
    main_input_name: ClassVar[str] = "input_ids"

    def __init_subclass__(cls, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        jax.tree_util.register_pytree_node(
            cls,
            lambda m: ((m.params,), (m.config, m.dtype.name, m.mesh)),
            lambda aux, children: cls._from_parts(aux[0], children[0], aux[1], aux[2]),
        )

    #: The device mesh the params live on (``from_pretrained(..., mesh=)`` or ``shard(mesh)``); None: one device.
    mesh: Optional[Mesh] = None

    def __init__(self, config: PretrainedConfig, params: Any = None, *, dtype: Any = None, seed: int = 0):
        enable_compilation_cache()
        self.config = config
        self.dtype = resolve_dtype(dtype)
        self.module = self.module_class(config=config, dtype=self.dtype)
        self.params = params if params is not None else self.init_params(jax.random.PRNGKey(seed))

    @classmethod
    def _from_parts(cls, config: PretrainedConfig, params: Any, dtype: str, mesh: Optional[Mesh] = None) -> "PreTrainedModel":
        model = object.__new__(cls)
        model.config, model.dtype, model.params, model.mesh = config, jnp.dtype(dtype), params, mesh
        model.module = cls.module_class(config=config, dtype=model.dtype)
        return model

    # -- per-architecture hooks ----------------------------------------------------------------------------------
    @classmethod
    def conversion_table(cls, config: PretrainedConfig) -> ConversionTable:
        raise NotImplementedError(f"{cls.__name__} defines no conversion table.")

    @classmethod
    def partition_rules(cls, config: PretrainedConfig) -> "PartitionRules":
        """(regex over the flax param path, PartitionSpec) for every parameter: where it lives on a device mesh.

        Defined per family beside the conversion table (see ``fxformers.sharding``); one table serves all of a
        family's heads.
        """
        raise NotImplementedError(f"{cls.__name__} defines no partition rules; pass partition_rules= explicitly.")

    def dummy_inputs(self) -> dict:
        ids = jnp.ones((1, 8), jnp.int32)
        return {"input_ids": ids, "attention_mask": ids}

    def max_input_length(self) -> Optional[int]:
        """Longest sequence the position table allows (None when unbounded)."""
        return getattr(self.config, "max_position_embeddings", None)

    # -- construction ----------------------------------------------------------------------------------------------
    def init_params(self, rng: jax.Array) -> dict:
        return jax.tree_util.tree_map(lambda a: a.astype(self.dtype), _init(self.module, rng, self.dummy_inputs()))

    @classmethod
    def from_config(cls, config: PretrainedConfig, *, seed: int = 0, dtype: Any = None) -> "PreTrainedModel":
        return cls(config, dtype=dtype, seed=seed)

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike,
        *,
        config: Optional[PretrainedConfig] = None,
        dtype: Any = None,
        seed: int = 0,
        cache_dir: Optional[str] = None,
        revision: Optional[str] = None,
        token: Optional[str] = None,
        local_files_only: bool = False,
        from_pt: Optional[bool] = None,
        from_flax: Optional[bool] = None,
        ignore_mismatched_sizes: bool = False,
        mesh: Optional[Mesh] = None,
        partition_rules: Optional[PartitionRules] = None,
        **config_overrides: Any,
    ) -> "PreTrainedModel":
        """Load a checkpoint folder or hub model (safetensors, sharded, pytorch_model.bin, flax_model.msgpack).

        ``dtype`` sets the parameter and compute dtype (float32 by default, "auto" for the checkpoint's own);
        ``seed`` initialises any weight the checkpoint lacks (a new task head) deterministically; other keyword
        arguments override config fields (``num_labels=3``).

        The checkpoint is read tensor by tensor and each tensor is converted, cast and placed before the next is
        read, so host memory stays near one copy of the weights. ``mesh`` (from ``fxformers.create_mesh``) places
        each tensor straight onto its shard of the mesh, by the family's partition rules or ``partition_rules``.
        """
        from .checkpoints.loading import open_state_dict

        hub = dict(cache_dir=cache_dir, revision=revision, token=token, local_files_only=local_files_only)
        dtype = pop_load_kwargs(cls.__name__, dtype, config_overrides)
        if config is None:
            config = cls.config_class.from_pretrained(name_or_path, **hub)
        else:
            config = copy.deepcopy(config)
        config.update(check_config_overrides(cls.__name__, config, config_overrides))
        state_dict = open_state_dict(name_or_path, from_flax=from_flax, **hub)
        return cls.from_state_dict(
            state_dict, config, source=state_dict.source, dtype=resolve_dtype(dtype, config), seed=seed,
            ignore_mismatched_sizes=ignore_mismatched_sizes, mesh=mesh, partition_rules=partition_rules,
        )

    @classmethod
    def from_state_dict(
        cls,
        state_dict: Mapping[str, Any],
        config: PretrainedConfig,
        *,
        source: str = "the state dict",
        dtype: Any = None,
        seed: int = 0,
        ignore_mismatched_sizes: bool = False,
        mesh: Optional[Mesh] = None,
        partition_rules: Optional[PartitionRules] = None,
    ) -> "PreTrainedModel":
        """Build the model from a PyTorch-named state dict ({key: array or LazyTensor}), reporting every problem at
        once. Each tensor is placed (on ``mesh`` when given) as soon as it is converted; only the weights the
        checkpoint lacks are initialised."""
        enable_compilation_cache()
        model = cls._from_parts(config, None, resolve_dtype(dtype).name, mesh)
        model._custom_partition_rules = partition_rules
        target = model.param_shapes()
        shardings = model.param_shardings(target, partition_rules)
        rename = align_prefix(state_dict.keys(), cls.base_model_prefix, cls.has_base_prefix)

        def place(path: str, value: np.ndarray) -> jax.Array:
            placed = jax.device_put(value, shardings.get(path)).block_until_ready()
            if value.nbytes >= 1 << 20:
                release_freed_memory()  # the host copies of this tensor, before the next one is read
            return placed

        filled, report = pytorch_to_flax(cls.conversion_table(config), state_dict, target, rename, place=place)
        fatal_missing = [p for p in report.missing if not model._may_be_missing(p)]
        if fatal_missing or (report.mismatched and not ignore_mismatched_sizes):
            hint = "pass ignore_mismatched_sizes=True to re-initialise mis-shaped weights, " if report.mismatched else ""
            raise ValueError(
                f"Cannot load {cls.__name__} from {source}:\n{report.describe(source)}\n"
                f"Check that the checkpoint matches its config.json ({hint}or load it with the class that saved it)."
            )
        fresh_paths = report.missing + [p for p in target if p not in filled and p not in report.missing]
        if fresh_paths:
            filled.update(model._init_subset(fresh_paths, seed, shardings))
            logger.warning(
                "Some weights of %s were not initialized from %s and are newly initialized: %s\n"
                "You should probably TRAIN this model on a down-stream task to be able to use it for predictions "
                "and inference.", cls.__name__, source, sorted(fresh_paths),
            )
        if report.unexpected:
            logger.info("Some weights of %s were not used by %s: %s", source, cls.__name__, report.unexpected)
        model.params = unflatten({p: filled[p] for p in target})
        return model

    def param_shapes(self) -> dict[str, jax.ShapeDtypeStruct]:
        """{flat param path: ShapeDtypeStruct} in this model's dtype, without allocating anything."""
        shapes = jax.eval_shape(lambda r: self.module.init(r, **self.dummy_inputs())["params"], jax.random.PRNGKey(0))
        return {p: jax.ShapeDtypeStruct(s.shape, self.dtype) for p, s in flatten(shapes).items()}

    def param_shardings(self, shapes: Optional[Mapping[str, Any]] = None,
                        partition_rules: Optional[PartitionRules] = None) -> dict[str, Any]:
        """{flat param path: NamedSharding} on ``self.mesh`` from the partition rules ({} without a mesh)."""
        if self.mesh is None:
            return {}
        shapes = self.param_shapes() if shapes is None else shapes
        rules = self.resolved_partition_rules() if partition_rules is None else partition_rules
        return flatten(param_shardings(rules, unflatten(dict(shapes)), self.mesh, what=type(self).__name__))

    def resolved_partition_rules(self) -> PartitionRules:
        """The rules this model was placed with: ``partition_rules=`` given at load or ``shard``, else the family's."""
        custom = getattr(self, "_custom_partition_rules", None)
        return custom if custom is not None else self.partition_rules(self.config)

    def _init_subset(self, paths: list[str], seed: int, shardings: Mapping[str, Any]) -> dict[str, jax.Array]:
        """Fresh values of ``paths`` only, equal to the same paths of ``init_params(PRNGKey(seed))``: the full init
        is traced, but XLA computes (and allocates) only the outputs returned."""
        def init(rng):
            flat = flatten(self.module.init(rng, **self.dummy_inputs())["params"])
            return {p: flat[p].astype(self.dtype) for p in paths}

        out_shardings = {p: shardings[p] for p in paths} if shardings else None
        return jax.jit(init, out_shardings=out_shardings)(jax.random.PRNGKey(seed))

    def shard(self, mesh: Mesh, partition_rules: Optional[PartitionRules] = None) -> "PreTrainedModel":
        """Move the params onto ``mesh`` by the partition rules (in place; returns self)."""
        self.mesh = mesh
        if partition_rules is not None:
            self._custom_partition_rules = partition_rules
        shardings = self.param_shardings(partition_rules=partition_rules)
        self.params = unflatten({p: jax.device_put(v, shardings[p]) for p, v in flatten(self.params).items()})
        return self

    def _may_be_missing(self, path: str) -> bool:
        if self.has_base_prefix and not path.startswith(self.base_model_prefix + "/"):
            return True  # a task head: new heads are initialised, as in Transformers
        return any(re.search(p, path) for p in self.optional_weights)

    # -- saving ----------------------------------------------------------------------------------------------------
    def state_dict(self, lazy: bool = False) -> dict:
        """Parameters as a PyTorch-named {key: np.ndarray} dict, as ``save_pretrained`` writes them.

        ``lazy=True`` gives ``LazyTensor``s instead: each gathers its (possibly sharded) parameter to the host only
        when materialized, which is how ``save_pretrained`` writes a model one tensor at a time.
        """
        table = self.conversion_table(self.config)
        if lazy:
            return flax_to_pytorch(table, flatten(self.params), to_host=gather_to_host)
        return flax_to_pytorch(table, {p: gather_to_host(v) for p, v in flatten(self.params).items()})

    def save_pretrained(self, save_directory: str | os.PathLike, *, max_shard_size: int | str = "5GB", **_: Any) -> None:
        """Write config.json and model.safetensors (sharded past max_shard_size) that transformers loads as is."""
        from .checkpoints.saving import save_model_files
        from .configuration import CONFIG_NAME
        from .generation.configuration import GENERATION_CONFIG_NAME

        config = copy.deepcopy(self.config)
        config.architectures = [type(self).__name__]
        config.dtype = self.dtype.name
        # One save: every file written in full before any replaces the old one, weights first and config.json
        # last, one save at a time per folder. A full disk part-way leaves the previous model loadable.
        texts = {CONFIG_NAME: config.to_json_string()}
        generation_config = getattr(self, "generation_config", None)
        if generation_config is not None:
            texts = {GENERATION_CONFIG_NAME: generation_config.to_json_string(), **texts}
        save_model_files(self.state_dict(lazy=True), save_directory, texts, max_shard_size=max_shard_size)

    # -- running ---------------------------------------------------------------------------------------------------
    def __call__(self, *args: Any, params: Any = None, dropout_rng: Optional[jax.Array] = None,
                 unpad_inputs: bool = False, **kwargs: Any):
        """Run the model. Keyword names follow Transformers; ``train=True`` with ``dropout_rng`` enables dropout.

        ``unpad_inputs=True`` (encoder models) runs the dense layers on the real tokens of a right-padded batch
        only: the same results at real tokens, zeros at padding positions, less work for batches of short texts
        (see ``fxformers.ops.unpadding``).
        """
        if args:
            kwargs[self.main_input_name] = args[0]
            if len(args) > 1:
                raise TypeError("Pass model inputs after the first as keywords (attention_mask=..., ...).")
        return_dict = kwargs.pop("return_dict", None)
        kwargs.pop("use_cache", None)  # the forward never returns a KV cache; generate() keeps its own
        if "token_type_ids" in kwargs and not _module_accepts(self.module_class, "token_type_ids"):
            kwargs.pop("token_type_ids")  # e.g. DistilBERT: no segment embeddings; Transformers 5 ignores them too
        if self.dtype == jnp.float16:
            self._check_float16()
        flags = self._call_flags(kwargs)
        inputs = self.prepare_inputs({k: v for k, v in kwargs.items() if v is not None})
        if flags["train"] and dropout_rng is None:
            if not self.training:
                raise ValueError("train=True needs dropout_rng=jax.random.PRNGKey(...) for dropout.")
            dropout_rng = next_key()  # model.train(): fresh dropout per call, as PyTorch draws it
        rngs = {"dropout": dropout_rng} if flags["train"] else {}
        length, bucket = self._call_bucket(inputs)
        if bucket != length:  # pad the token axis to a bucket: few shapes, few compilations; outputs sliced back
            inputs = _pad_token_axis(inputs, length, bucket, getattr(self.config, "pad_token_id", None) or 0)
        module = self._unpadded_module(inputs.get("attention_mask")) if unpad_inputs else self.module
        if self.mesh is not None:
            inputs = place_batch(inputs, self.mesh)
        outputs = _forward(module, self.params if params is None else params, inputs, rngs, **flags)
        if bucket != length:
            outputs = _slice_token_axis(outputs, length)
        if return_dict is None:
            return_dict = getattr(self.config, "return_dict", True)
        return outputs if return_dict or not hasattr(outputs, "to_tuple") else outputs.to_tuple()

    def _check_float16(self) -> None:
        leaf = jax.tree_util.tree_leaves(self.params)[0]
        if isinstance(leaf, jax.Array) and not isinstance(leaf, jax.core.Tracer) and \
                all(d.platform == "cpu" for d in leaf.devices()):
            raise ValueError(
                f"{type(self).__name__} is in float16, which XLA cannot run on CPU (its matrix products have no "
                "float16 kernel). On CPU load it with dtype='bfloat16' or float32 (the default), or use "
                "model.astype(jnp.float32); float16 runs on GPU."
            )

    def _call_flags(self, kwargs: dict) -> dict:
        """The static flags of a call: given ones win, then the config's ``output_hidden_states`` /
        ``output_attentions`` (as Transformers reads them), then the train/eval mode (``model.train()``)."""
        flags = {}
        for name in _FLAGS:
            value = kwargs.pop(name, None)
            if value is None:
                value = self.training if name == "train" else getattr(self.config, name, False)
            flags[name] = bool(value)
        return flags

    #: Whether bucketing the token axis gives the same outputs: the padded positions are masked everywhere and every
    #: token-aligned output is cut back by ``_slice_token_axis``. A family whose heads pool over all positions or
    #: return other token-aligned fields sets it False.
    bucket_safe: ClassVar[bool] = True

    # -- PyTorch habits: the mode, the device, the embeddings -----------------------------------------------------
    training: bool = False  # Transformers' from_pretrained returns a model in eval mode

    def train(self, mode: bool = True) -> "PreTrainedModel":
        """Training mode: calls apply dropout (keys drawn from the library key that ``set_seed`` seeds, unless
        ``dropout_rng=`` is given). The Trainer does not need it; it drives dropout itself."""
        self.training = bool(mode)
        return self

    def eval(self) -> "PreTrainedModel":
        """Inference mode (the default): no dropout."""
        return self.train(False)

    @property
    def device(self) -> jax.Device:
        """The device holding the parameters (the first one when they are sharded)."""
        leaf = jax.tree_util.tree_leaves(self.params)[0]
        return next(iter(leaf.devices())) if isinstance(leaf, jax.Array) else jax.devices()[0]

    def to(self, device: Any = None, dtype: Any = None) -> "PreTrainedModel":
        """``model.to("cuda")`` / ``model.to(jax_device)`` / ``model.to(dtype)``: put the params on that device
        (``"cuda"``/``"gpu"``/``"cpu"``/``"tpu"``, an index, or a ``jax.Device``), cast them when a dtype is given."""
        if dtype is None and device is not None and not isinstance(device, (str, int, jax.Device)) \
                and type(device).__name__ != "device":
            device, dtype = None, device  # model.to(torch.float16) / model.to(jnp.bfloat16)
        model = self.astype(dtype) if dtype is not None else self
        if device is not None:
            model.params = jax.device_put(model.params, resolve_device(device))
        return model

    def get_input_embeddings(self) -> Any:
        """The word-embedding matrix [V, D] (a jax.Array; set it back with ``set_input_embeddings``)."""
        return flatten(self.params)[self._input_embeddings_path()]

    def set_input_embeddings(self, value: Any) -> None:
        flat = flatten(self.params)
        path = self._input_embeddings_path()
        if tuple(value.shape) != tuple(flat[path].shape):
            raise ValueError(f"New input embeddings have shape {tuple(value.shape)}, expected "
                             f"{tuple(flat[path].shape)}; use resize_token_embeddings to change the vocabulary.")
        flat[path] = jnp.asarray(value, flat[path].dtype)
        self.params = unflatten(flat)

    def _input_embeddings_path(self) -> str:
        vocab = getattr(self.config, "vocab_size", None)
        for path, value in flatten(self.params).items():  # the first vocabulary-sized embedding table
            if path.endswith("embedding") and value.ndim == 2 and value.shape[0] == vocab:
                return path
        raise NotImplementedError(f"{type(self).__name__} has no input embedding table of {vocab} rows.")

    # Pad the token axis of model(...) calls to a bucketed length (fxformers.ops.bucketing, the pipelines' rule) and
    # slice the outputs back: the same values, one compilation per bucket instead of one per length. On for the
    # encoder families, whose padded positions are masked (and whose positions do not depend on the padding);
    # set FXFORMERS_BUCKET_INPUTS=0 (or model.bucket_inputs = False) to run every shape as given.
    @property
    def bucket_inputs(self) -> bool:
        explicit = self.__dict__.get("_bucket_inputs")
        if explicit is not None:
            return explicit
        return self.bucket_safe and self.supports_unpadding and \
            os.environ.get("FXFORMERS_BUCKET_INPUTS", "1").lower() not in ("0", "false", "no", "off")

    @bucket_inputs.setter
    def bucket_inputs(self, value: bool) -> None:
        self.__dict__["_bucket_inputs"] = bool(value)

    def _call_bucket(self, inputs: dict) -> tuple[int, int]:
        """(length, bucketed length) of this call's token axis; equal when the call runs as given."""
        ids = inputs.get("input_ids")
        if ids is None or ids.ndim < 2 or not self.bucket_inputs or "start_positions" in inputs or \
                "end_positions" in inputs or any(isinstance(v, jax.core.Tracer) for v in inputs.values()):
            return 0, 0  # (question answering's loss is a softmax over every position: padding would change it)
        length = ids.shape[-1]
        return length, bucket_length(length, minimum=16, max_length=self.max_input_length())

    @property
    def supports_unpadding(self) -> bool:
        """Whether ``unpad_inputs=True`` is available (the module has an unpadded mode)."""
        return "unpad_to" in {f.name for f in dataclasses.fields(self.module_class)}

    def _unpadded_module(self, attention_mask: Any) -> nn.Module:
        """The module in unpadded mode, sized for the real tokens of ``attention_mask`` (itself when unpadding
        would save nothing)."""
        if not self.supports_unpadding:
            raise NotImplementedError(
                f"unpad_inputs=True is implemented for the encoder models (BERT, RoBERTa, XLM-R, DistilBERT), not "
                f"{type(self).__name__}; call it without unpad_inputs."
            )
        if attention_mask is None:
            return self.module  # nothing is padding
        if isinstance(attention_mask, jax.core.Tracer):
            raise ValueError(
                "unpad_inputs=True sizes the packed batch on the host from a concrete attention_mask; it cannot run "
                "inside jax.jit: call the model outside jit, or without unpad_inputs."
            )
        real = check_right_padded(np.asarray(attention_mask))
        size = unpadded_length(real)
        return self.module if size >= np.size(attention_mask) else self.module.clone(unpad_to=size)

    def prepare_inputs(self, inputs: dict) -> dict:
        """Check inputs on the host; raises before JAX could clamp a bad index silently.

        Host data stays numpy (the jitted call transfers it once, in C++; a ``jnp.asarray`` here would add a
        dispatch per input) and jax arrays stay where they are.
        """
        for name, value in inputs.items():
            if not isinstance(value, (jax.Array, np.ndarray)):
                inputs[name] = np.asarray(value)
        if any(isinstance(v, jax.core.Tracer) for v in inputs.values()):
            # inside the caller's jax.jit / grad: values are not known, check what the shapes say
            self.validate_shapes(inputs)
        else:
            self.validate_inputs(inputs)
        return inputs

    def validate_shapes(self, inputs: dict) -> None:
        """The static part of ``validate_inputs`` (dtype and shapes), usable on traced arrays."""
        ids = inputs.get("input_ids")
        if ids is None and inputs.get("inputs_embeds") is None:
            raise ValueError(f"{type(self).__name__} needs input_ids (or inputs_embeds).")
        if ids is not None and not jnp.issubdtype(ids.dtype, jnp.integer):
            raise TypeError(f"input_ids must be integers, got dtype {ids.dtype}.")
        limit = self.max_input_length()
        if ids is not None and limit is not None and ids.shape[-1] > limit:
            raise ValueError(
                f"input_ids has length {ids.shape[-1]}, longer than this model's limit of {limit} positions "
                "(max_position_embeddings); truncate the input (tokenizer(..., truncation=True))."
            )
        for name in ("attention_mask", "token_type_ids", "position_ids"):
            if name in inputs and ids is not None and inputs[name].shape != ids.shape:
                raise ValueError(f"{name} has shape {inputs[name].shape}, input_ids has {ids.shape}; they must match.")

    def validate_inputs(self, inputs: dict) -> None:
        ids = inputs.get("input_ids")
        if ids is None and inputs.get("inputs_embeds") is None:
            raise ValueError(f"{type(self).__name__} needs input_ids (or inputs_embeds).")
        if ids is not None:
            check_ids(ids, "input_ids", getattr(self.config, "vocab_size", None))
            limit = self.max_input_length()
            if limit is not None and ids.shape[-1] > limit:
                raise ValueError(
                    f"input_ids has length {ids.shape[-1]}, longer than this model's limit of {limit} positions "
                    "(max_position_embeddings); truncate the input (tokenizer(..., truncation=True))."
                )
        for name in ("attention_mask", "token_type_ids", "position_ids"):
            if name in inputs and ids is not None and inputs[name].shape != ids.shape:
                raise ValueError(f"{name} has shape {inputs[name].shape}, input_ids has {ids.shape}; they must match.")
        if "token_type_ids" in inputs:
            check_ids(inputs["token_type_ids"], "token_type_ids", getattr(self.config, "type_vocab_size", None))

    # -- utilities -------------------------------------------------------------------------------------------------
    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: Optional[dict] = None) -> None:
        """Recompute each layer's activations in the backward pass instead of keeping them (``jax.checkpoint`` per
        layer): far less activation memory for about a third more compute. ``gradient_checkpointing_kwargs``:
        ``{"policy": name}`` with a ``jax.checkpoint_policies`` name (default ``"nothing_saveable"``, see
        ``fxformers.ops.remat``). Forward results and gradients are unchanged; so are the param names."""
        from .ops.remat import CONFIG_FIELD, policy_name

        setattr(self.config, CONFIG_FIELD, policy_name(gradient_checkpointing_kwargs))

    def gradient_checkpointing_disable(self) -> None:
        from .ops.remat import CONFIG_FIELD

        setattr(self.config, CONFIG_FIELD, None)

    @property
    def is_gradient_checkpointing(self) -> bool:
        return bool(getattr(self.config, "_gradient_checkpointing", None))

    def num_parameters(self, only_trainable: bool = False, exclude_embeddings: bool = False) -> int:
        flat = flatten(self.params)
        return int(sum(np.prod(v.shape) for p, v in flat.items() if not (exclude_embeddings and p.endswith("embedding"))))

    def resize_token_embeddings(self, new_num_tokens: int, pad_to_multiple_of: Optional[int] = None) -> "PreTrainedModel":
        """Grow or shrink every vocabulary-sized parameter; new embedding rows are the mean of the old ones."""
        if pad_to_multiple_of:
            new_num_tokens = -(-new_num_tokens // pad_to_multiple_of) * pad_to_multiple_of
        flat = flatten(self.params)
        for path, value in flat.items():
            for pattern, axis in self.vocab_params:
                if re.search(pattern, path):
                    flat[path] = _resize_axis(value, axis, new_num_tokens)
        self.params = unflatten(flat)
        self.config.vocab_size = new_num_tokens
        self.module = self.module_class(config=self.config, dtype=self.dtype)
        return self

    def astype(self, dtype: Any) -> "PreTrainedModel":
        """A copy with parameters and compute in ``dtype`` (e.g. jnp.bfloat16 for fast inference)."""
        dtype = resolve_dtype(dtype)
        return type(self)._from_parts(self.config, jax.tree_util.tree_map(lambda a: a.astype(dtype), self.params), dtype.name)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config.model_type}, {self.num_parameters():,} parameters, {self.dtype.name})"


# Module-level jits with the linen module as a static argument: modules hash by their fields (config included),
# so every model with the same architecture and config shares one compilation per input shape.
@functools.partial(jax.jit, static_argnames=("module",))
def _init(module: nn.Module, rng: jax.Array, inputs: dict) -> dict:
    return module.init(rng, **inputs)["params"]


@functools.partial(jax.jit, static_argnames=("module",) + _FLAGS)
def _forward(module, params, inputs, rngs, output_hidden_states=False, output_attentions=False, train=False):
    return module.apply(
        {"params": params}, **inputs, deterministic=not train, output_hidden_states=output_hidden_states,
        output_attentions=output_attentions, rngs=rngs,
    )


@functools.lru_cache(maxsize=None)
def _module_accepts(module_class: type, name: str) -> bool:
    return name in inspect.signature(module_class.__call__).parameters


_TOKEN_FIELDS = ("last_hidden_state", "logits", "start_logits", "end_logits")
_IGNORED_LABEL_INPUTS = ("labels", "start_positions", "end_positions")


def _pad_token_axis(inputs: dict, length: int, bucket: int, pad_id: int) -> dict:
    """Right-pad every [..., length] integer input to ``bucket``: ids with the pad id, masks and types with 0 (so
    the padding is masked), token labels with -100 (ignored); an absent attention mask becomes ones + padding."""
    ids = inputs["input_ids"]
    if "attention_mask" not in inputs:
        inputs = dict(inputs, attention_mask=np.ones(ids.shape, np.int32))
    out = {}
    for name, value in inputs.items():
        if value.ndim >= 2 and value.shape[-1] == length and value.shape[:-1] == ids.shape[:-1] \
                and jnp.issubdtype(value.dtype, jnp.integer):  # not float multi-label targets [B, num_labels]
            fill = pad_id if name == "input_ids" else (-100 if name in _IGNORED_LABEL_INPUTS else 0)
            widths = [(0, 0)] * (value.ndim - 1) + [(0, bucket - length)]
            value = np.pad(np.asarray(value), widths, constant_values=fill) if isinstance(value, np.ndarray) \
                else jnp.pad(value, widths, constant_values=fill)
        out[name] = value
    return out


def _slice_token_axis(outputs: Any, length: int) -> Any:
    """The outputs of a bucketed call cut back to ``length`` tokens: [B, T, ...] fields, hidden states, and the
    [B, N, T, T] attention maps. Sequence-level outputs ([B, num_labels] logits, pooler output) are untouched."""
    changes = {}
    for name in _TOKEN_FIELDS:
        value = getattr(outputs, name, None)
        if value is not None and not (name == "logits" and value.ndim == 2):
            changes[name] = _cut(value, (1,), length)
    if getattr(outputs, "hidden_states", None) is not None:
        changes["hidden_states"] = tuple(_cut(h, (1,), length) for h in outputs.hidden_states)
    if getattr(outputs, "attentions", None) is not None:
        changes["attentions"] = tuple(_cut(a, (2, 3), length) for a in outputs.attentions)
    return outputs.replace(**changes) if changes else outputs


def _cut(value: jax.Array, axes: tuple[int, ...], length: int) -> jax.Array:
    """``value`` cut to ``length`` along ``axes``. On CPU through a numpy view and one copy: an eager jax slice
    would compile a small program for every new length, which is what bucketing avoids."""
    index = tuple(slice(0, length) if axis in axes else slice(None) for axis in range(value.ndim))
    if all(d.platform == "cpu" for d in value.devices()):
        return jax.device_put(np.ascontiguousarray(np.asarray(value)[index]), next(iter(value.devices())))
    return value[index]


def _resize_axis(value: jax.Array, axis: int, size: int) -> jax.Array:
    old = value.shape[axis]
    if size <= old:
        return jax.lax.slice_in_dim(value, 0, size, axis=axis)
    fill_shape = list(value.shape)
    fill_shape[axis] = size - old
    fill = jnp.broadcast_to(value.mean(axis=axis, keepdims=True), fill_shape) if value.ndim > 1 else jnp.zeros(fill_shape, value.dtype)
    return jnp.concatenate([value, fill.astype(value.dtype)], axis=axis)


@jax.jit
def _min_max(ids: jax.Array) -> tuple[jax.Array, jax.Array]:
    return ids.min(), ids.max()


def check_ids(ids: jax.Array, name: str, limit: Optional[int]) -> None:
    """Integer dtype and every value in [0, limit): raises ValueError naming the first offending value."""
    if not jnp.issubdtype(ids.dtype, jnp.integer):
        raise TypeError(f"{name} must be integers, got dtype {ids.dtype}.")
    if ids.size == 0:
        return
    if isinstance(ids, jax.Array) and any(d.platform != "cpu" for d in ids.devices()):
        low, high = jax.device_get(_min_max(ids))  # two scalars back from the accelerator, not the whole array
    else:
        host = np.asarray(ids)  # numpy, or a view of a CPU array: no copy
        low, high = host.min(), host.max()
    if low < 0 or (limit is not None and high >= limit):
        host = np.asarray(ids)
        bad = low if low < 0 else high
        where = tuple(int(i) for i in np.argwhere(host == bad)[0])
        raise ValueError(f"{name} holds {bad} at index {where}, outside [0, {limit}); fix the ids or the tokenizer.")


def resolve_device(device: Any) -> jax.Device:
    """A ``jax.Device`` from PyTorch spellings: "cuda", "cuda:1", "gpu", "cpu", "tpu", "mps", an int, a torch.device."""
    if isinstance(device, jax.Device):
        return device
    text = str(device)
    if isinstance(device, int):
        return jax.devices()[device]
    kind, _, index = text.partition(":")
    platform = {"cuda": "gpu", "rocm": "gpu", "mps": "METAL"}.get(kind, kind)
    try:
        devices = jax.devices(platform)
    except RuntimeError as err:
        raise ValueError(
            f"model.to({device!r}): JAX has no {platform} device here (devices: {jax.devices()}); use "
            "model.to('cpu'), or install the jax build for that accelerator."
        ) from err
    return devices[int(index) if index else 0]
