"""Task heads shared by decoder-only families (Transformers' ``GenericForSequenceClassification``).

A family subclasses the linen module and names its bare decoder in ``base_module``; the head scores every position
with ``score`` (no bias) and pools the rightmost token that is not ``pad_token_id``, as Transformers does.
"""

from __future__ import annotations

from typing import Any, ClassVar

import jax.numpy as jnp
from flax import linen as nn

from ..convert import ConversionTable, linear
from ..losses import sequence_classification_loss
from ..outputs import SequenceClassifierOutputWithPast
from .gpt2.modeling import pool_last_non_pad


class DecoderForSequenceClassificationModule(nn.Module):
    """base_module(config, dtype, name="model") -> scores [B, T, C] -> pooled logits [B, C] (float32)."""

    config: Any
    dtype: Any = jnp.float32
    base_module: ClassVar[type[nn.Module]]

    @nn.compact
    def __call__(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None, labels=None,
                 deterministic=True, output_attentions=False, output_hidden_states=False):
        c = self.config
        out = self.base_module(c, self.dtype, name="model")(
            input_ids, attention_mask, position_ids, inputs_embeds, None, None, deterministic, output_attentions,
            output_hidden_states,
        )
        score = nn.Dense(c.num_labels, use_bias=False, dtype=self.dtype,
                         kernel_init=nn.initializers.normal(c.initializer_range), name="score")
        logits = pool_last_non_pad(score(out.last_hidden_state), input_ids, c.pad_token_id).astype(jnp.float32)
        loss = None if labels is None else sequence_classification_loss(logits, labels, c.num_labels, c.problem_type)
        return SequenceClassifierOutputWithPast(loss, logits, None, out.hidden_states, out.attentions)


class SequenceClassificationMixin:
    """Input checks and the head's conversion rules for classes using DecoderForSequenceClassificationModule."""

    def validate_inputs(self, inputs: dict) -> None:
        super().validate_inputs(inputs)
        ids = inputs.get("input_ids")
        if self.config.pad_token_id is None and ids is not None and ids.shape[0] > 1:
            raise ValueError(
                f"{type(self).__name__} pools the last non-padding token, so batches of more than one need "
                "config.pad_token_id (e.g. from_pretrained(..., pad_token_id=tokenizer.pad_token_id))."
            )

    @staticmethod
    def head_table() -> ConversionTable:
        return ConversionTable(linear("score", "score", bias=False))
