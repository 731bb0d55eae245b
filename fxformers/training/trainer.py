"""``Trainer`` and ``TrainingArguments``: Transformers' fine-tuning loop around a pure, jitted train step.

The loop is small: draw the next global batch from the shuffled example stream, run ``train_step`` on the device
mesh, log, evaluate and checkpoint on schedule. Everything that changes is in the ``TrainState`` pytree, so a
checkpoint is that pytree and resuming reproduces the uninterrupted run.

Differences from Transformers, all for static shapes under ``jit``:
- Batches are always full. The examples form one stream (epoch after epoch, each epoch a fresh permutation of the
  dataset seeded by ``(data_seed or seed, epoch)``) and each optimizer step takes the next
  ``per_device_train_batch_size x devices x gradient_accumulation_steps`` examples; the number of steps for
  ``num_train_epochs`` is ``ceil(epochs x examples / step size)``; ``epoch`` in logs is fractional.
- Padded lengths are rounded up to a power of two (at least 8), so a new batch length rarely compiles again.
- A non-finite loss or gradient never reaches the weights: ``nan_inf_policy="stop"`` raises
  ``NonFiniteLossError`` naming the step, ``"skip"`` drops that update and goes on (logging a warning).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, NamedTuple, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from ..distributed import barrier
from ..optimization import create_optimizer, freeze_union
from ..sharding import gather_to_host
from . import checkpointing
from .collators import DataCollatorWithPadding, default_data_collator
from ..sharding import batch_sharding, batch_shards
from .sharding import (
    FSDP_MIN_SIZE,
    check_divisible,
    flat_param_shardings,
    initialize_distributed,
    mesh_for_training,
    put_global,
    train_state_shardings,
)
from .callbacks import CallbackHandler, TrainerCallback, TrainerControl, TrainerState, default_callbacks
from .steps import make_eval_step, make_train_step, master_weights
from .train_state import TrainState

logger = logging.getLogger(__name__)

LOG_FILE = "trainer_log.jsonl"
TRAINING_ARGS_FILE = "training_args.json"


class NonFiniteLossError(FloatingPointError):
    """Raised (with ``nan_inf_policy="stop"``) when a step's loss or gradient is NaN or infinite."""

    def __init__(self, step: int, loss: float, grad_norm: float):
        self.step, self.loss, self.grad_norm = step, loss, grad_norm
        super().__init__(
            f"Non-finite training loss at step {step} (loss={loss}, grad_norm={grad_norm}); the update was not "
            "applied, so the weights are the last finite ones. Lower learning_rate, set max_grad_norm, check the "
            "data for bad labels, or pass nan_inf_policy='skip' to drop such updates and continue."
        )


class EvalPrediction(NamedTuple):
    """What ``compute_metrics`` receives: model predictions (logits, or a tuple of them) and the labels."""

    predictions: Any
    label_ids: Any


class PredictionOutput(NamedTuple):
    predictions: Any
    label_ids: Any
    metrics: dict


class TrainOutput(NamedTuple):
    global_step: int
    training_loss: float
    metrics: dict


