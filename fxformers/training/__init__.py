"""Fine-tuning: a pure jitted train step, the Trainer loop, data collators, orbax checkpoints and device meshes."""

from .callbacks import (
    EarlyStoppingCallback,
    PrinterCallback,
    ProgressCallback,
    TrainerCallback,
    TrainerControl,
    TrainerState,
)
from .checkpointing import latest_checkpoint, list_checkpoints, load_checkpoint, save_checkpoint
from .collators import (
    DataCollatorForLanguageModeling,
    DataCollatorForSeq2Seq,
    DataCollatorForTokenClassification,
    DataCollatorWithPadding,
    DefaultDataCollator,
    default_data_collator,
)
from .sharding import create_mesh, initialize_distributed, shard_batch, train_state_shardings
from .steps import make_eval_step, make_train_step
from .seq2seq_trainer import Seq2SeqTrainer, Seq2SeqTrainingArguments
from .train_state import TrainState
from .trainer import EvalPrediction, NonFiniteLossError, PredictionOutput, Trainer, TrainingArguments, TrainOutput

__all__ = [
    "DataCollatorForLanguageModeling", "DataCollatorForSeq2Seq", "DataCollatorForTokenClassification",
    "DataCollatorWithPadding", "DefaultDataCollator", "EvalPrediction", "NonFiniteLossError", "PredictionOutput",
    "TrainOutput", "TrainState", "Trainer", "TrainingArguments", "create_mesh", "default_data_collator",
    "initialize_distributed", "latest_checkpoint", "list_checkpoints", "load_checkpoint", "make_eval_step",
    "make_train_step", "save_checkpoint", "shard_batch", "train_state_shardings",
    "EarlyStoppingCallback", "PrinterCallback", "ProgressCallback", "Seq2SeqTrainer", "Seq2SeqTrainingArguments",
    "TrainerCallback", "TrainerControl", "TrainerState",
]
