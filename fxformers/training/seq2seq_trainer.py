"""``Seq2SeqTrainer`` and ``Seq2SeqTrainingArguments``: evaluation and prediction that can ``generate``.

With ``predict_with_generate=True``, ``evaluate``/``predict`` return generated token ids as predictions (so
``compute_metrics`` can decode them for ROUGE/BLEU), padded as Transformers pads them: each batch to the model's
``generation_config.max_length`` (or ``max_new_tokens + 1``) with the pad id. The loss is still the teacher-forced
loss. Generation settings come from ``evaluate(..., max_length=, num_beams=, ...)``, else
``generation_max_length`` / ``generation_num_beams``, else the model's generation config.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from .trainer import PredictionOutput, Trainer, TrainingArguments


@dataclass
class Seq2SeqTrainingArguments(TrainingArguments):
    """``TrainingArguments`` plus Transformers' generation options for evaluation."""

    predict_with_generate: bool = False
    generation_max_length: Optional[int] = None
    generation_num_beams: Optional[int] = None
    generation_config: Any = None
    sortish_sampler: bool = False


class Seq2SeqTrainer(Trainer):
    """A ``Trainer`` whose evaluation can generate (``args.predict_with_generate``)."""

    _gen_kwargs: dict = {}

    def evaluate(self, eval_dataset: Any = None, metric_key_prefix: str = "eval", **gen_kwargs: Any) -> dict:
        self._gen_kwargs = self._generation_kwargs(gen_kwargs)
        return super().evaluate(eval_dataset, metric_key_prefix=metric_key_prefix)

    def predict(self, test_dataset: Any, metric_key_prefix: str = "test", **gen_kwargs: Any) -> PredictionOutput:
        self._gen_kwargs = self._generation_kwargs(gen_kwargs)
        return super().predict(test_dataset, metric_key_prefix=metric_key_prefix)

    def _generation_kwargs(self, gen_kwargs: dict) -> dict:
        gen_kwargs = dict(gen_kwargs)
        args = self.args
        if gen_kwargs.get("max_length") is None and gen_kwargs.get("max_new_tokens") is None \
                and getattr(args, "generation_max_length", None) is not None:
            gen_kwargs["max_length"] = args.generation_max_length
        if gen_kwargs.get("num_beams") is None and getattr(args, "generation_num_beams", None) is not None:
            gen_kwargs["num_beams"] = args.generation_num_beams
        return gen_kwargs

    def _prediction_step(self, params: Any, batch: dict, sharding: Any) -> dict:
        out = super()._prediction_step(params, batch, sharding)
        if not getattr(self.args, "predict_with_generate", False):
            return out
        inputs = {"attention_mask": batch["attention_mask"]} if "attention_mask" in batch else {}
        config = getattr(self.args, "generation_config", None)
        generated = np.asarray(self.model.generate(batch[self.model.main_input_name], **inputs, params=params,
                                                   generation_config=config, **self._gen_kwargs))
        result = {"loss": out["loss"]} if "loss" in out else {}
        result["generated_tokens"] = self._pad_to_max_len(generated)
        return result

    def _pad_to_max_len(self, tokens: np.ndarray) -> np.ndarray:
        """Transformers' rule: pad to the model's generation_config.max_length (else max_new_tokens + 1)."""
        gen_config = self.model.generation_config.with_defaults()  # max_length 20 when unset, as in Transformers
        target = None
        if gen_config.max_length is not None and tokens.shape[-1] < gen_config.max_length:
            target = gen_config.max_length
        elif gen_config.max_new_tokens is not None and tokens.shape[-1] < gen_config.max_new_tokens + 1:
            target = gen_config.max_new_tokens + 1
        if target is None:
            return tokens
        pad_id = getattr(self.processing_class, "pad_token_id", None)
        if pad_id is None:
            pad_id = gen_config.pad_token_id if gen_config.pad_token_id is not None else gen_config.eos_token_id
        if isinstance(pad_id, (list, tuple)):
            pad_id = pad_id[0]
        if pad_id is None:
            raise ValueError("predict_with_generate pads generated ids, so the tokenizer or the model's generation "
                             "config needs a pad_token_id (or eos_token_id).")
        return np.pad(tokens, [(0, 0), (0, target - tokens.shape[-1])], constant_values=pad_id)
