"""Trainer callbacks with Transformers' names and events: ``TrainerCallback``, ``TrainerState``, ``TrainerControl``,
the progress bar and log printing Transformers shows, ``EarlyStoppingCallback``, and ``report_to`` integrations.

A callback receives ``(args, state, control, **kwargs)`` at each event (``on_train_begin``, ``on_step_end``,
``on_log``, ``on_evaluate``, ``on_save``, ``on_epoch_end``, ``on_train_end`` ...) and steers the loop by setting
``control.should_training_stop`` (and the other ``should_*`` flags), exactly as in Transformers.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

logger = logging.getLogger(__name__)


@dataclass
class TrainerState:
    """What the loop knows, as Transformers' ``TrainerState`` (saved in each checkpoint's trainer_state.json)."""

    epoch: Optional[float] = None
    global_step: int = 0
    max_steps: int = 0
    num_train_epochs: float = 0
    logging_steps: Optional[float] = None
    eval_steps: Optional[float] = None
    save_steps: Optional[float] = None
    train_batch_size: Optional[int] = None
    log_history: list = field(default_factory=list)
    best_metric: Optional[float] = None
    best_global_step: Optional[int] = None
    best_model_checkpoint: Optional[str] = None
    is_local_process_zero: bool = True
    is_world_process_zero: bool = True


@dataclass
class TrainerControl:
    """Flags callbacks set to steer the loop."""

    should_training_stop: bool = False
    should_epoch_stop: bool = False
    should_save: bool = False
    should_evaluate: bool = False
    should_log: bool = False


class TrainerCallback:
    """Subclass and override the events you need; every event may return a ``TrainerControl`` (or None)."""

    def on_init_end(self, args, state, control, **kwargs): pass
    def on_train_begin(self, args, state, control, **kwargs): pass
    def on_train_end(self, args, state, control, **kwargs): pass
    def on_epoch_begin(self, args, state, control, **kwargs): pass
    def on_epoch_end(self, args, state, control, **kwargs): pass
    def on_step_begin(self, args, state, control, **kwargs): pass
    def on_step_end(self, args, state, control, **kwargs): pass
    def on_evaluate(self, args, state, control, **kwargs): pass
    def on_predict(self, args, state, control, metrics, **kwargs): pass
    def on_save(self, args, state, control, **kwargs): pass
    def on_log(self, args, state, control, logs=None, **kwargs): pass
    def on_prediction_step(self, args, state, control, **kwargs): pass


class CallbackHandler:
    """Calls every callback's event in order; accepts classes (instantiated) or instances."""

    def __init__(self, callbacks: list, model: Any = None, processing_class: Any = None):
        self.callbacks: list[TrainerCallback] = []
        for callback in callbacks:
            self.add_callback(callback)
        self.model, self.processing_class = model, processing_class

    def add_callback(self, callback: Any) -> None:
        callback = callback() if isinstance(callback, type) else callback
        if not isinstance(callback, TrainerCallback) and not hasattr(callback, "on_log"):
            raise TypeError(f"{callback!r} is not a TrainerCallback (subclass fxformers.TrainerCallback).")
        if any(type(c) is type(callback) for c in self.callbacks):
            logger.warning("Trainer already has a %s callback; adding another one.", type(callback).__name__)
        self.callbacks.append(callback)

    def pop_callback(self, callback: Any) -> Optional[TrainerCallback]:
        for existing in self.callbacks:
            if existing is callback or (isinstance(callback, type) and isinstance(existing, callback)):
                self.callbacks.remove(existing)
                return existing
        return None

    def call_event(self, event: str, args, state, control, **kwargs) -> TrainerControl:
        for callback in self.callbacks:
            result = getattr(callback, event, lambda *a, **k: None)(
                args, state, control, model=self.model, processing_class=self.processing_class, **kwargs
            )
            if result is not None:
                control = result
        return control


def _shown(logs: dict) -> dict:
    """The dict Transformers prints: no bookkeeping keys, floats to 4 significant digits."""
    return {k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in logs.items() if k not in ("step", "total_flos")}


class ProgressCallback(TrainerCallback):
    """A tqdm bar over the optimizer steps (and one over evaluation batches); log dicts printed above it."""

    def __init__(self):
        self.training_bar = None

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            from tqdm.auto import tqdm

            self.training_bar = tqdm(total=state.max_steps, initial=state.global_step, dynamic_ncols=True)

    def on_step_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero and self.training_bar is not None:
            self.training_bar.update(state.global_step - self.training_bar.n)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or logs is None:
            return
        if self.training_bar is not None:
            self.training_bar.write(str(_shown(logs)))
        else:
            print(_shown(logs))

    def on_train_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero and self.training_bar is not None:
            self.training_bar.close()
            self.training_bar = None