@dataclass
class TrainingArguments:
    """Transformers' training arguments (same names, defaults and meanings) that apply to fxformers.

    Batch sizes are per batch shard: the global batch is ``per_device_train_batch_size x (data x fsdp)`` of the
    mesh (every device without tensor parallelism).
    Layout: the model's own mesh when it was loaded with ``mesh=`` (any data/fsdp/model layout), else
    ``fsdp`` (True or "full_shard": params and optimizer state split over every device by the partition rules;
    ``fsdp_config={"min_num_params": n}`` keeps arrays under n elements unsplit over fsdp, default 16384) and
    ``tensor_parallel_size`` (the ``model`` axis). fxformers additions: ``param_dtype`` ("bfloat16": master
    params and optimizer state in bf16, for large models; default float32),
    ``nan_inf_policy`` ("stop" or "skip"), ``frozen_parameters`` (parameter-path prefixes to freeze, e.g.
    ``["bert/embeddings", "bert/encoder"]``).
    """

    output_dir: str = "trainer_output"
    overwrite_output_dir: bool = False
    do_train: bool = False
    do_eval: bool = False
    do_predict: bool = False
    eval_strategy: str = "no"
    per_device_train_batch_size: int = 8
    per_device_eval_batch_size: int = 8
    gradient_accumulation_steps: int = 1
    learning_rate: float = 5e-5
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    max_grad_norm: float = 1.0
    num_train_epochs: float = 3.0
    max_steps: int = -1
    lr_scheduler_type: str = "linear"
    lr_scheduler_kwargs: dict = field(default_factory=dict)
    warmup_ratio: float = 0.0
    warmup_steps: float = 0
    logging_strategy: str = "steps"
    logging_first_step: bool = False
    logging_steps: float = 500
    save_strategy: str = "steps"
    save_steps: float = 500
    save_total_limit: Optional[int] = None
    seed: int = 42
    data_seed: Optional[int] = None
    bf16: bool = False
    eval_steps: Optional[float] = None
    remove_unused_columns: bool = True
    label_names: Optional[list] = None
    disable_tqdm: Optional[bool] = None
    report_to: Union[str, list, None] = "none"
    resume_from_checkpoint: Optional[str] = None
    run_name: Optional[str] = None
    fsdp: Union[bool, str] = False
    fsdp_config: Optional[dict] = None
    tensor_parallel_size: int = 1
    param_dtype: Optional[str] = None
    nan_inf_policy: str = "stop"
    frozen_parameters: Optional[list] = None
    fp16: bool = False
    label_smoothing_factor: float = 0.0
    load_best_model_at_end: bool = False
    metric_for_best_model: Optional[str] = None
    greater_is_better: Optional[bool] = None
    logging_dir: Optional[str] = None
    gradient_checkpointing: bool = False
    gradient_checkpointing_kwargs: Optional[dict] = None

    def __post_init__(self):
        self._check_best_model_and_precision()
        for name in ("eval_strategy", "save_strategy", "logging_strategy"):
            value = getattr(getattr(self, name), "value", getattr(self, name))
            if value not in ("no", "steps", "epoch"):
                raise ValueError(f"{name} must be 'no', 'steps' or 'epoch', got {value!r}.")
            setattr(self, name, value)
        if self.eval_strategy == "steps" and self.eval_steps is None:
            self.eval_steps = self.logging_steps
        if self.nan_inf_policy not in ("stop", "skip"):
            raise ValueError(f"nan_inf_policy must be 'stop' or 'skip', got {self.nan_inf_policy!r}.")
        if self.gradient_accumulation_steps < 1:
            raise ValueError("gradient_accumulation_steps must be at least 1.")
        if isinstance(self.frozen_parameters, str):
            self.frozen_parameters = [self.frozen_parameters]

    def _check_best_model_and_precision(self) -> None:
        """Transformers' rules for ``load_best_model_at_end`` / ``metric_for_best_model`` and ``fp16``."""
        for name in ("eval_strategy", "save_strategy"):
            setattr(self, name, getattr(getattr(self, name), "value", getattr(self, name)))
        if self.load_best_model_at_end:
            if self.eval_strategy != self.save_strategy:
                raise ValueError(
                    "load_best_model_at_end requires the save and eval strategy to match, but found save_strategy="
                    f"{self.save_strategy!r} and eval_strategy={self.eval_strategy!r}."
                )
            eval_steps = self.eval_steps if self.eval_steps is not None else self.logging_steps
            if self.eval_strategy == "steps" and self.save_steps % eval_steps != 0:
                raise ValueError(
                    f"load_best_model_at_end requires save_steps ({self.save_steps}) to be a multiple of eval_steps "
                    f"({eval_steps}), so that the best evaluated step has a checkpoint."
                )
            if self.metric_for_best_model is None:
                self.metric_for_best_model = "loss"
        if self.greater_is_better is None and self.metric_for_best_model is not None:
            self.greater_is_better = not self.metric_for_best_model.endswith("loss")
        if self.fp16 and self.bf16:
            raise ValueError("Pass at most one of fp16=True and bf16=True.")
        if self.fp16 and jax.default_backend() == "cpu":
            raise ValueError(
                "fp16=True needs a GPU: XLA has no float16 matrix products on CPU. On CPU use bf16=True (bfloat16 "
                "compute over float32 weights) or leave both off."
            )
        if not 0.0 <= self.label_smoothing_factor < 1.0:
            raise ValueError(f"label_smoothing_factor must be in [0, 1), got {self.label_smoothing_factor}.")

    @property
    def compute_dtype(self) -> Any:
        """The mixed-precision compute dtype (weights stay float32): bfloat16, float16 or None."""
        return jnp.bfloat16 if self.bf16 else (jnp.float16 if self.fp16 else None)

    def get_warmup_steps(self, num_training_steps: int) -> int:
        """``warmup_steps`` (a fraction of the steps when below 1) or else ``ceil(warmup_ratio x steps)``."""
        if self.warmup_steps and self.warmup_steps > 0:
            return int(math.ceil(self.warmup_steps * num_training_steps)) if self.warmup_steps < 1 else int(self.warmup_steps)
        return int(math.ceil(num_training_steps * self.warmup_ratio))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=str)


def _steps(value: Optional[float], total: int) -> Optional[int]:
    """Transformers' interval spelling: an int, or a float below 1 meaning that fraction of the training steps."""
    if value is None:
        return None
    return max(1, int(math.ceil(value * total))) if value < 1 else int(value)


# -- datasets ---------------------------------------------------------------------------------------------------------
class _Examples:
    """Row access over a list of dicts, a dict of columns, or a ``datasets.Dataset``."""

    def __init__(self, data: Any):
        self.data = data
        if isinstance(data, dict):
            lengths = {k: len(v) for k, v in data.items()}
            if len(set(lengths.values())) > 1:
                raise ValueError(f"Dataset columns have different lengths: {lengths}.")
            self.length = next(iter(lengths.values()), 0)
        else:
            self.length = len(data)

    def __len__(self) -> int:
        return self.length

    def rows(self, indices: Sequence[int]) -> list[dict]:
        if isinstance(self.data, dict):
            return [{k: v[i] for k, v in self.data.items()} for i in indices]
        return [dict(self.data[int(i)]) for i in indices]  # a list, or a datasets.Dataset row


def _bucket(length: int, limit: Optional[int]) -> int:
    """The next power of two >= length (at least 8), not beyond the model's limit when the length fits it."""
    target = max(8, 1 << max(0, length - 1).bit_length())
    return min(target, limit) if limit is not None and length <= limit else target


_IGNORED_LABEL_KEYS = ("labels", "start_positions", "end_positions")