class PrinterCallback(TrainerCallback):
    """Prints each log dict (used instead of the progress bar when ``disable_tqdm=True``)."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_local_process_zero and logs is not None:
            print(_shown(logs))


class EarlyStoppingCallback(TrainerCallback):
    """Stop when ``metric_for_best_model`` has not improved (by more than ``early_stopping_threshold``) for
    ``early_stopping_patience`` evaluations. Needs ``metric_for_best_model`` and an ``eval_strategy``."""

    def __init__(self, early_stopping_patience: int = 1, early_stopping_threshold: Optional[float] = 0.0):
        self.early_stopping_patience = early_stopping_patience
        self.early_stopping_threshold = early_stopping_threshold or 0.0
        self.early_stopping_patience_counter = 0

    def check_metric_value(self, args, state, control, metric_value):
        operator = np.greater if args.greater_is_better else np.less
        if state.best_metric is None or (
            operator(metric_value, state.best_metric)
            and abs(metric_value - state.best_metric) > self.early_stopping_threshold
        ):
            self.early_stopping_patience_counter = 0
        else:
            self.early_stopping_patience_counter += 1

    def on_train_begin(self, args, state, control, **kwargs):
        if not args.load_best_model_at_end:
            logger.warning("Using EarlyStoppingCallback without load_best_model_at_end=True. Once training is "
                           "finished, the best model will not be loaded automatically.")
        if args.metric_for_best_model is None:
            raise ValueError("EarlyStoppingCallback requires metric_for_best_model (e.g. 'loss' or 'accuracy').")
        if args.eval_strategy == "no":
            raise ValueError("EarlyStoppingCallback requires eval_strategy='steps' or 'epoch'.")

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        name = args.metric_for_best_model
        name = name if name.startswith("eval_") else f"eval_{name}"
        value = (metrics or {}).get(name)
        if value is None:
            logger.warning("early stopping required metric_for_best_model, but did not find %s so early stopping "
                           "is disabled", name)
            return
        self.check_metric_value(args, state, control, value)
        if self.early_stopping_patience_counter >= self.early_stopping_patience:
            control.should_training_stop = True


# -- report_to ---------------------------------------------------------------------------------------------------
class TensorBoardCallback(TrainerCallback):
    """Scalars of every log to ``output_dir/runs`` (``logging_dir``) through tensorboardX or torch's writer."""

    def __init__(self, writer_class: Any):
        self.writer_class, self.writer = writer_class, None

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        if self.writer is None:
            self.writer = self.writer_class(getattr(args, "logging_dir", None) or os.path.join(args.output_dir, "runs"))
        for k, v in logs.items():
            if isinstance(v, (int, float)) and k != "step":
                self.writer.add_scalar(k if k.startswith("eval_") else f"train/{k}", v, state.global_step)
        self.writer.flush()

    def on_train_end(self, args, state, control, **kwargs):
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class WandbCallback(TrainerCallback):
    """Logs to Weights & Biases (``wandb.init`` on train begin with the run name and the arguments)."""

    def __init__(self):
        import wandb

        self._wandb = wandb

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero and self._wandb.run is None:
            self._wandb.init(project=os.getenv("WANDB_PROJECT", "huggingface"), name=args.run_name,
                             config=dataclasses.asdict(args))

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            numbers = {(k if k.startswith("eval_") else f"train/{k}"): v for k, v in logs.items()
                       if isinstance(v, (int, float)) and k != "step"}
            self._wandb.log({**numbers, "train/global_step": state.global_step})


class MLflowCallback(TrainerCallback):
    """Logs to MLflow: parameters at train begin, metrics on every log, the run ended at train end."""

    def __init__(self):
        import mlflow

        self._mlflow, self._started = mlflow, False

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero and self._mlflow.active_run() is None:
            self._mlflow.start_run(run_name=args.run_name)
            self._started = True
            self._mlflow.log_params({k: str(v)[:250] for k, v in dataclasses.asdict(args).items()})

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            numbers = {k: v for k, v in logs.items() if isinstance(v, (int, float)) and k != "step"}
            self._mlflow.log_metrics(numbers, step=state.global_step)

    def on_train_end(self, args, state, control, **kwargs):
        if self._started:
            self._mlflow.end_run()
            self._started = False


def _tensorboard_writer() -> Any:
    if importlib.util.find_spec("tensorboardX") is not None:
        from tensorboardX import SummaryWriter

        return SummaryWriter
    if importlib.util.find_spec("tensorboard") is not None and importlib.util.find_spec("torch") is not None:
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter
    return None


_INTEGRATIONS = {
    "tensorboard": ("tensorboardX (or tensorboard with torch)", lambda: _tensorboard_writer() is not None,
                    lambda: TensorBoardCallback(_tensorboard_writer())),
    "wandb": ("wandb", lambda: importlib.util.find_spec("wandb") is not None, WandbCallback),
    "mlflow": ("mlflow", lambda: importlib.util.find_spec("mlflow") is not None, MLflowCallback),
}


def report_callbacks(report_to: Any) -> list[TrainerCallback]:
    """The callbacks ``report_to`` asks for. "none"/None: nothing; "all": every installed integration; a name whose
    package is missing, or that fxformers does not support, raises with what to install or change."""
    names = [report_to] if isinstance(report_to, str) else list(report_to or [])
    if names in ([], ["none"]):
        return []
    if "all" in names:
        return [make() for _, available, make in _INTEGRATIONS.values() if available()]
    out = []
    for name in names:
        if name == "none":
            continue
        if name not in _INTEGRATIONS:
            raise ValueError(f"report_to={name!r} is not supported by fxformers; it supports "
                             f"{sorted(_INTEGRATIONS)}, 'all' and 'none'.")
        package, available, make = _INTEGRATIONS[name]
        if not available():
            raise ValueError(f"report_to includes {name!r} but {package} is not installed: pip install "
                             f"{package.split()[0]}, or remove it from report_to.")
        out.append(make())
    return out


def default_callbacks(args: Any) -> list[TrainerCallback]:
    """Transformers' defaults: the progress bar (or printed logs with ``disable_tqdm``), then ``report_to``."""
    disable = args.disable_tqdm if args.disable_tqdm is not None else \
        logging.getLogger("fxformers").getEffectiveLevel() > logging.WARNING
    return [PrinterCallback() if disable else ProgressCallback()] + report_callbacks(args.report_to)