class Trainer:
    """Fine-tune an fxformers model with Transformers' Trainer API.

    model: an fxformers model (``.module``, ``.params``, ``.config``); after ``train()`` its params are the trained
        ones. args: ``TrainingArguments``. data_collator: a callable list-of-dicts -> dict of numpy arrays
        (default: ``DataCollatorWithPadding(tokenizer)`` with a tokenizer, else ``default_data_collator``).
    train_dataset / eval_dataset: lists of dicts, dicts of columns, or ``datasets.Dataset``.
    processing_class / tokenizer: saved with the model by ``save_model``; used for padding.
    compute_metrics: ``EvalPrediction -> dict``. optimizers: ``(optax transformation, schedule)`` to replace the
        AdamW that ``args`` describes (the schedule may be None).
    """

    def __init__(
        self,
        model: Any = None,
        args: Optional[TrainingArguments] = None,
        data_collator: Optional[Callable] = None,
        train_dataset: Any = None,
        eval_dataset: Any = None,
        processing_class: Any = None,
        tokenizer: Any = None,
        compute_metrics: Optional[Callable[[EvalPrediction], dict]] = None,
        optimizers: tuple = (None, None),
        callbacks: Optional[list] = None,
    ):
        if model is None:
            raise ValueError("Trainer needs a model.")
        initialize_distributed()
        self.model = model
        self.args = args if args is not None else TrainingArguments()
        self.processing_class = processing_class if processing_class is not None else tokenizer
        self.data_collator = data_collator or (
            DataCollatorWithPadding(self.processing_class) if self.processing_class is not None else default_data_collator
        )
        self.train_dataset, self.eval_dataset = train_dataset, eval_dataset
        self.compute_metrics = compute_metrics
        self.optimizer, self.lr_schedule = optimizers
        self.mesh = mesh_for_training(model, self.args.fsdp, self.args.tensor_parallel_size)
        self.num_devices = batch_shards(self.mesh)  # the batch is split over data x fsdp
        self.log_history: list[dict] = []
        self.train_state: Optional[TrainState] = None
        self.global_step = 0
        self.epoch: Optional[float] = None
        self._accepted = set(inspect.signature(type(model.module).__call__).parameters) - {"self"}
        self.label_names = self.args.label_names or (
            ["start_positions", "end_positions"] if "start_positions" in self._accepted else ["labels"]
        )
        self._eval_step = None
        self.state = TrainerState(is_local_process_zero=jax.process_index() == 0,
                                  is_world_process_zero=jax.process_index() == 0)
        self.control = TrainerControl()
        self.callback_handler = CallbackHandler(default_callbacks(self.args) + list(callbacks or []), model,
                                                self.processing_class)
        self.control = self.callback_handler.call_event("on_init_end", self.args, self.state, self.control)

    # -- callbacks ------------------------------------------------------------------------------------------------
    def add_callback(self, callback: Any) -> None:
        self.callback_handler.add_callback(callback)

    def pop_callback(self, callback: Any) -> Optional[TrainerCallback]:
        return self.callback_handler.pop_callback(callback)

    def remove_callback(self, callback: Any) -> None:
        self.callback_handler.pop_callback(callback)

    def _event(self, name: str, **kwargs: Any) -> None:
        self.state.global_step, self.state.epoch, self.state.log_history = self.global_step, self.epoch, self.log_history
        self.control = self.callback_handler.call_event(name, self.args, self.state, self.control, **kwargs)

    # -- data ---------------------------------------------------------------------------------------------------
    def _keep(self, example: dict) -> dict:
        if not self.args.remove_unused_columns:
            return example
        keep = self._accepted | {"label", "label_ids"}
        return {k: v for k, v in example.items() if k in keep}

    def _collate(self, rows: list[dict]) -> dict:
        batch = self.data_collator([self._keep(r) for r in rows])
        batch = {k: np.asarray(v) for k, v in dict(batch).items() if v is not None and k in self._accepted}
        return self._pad_lengths(batch)

    def _pad_lengths(self, batch: dict) -> dict:
        """Right-pad the last (token) axis of every integer [B, ..., T] array to a power-of-two bucket: labels with
        -100, ``*input_ids`` with the pad id, masks and the rest with 0, so the padding is masked and ignored."""
        limit = self.model.max_input_length() if hasattr(self.model, "max_input_length") else None
        pad_id = getattr(self.processing_class, "pad_token_id", None) or 0
        out = {}
        for key, value in batch.items():
            if value.ndim >= 2 and np.issubdtype(value.dtype, np.integer):
                t = value.shape[-1]
                target = _bucket(t, limit)
                if target != t:
                    fill = -100 if key in _IGNORED_LABEL_KEYS else (pad_id if key.endswith("input_ids") else 0)
                    value = np.pad(value, [(0, 0)] * (value.ndim - 1) + [(0, target - t)], constant_values=fill)
            out[key] = value
        return out

    def _epoch_order(self, epoch: int, n: int) -> np.ndarray:
        cache = getattr(self, "_order_cache", None)
        if cache is None or cache[0] != epoch:
            seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
            self._order_cache = (epoch, np.random.default_rng([seed, epoch]).permutation(n))
        return self._order_cache[1]

    def _stream_indices(self, position: int, count: int, n: int) -> np.ndarray:
        """Dataset indices of stream positions [position, position + count): epoch after shuffled epoch."""
        out = np.empty(count, np.int64)
        for j, p in enumerate(range(position, position + count)):
            out[j] = self._epoch_order(p // n, n)[p % n]
        return out

    def _train_batch(self, data: _Examples, position: int) -> dict:
        """The global batch at stream ``position`` on the host: [B, ...] or [A, B, ...].

        Every process collates the whole global batch (the dataset is the same everywhere), so all agree on its
        padded length and get the same collator output as a one-process run; ``put_global`` then uploads only the
        rows each process's devices hold.
        """
        accumulation = self.args.gradient_accumulation_steps
        global_batch = self.args.per_device_train_batch_size * self.num_devices
        indices = self._stream_indices(position, global_batch * accumulation, len(data))
        batch = self._collate(data.rows(indices))
        if accumulation > 1:
            batch = {k: v.reshape((accumulation, global_batch) + v.shape[1:]) for k, v in batch.items()}
        return batch

    # -- setup ----------------------------------------------------------------------------------------------------
    def _num_training_steps(self, n: int) -> int:
        if self.args.max_steps > 0:
            return int(self.args.max_steps)
        per_step = self.args.per_device_train_batch_size * self.num_devices * self.args.gradient_accumulation_steps
        return max(1, int(math.ceil(self.args.num_train_epochs * n / per_step)))

    def create_optimizer_and_scheduler(self, num_training_steps: int):
        if self.optimizer is None:
            a = self.args
            self.optimizer, self.lr_schedule = create_optimizer(
                a.learning_rate, num_training_steps=num_training_steps,
                num_warmup_steps=a.get_warmup_steps(num_training_steps), lr_scheduler_type=a.lr_scheduler_type,
                lr_scheduler_kwargs=a.lr_scheduler_kwargs or None, weight_decay=a.weight_decay,
                adam_beta1=a.adam_beta1, adam_beta2=a.adam_beta2, adam_epsilon=a.adam_epsilon,
                max_grad_norm=a.max_grad_norm, frozen=self._frozen(),
            )
        return self.optimizer, self.lr_schedule

    def _state_shardings(self, state: Any) -> Any:
        min_size = (self.args.fsdp_config or {}).get("min_num_params", FSDP_MIN_SIZE) if self.args.fsdp_config else 0
        return train_state_shardings(state, self._param_shardings(state.params), self.mesh, min_size)

    def _frozen(self):
        """args.frozen_parameters plus what the model freezes itself (an adapted model: all but its adapter)."""
        return freeze_union(self.args.frozen_parameters, getattr(self.model, "frozen_parameters", None))

    def _param_shardings(self, params: Any) -> dict:
        return flat_param_shardings(self.model, params, self.mesh)

    def _fresh_state(self, tx) -> tuple[TrainState, Any]:
        """The initial state created directly in its shards (``jit`` with ``out_shardings``): no full-size
        parameter or optimizer-state array is ever placed on one device. The model's params are moved onto the
        mesh first (each to its own shards)."""
        if self.model.mesh is not self.mesh:
            self.model.shard(self.mesh)
        dtype = jnp.dtype(self.args.param_dtype) if self.args.param_dtype else jnp.float32
        seed, frozen = self.args.seed, self._frozen()

        def create(params):  # trainable leaves in `dtype`; frozen ones (a bf16 / quantised base) keep theirs
            return TrainState.create(master_weights(params, frozen, dtype), tx, seed)

        shardings = self._state_shardings(jax.eval_shape(create, self.model.params))
        return jax.jit(create, out_shardings=shardings)(self.model.params), shardings

    # -- training -------------------------------------------------------------------------------------------------
    def train(self, resume_from_checkpoint: Union[None, bool, str] = None, **_: Any) -> TrainOutput:
        """Train for ``max_steps`` (or ``num_train_epochs``), resuming from a checkpoint folder (a path) or the
        latest complete one in ``output_dir`` (True). Returns ``TrainOutput(global_step, training_loss, metrics)``."""
        args = self.args
        if self.train_dataset is None:
            raise ValueError("Trainer.train() needs a train_dataset.")
        data = _Examples(self.train_dataset)
        global_batch = args.per_device_train_batch_size * self.num_devices
        check_divisible(global_batch, self.mesh)
        if global_batch % jax.process_count():
            raise ValueError(f"The global batch {global_batch} does not divide over {jax.process_count()} processes.")
        if len(data) == 0:
            raise ValueError("The train_dataset is empty.")
        total_steps = self._num_training_steps(len(data))
        if args.gradient_checkpointing:  # as Transformers does: switched on the model for the rest of its life
            self.model.gradient_checkpointing_enable(args.gradient_checkpointing_kwargs)
        tx, schedule = self.create_optimizer_and_scheduler(total_steps)
        state, shardings = self._fresh_state(tx)

        resume_from_checkpoint = resume_from_checkpoint if resume_from_checkpoint is not None else args.resume_from_checkpoint
        if resume_from_checkpoint is True:  # the newest checkpoint that loads (damaged ones are skipped, logged)
            state, saved, resume_from_checkpoint = checkpointing.load_latest_checkpoint(args.output_dir, state, shardings)
        elif resume_from_checkpoint:
            state, saved = checkpointing.load_checkpoint(resume_from_checkpoint, state, shardings)
        if resume_from_checkpoint:
            self.log_history = list(saved.get("log_history", []))
            for name in ("best_metric", "best_global_step", "best_model_checkpoint"):
                setattr(self.state, name, saved.get(name))
            logger.info("Resuming from %s at step %d", resume_from_checkpoint, int(state.step))

        accumulation = args.gradient_accumulation_steps
        train_step = make_train_step(
            self.model, tx, schedule=schedule, frozen=self._frozen(),
            compute_dtype=args.compute_dtype, accumulation_steps=accumulation,
            label_smoothing=args.label_smoothing_factor, shift_labels=_is_causal_lm(self.model),
            state_sharding=shardings, batch_sharding=batch_sharding(self.mesh, 1 if accumulation > 1 else 0),
        )
        data_sharding = batch_sharding(self.mesh, 1 if accumulation > 1 else 0)
        n = len(data)
        step, position = int(state.step), int(state.data_position)
        logging_steps = _steps(args.logging_steps, total_steps)
        eval_steps, save_steps = _steps(args.eval_steps, total_steps), _steps(args.save_steps, total_steps)
        Path(args.output_dir).mkdir(parents=True, exist_ok=True)
        if jax.process_index() == 0:
            (Path(args.output_dir) / TRAINING_ARGS_FILE).write_text(args.to_json_string())
        logger.info("***** Running training *****  examples=%d steps=%d global batch=%d x %d accumulation, devices=%d",
                    n, total_steps, global_batch, accumulation, self.num_devices)

        self.state.max_steps, self.state.num_train_epochs = total_steps, args.num_train_epochs
        self.state.train_batch_size, self.global_step = args.per_device_train_batch_size, step
        self.control.should_training_stop = False
        self._event("on_train_begin")
        window_loss, window_count, total_loss, total_count, start = 0.0, 0, 0.0, 0, time.time()
        next_batch = self._train_batch(data, position) if step < total_steps else None
        try:
            while step < total_steps and not self.control.should_training_stop:
                self._event("on_step_begin")
                state, metrics = train_step(state, put_global(next_batch, data_sharding))
                previous_epoch = position // n
                position += global_batch * accumulation
                step += 1
                next_batch = self._train_batch(data, position) if step < total_steps else None  # overlaps the device
                metrics = {k: np.asarray(v).item() for k, v in jax.device_get(metrics).items()}
                self.train_state, self.global_step = state, step
                if metrics["nonfinite"]:
                    if args.nan_inf_policy == "stop":
                        self._log({"nonfinite_loss": metrics["loss"], "step": step})
                        raise NonFiniteLossError(step, metrics["loss"], metrics["grad_norm"])
                    logger.warning("Non-finite loss at step %d (loss=%s, grad_norm=%s): update skipped.",
                                   step, metrics["loss"], metrics["grad_norm"])
                    self._log({"skipped_nonfinite_step": step, "loss": metrics["loss"], "epoch": position / n})
                else:
                    window_loss += metrics["loss"]
                    window_count += 1
                    total_loss += metrics["loss"]
                    total_count += 1
                new_epoch = position // n > previous_epoch
                self.epoch = position / n
                self._event("on_step_end")
                if _due(args.logging_strategy, step, logging_steps, new_epoch) or (args.logging_first_step and step == 1):
                    self._log({"loss": window_loss / max(1, window_count), "grad_norm": metrics["grad_norm"],
                               "learning_rate": metrics["learning_rate"], "epoch": position / n, "step": step})
                    window_loss, window_count = 0.0, 0
                new_best = False
                if self.eval_dataset is not None and _due(args.eval_strategy, step, eval_steps, new_epoch):
                    new_best = self._track_best(self.evaluate())
                last = step == total_steps or self.control.should_training_stop
                if _due(args.save_strategy, step, save_steps, new_epoch) or (last and args.save_strategy != "no"):
                    folder = self._save_checkpoint(state, position / n, total_steps, new_best)
                    self._event("on_save", checkpoint=str(folder))
                if new_epoch:
                    self._event("on_epoch_end")
        finally:
            if self.train_state is not None:
                self.model.params = self.train_state.params
        runtime = time.time() - start
        metrics = {"train_runtime": round(runtime, 4),
                   "train_samples_per_second": round(total_count * global_batch * accumulation / max(runtime, 1e-9), 3),
                   "train_steps_per_second": round(total_count / max(runtime, 1e-9), 3),
                   "train_loss": total_loss / max(1, total_count), "epoch": position / n}
        self.train_state, self.global_step = state, step
        if args.load_best_model_at_end and self.state.best_model_checkpoint is not None:
            state = self.train_state = self._load_best(state, shardings)
        self._log(metrics)
        self.model.params = self._usable_params(state.params)
        self._event("on_train_end")
        return TrainOutput(step, metrics["train_loss"], metrics)

    def _track_best(self, metrics: dict) -> bool:
        """Transformers' _determine_best_metric: whether ``metrics`` hold a new best ``metric_for_best_model``."""
        name = self.args.metric_for_best_model
        if name is None:
            return False
        name = name if name.startswith("eval_") else f"eval_{name}"
        if name not in metrics:
            raise KeyError(
                f"The `metric_for_best_model` training argument is set to '{name}', which is not found in the "
                f"evaluation metrics. The available evaluation metrics are: {list(metrics)}. Consider changing the "
                "`metric_for_best_model` via the TrainingArguments."
            )
        better = np.greater if self.args.greater_is_better else np.less
        if self.state.best_metric is None or better(metrics[name], self.state.best_metric):
            self.state.best_metric, self.state.best_global_step = metrics[name], self.global_step
            return True
        return False

    def _load_best(self, state: TrainState, shardings: Any) -> TrainState:
        best = self.state.best_model_checkpoint
        logger.info("Loading best model from %s (score: %s).", best, self.state.best_metric)
        restored, _ = checkpointing.load_checkpoint(best, state, shardings)
        return state.replace(params=restored.params)

    def _usable_params(self, params: Any) -> Any:
        """The trained params as the model keeps them: as they are on one process (or for a model placed on a mesh),
        else gathered tensor by tensor into this process's memory, so ``model(...)`` works on every process."""
        if jax.process_count() == 1 or getattr(self.model, "mesh", None) is not None:
            return params
        return jax.tree_util.tree_map(lambda x: jnp.asarray(gather_to_host(x)), params)

    def _save_checkpoint(self, state: TrainState, epoch: float, total_steps: int, new_best: bool = False) -> Path:
        a = self.args
        if new_best:
            self.state.best_model_checkpoint = str(Path(a.output_dir) / f"{checkpointing.PREFIX}{int(state.step)}")
        trainer_state = {
            "global_step": int(state.step), "epoch": epoch, "max_steps": total_steps,
            "num_train_epochs": a.num_train_epochs, "data_position": int(state.data_position),
            "train_batch_size": a.per_device_train_batch_size, "logging_steps": a.logging_steps,
            "eval_steps": a.eval_steps, "save_steps": a.save_steps, "log_history": self.log_history,
            "best_metric": self.state.best_metric, "best_global_step": self.state.best_global_step,
            "best_model_checkpoint": self.state.best_model_checkpoint,
        }
        return checkpointing.save_checkpoint(a.output_dir, state, trainer_state, a.save_total_limit,
                                             keep=self.state.best_model_checkpoint)

    # -- evaluation -------------------------------------------------------------------------------------------------
    def _prediction_loop(self, dataset: Any, prefix: str) -> PredictionOutput:
        data = _Examples(dataset)
        if len(data) == 0:
            raise ValueError(f"The {prefix} dataset is empty.")
        if self.train_state is not None:
            params = self.train_state.params
        else:  # the model's params on the mesh, each in its own shards
            if self.model.mesh is not self.mesh:
                self.model.shard(self.mesh)
            params = self.model.params
        if self._eval_step is None:
            self._eval_step = make_eval_step(self.model, compute_dtype=self.args.compute_dtype,
                                             label_smoothing=self.args.label_smoothing_factor,
                                             shift_labels=_is_causal_lm(self.model))
        size = self.args.per_device_eval_batch_size * self.num_devices
        sharding = batch_sharding(self.mesh)
        predictions: dict[str, list] = {}
        labels: dict[str, list] = {}
        loss_sum, loss_count = 0.0, 0
        start = time.time()
        for begin in range(0, len(data), size):
            indices = np.arange(begin, min(begin + size, len(data)))
            real = len(indices)
            indices = np.concatenate([indices, np.full(size - real, indices[-1])])  # pad the last batch
            batch = self._collate(data.rows(indices))
            for name in self.label_names:  # padded rows: ignored labels where the loss allows it
                if name in batch and np.issubdtype(batch[name].dtype, np.integer) and real < size:
                    batch[name][real:] = -100
            out = self._prediction_step(params, batch, sharding)
            if "loss" in out and np.isfinite(out["loss"]):
                loss_sum += float(out["loss"]) * real
                loss_count += real
            for k, v in out.items():
                if k != "loss":
                    predictions.setdefault(k, []).append(np.asarray(v)[:real])
            for name in self.label_names:
                if name in batch:
                    labels.setdefault(name, []).append(batch[name][:real])
        preds = _concat_ragged(predictions)
        label_ids = _concat_ragged(labels)
        preds = preds[next(iter(preds))] if len(preds) == 1 else tuple(preds.values())
        label_ids = None if not label_ids else (label_ids[self.label_names[0]] if len(label_ids) == 1 else tuple(label_ids.values()))
        metrics: dict = {}
        if self.compute_metrics is not None and label_ids is not None:
            metrics.update(self.compute_metrics(EvalPrediction(predictions=preds, label_ids=label_ids)))
        if loss_count:
            metrics["loss"] = loss_sum / loss_count
        runtime = time.time() - start
        metrics.update({"runtime": round(runtime, 4), "samples_per_second": round(len(data) / max(runtime, 1e-9), 3)})
        metrics = {(k if k.startswith(f"{prefix}_") else f"{prefix}_{k}"): _plain(v) for k, v in metrics.items()}
        return PredictionOutput(preds, label_ids, metrics)

    def _prediction_step(self, params: Any, batch: dict, sharding: Any) -> dict:
        """One evaluation batch -> {"loss": ..., <prediction fields>} as host arrays (Seq2SeqTrainer extends it)."""
        return _gather(self._eval_step(params, put_global(batch, sharding)))

    def evaluate(self, eval_dataset: Any = None, metric_key_prefix: str = "eval") -> dict:
        """Loss (when labelled) and ``compute_metrics`` over ``eval_dataset``, keys prefixed ``eval_``; logged."""
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        if dataset is None:
            raise ValueError("Trainer.evaluate() needs an eval_dataset.")
        output = self._prediction_loop(dataset, metric_key_prefix)
        self._log(dict(output.metrics, epoch=self.epoch, step=self.global_step))
        self._event("on_evaluate", metrics=output.metrics)
        return output.metrics

    def predict(self, test_dataset: Any, metric_key_prefix: str = "test") -> PredictionOutput:
        """``PredictionOutput(predictions, label_ids, metrics)``; predictions are the logits (a tuple when the model
        returns several, e.g. start and end logits), as numpy arrays in dataset order."""
        return self._prediction_loop(test_dataset, metric_key_prefix)

    # -- saving and logging -----------------------------------------------------------------------------------------
    def save_model(self, output_dir: Optional[str] = None) -> None:
        """Write the model (and tokenizer) with ``save_pretrained`` so that ``from_pretrained`` in fxformers or
        PyTorch transformers loads it."""
        output_dir = output_dir or self.args.output_dir
        params = self.train_state.params if self.train_state is not None else self.model.params
        if jax.process_count() > 1:
            # every process joins the gathers (one tensor at a time), process 0 writes, the others wait for it
            host = jax.tree_util.tree_map(gather_to_host, params)
            if jax.process_index() == 0:
                kept, self.model.params = self.model.params, host
                try:
                    self._write_model(output_dir)
                finally:
                    self.model.params = kept
            barrier(f"fxformers-save-model-{self.global_step}")
            return
        self.model.params = params
        self._write_model(output_dir)

    def _write_model(self, output_dir: str) -> None:
        self.model.save_pretrained(output_dir)
        if self.processing_class is not None and hasattr(self.processing_class, "save_pretrained"):
            self.processing_class.save_pretrained(output_dir)

    def _log(self, logs: dict) -> None:
        logs = {k: _plain(v) for k, v in logs.items() if v is not None}
        self.log_history.append(logs)
        if jax.process_index() != 0:
            return
        logger.info("%s", logs)
        folder = Path(self.args.output_dir)
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / LOG_FILE, "a") as f:
            f.write(json.dumps(logs) + "\n")
        self._event("on_log", logs=dict(logs))


def _due(strategy: str, step: int, every: Optional[int], new_epoch: bool) -> bool:
    if strategy == "steps":
        return bool(every) and step % every == 0
    return strategy == "epoch" and new_epoch


def _gather(out: dict) -> dict:
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        return {k: np.asarray(v) for k, v in multihost_utils.process_allgather(out, tiled=True).items()}
    return {k: np.asarray(v) for k, v in jax.device_get(out).items()}


def _concat_ragged(parts: dict[str, list]) -> dict[str, np.ndarray]:
    """Concatenate per-batch arrays along the batch axis, padding differing later axes with -100."""
    out = {}
    for key, arrays in parts.items():
        if all(a.shape[1:] == arrays[0].shape[1:] for a in arrays):
            out[key] = np.concatenate(arrays)
            continue
        shape = tuple(max(a.shape[d] for a in arrays) for d in range(1, arrays[0].ndim))
        padded = []
        for a in arrays:
            widths = [(0, 0)] + [(0, s - a.shape[d + 1]) for d, s in enumerate(shape)]
            padded.append(np.pad(a, widths, constant_values=-100))
        out[key] = np.concatenate(padded)
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, (np.generic, np.ndarray)) and np.ndim(value) == 0:
        return value.item()
    return value


def _is_causal_lm(model: Any) -> bool:
    """Causal LMs shift labels for label smoothing (Transformers checks the causal-LM model mapping)."""
    name = type(model).__name__
    return name.endswith("ForCausalLM") or name.endswith("LMHeadModel")
