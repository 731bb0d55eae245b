"""Model outputs: dataclasses that are also pytrees, with Transformers' attribute, key and index access.

As in Transformers, fields that are None are skipped by keys, iteration and integer indexing, so
``outputs[0]`` is the first field that was computed (the loss when labels were given, else the logits).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import jax


class ModelOutput:
    """Base of every output class. Subclasses are made dataclasses and registered as pytrees automatically."""

    def __init_subclass__(cls, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        dataclasses.dataclass(cls)
        names = tuple(f.name for f in dataclasses.fields(cls))
        jax.tree_util.register_pytree_node(
            cls,
            lambda out: (tuple(getattr(out, n) for n in names), None),
            lambda _, children: cls(*children),
        )

    def keys(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self) if getattr(self, f.name) is not None]

    def values(self) -> list[Any]:
        return [getattr(self, k) for k in self.keys()]

    def items(self) -> list[tuple[str, Any]]:
        return [(k, getattr(self, k)) for k in self.keys()]

    def to_tuple(self) -> tuple:
        return tuple(self.values())

    def __getitem__(self, key: str | int | slice) -> Any:
        if isinstance(key, str):
            if key not in self.keys():
                raise KeyError(f"{type(self).__name__} has no computed field {key!r}; it has {self.keys()}")
            return getattr(self, key)
        return self.to_tuple()[key]

    def __contains__(self, key: str) -> bool:
        return key in self.keys()

    def __iter__(self):
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.keys())

    def replace(self, **changes: Any) -> "ModelOutput":
        return dataclasses.replace(self, **changes)


class BaseModelOutput(ModelOutput):
    last_hidden_state: Any = None
    hidden_states: Optional[tuple] = None
    attentions: Optional[tuple] = None


class BaseModelOutputWithPooling(ModelOutput):
    last_hidden_state: Any = None
    pooler_output: Any = None
    hidden_states: Optional[tuple] = None
    attentions: Optional[tuple] = None


class BaseModelOutputWithPast(ModelOutput):
    last_hidden_state: Any = None
    past_key_values: Any = None
    hidden_states: Optional[tuple] = None
    attentions: Optional[tuple] = None


class SequenceClassifierOutput(ModelOutput):
    loss: Any = None
    logits: Any = None
    hidden_states: Optional[tuple] = None
    attentions: Optional[tuple] = None


class TokenClassifierOutput(SequenceClassifierOutput):
    pass


class MultipleChoiceModelOutput(SequenceClassifierOutput):
    pass


class MaskedLMOutput(SequenceClassifierOutput):
    pass


class QuestionAnsweringModelOutput(ModelOutput):
    loss: Any = None
    start_logits: Any = None
    end_logits: Any = None
    hidden_states: Optional[tuple] = None
    attentions: Optional[tuple] = None


class CausalLMOutputWithPast(ModelOutput):
    loss: Any = None
    logits: Any = None
    past_key_values: Any = None
    hidden_states: Optional[tuple] = None
    attentions: Optional[tuple] = None


class SequenceClassifierOutputWithPast(CausalLMOutputWithPast):
    pass


class Seq2SeqModelOutput(ModelOutput):
    last_hidden_state: Any = None
    past_key_values: Any = None
    decoder_hidden_states: Optional[tuple] = None
    decoder_attentions: Optional[tuple] = None
    cross_attentions: Optional[tuple] = None
    encoder_last_hidden_state: Any = None
    encoder_hidden_states: Optional[tuple] = None
    encoder_attentions: Optional[tuple] = None


class Seq2SeqLMOutput(ModelOutput):
    loss: Any = None
    logits: Any = None
    past_key_values: Any = None
    decoder_hidden_states: Optional[tuple] = None
    decoder_attentions: Optional[tuple] = None
    cross_attentions: Optional[tuple] = None
    encoder_last_hidden_state: Any = None
    encoder_hidden_states: Optional[tuple] = None
    encoder_attentions: Optional[tuple] = None


class Seq2SeqSequenceClassifierOutput(Seq2SeqLMOutput):
    pass


class MoeModelOutputWithPast(ModelOutput):
    last_hidden_state: Any = None
    past_key_values: Any = None
    hidden_states: Optional[tuple] = None
    attentions: Optional[tuple] = None
    router_logits: Optional[tuple] = None  # one [B*T, E] array per sparse layer


class MoeCausalLMOutputWithPast(ModelOutput):
    loss: Any = None
    aux_loss: Any = None
    logits: Any = None
    past_key_values: Any = None
    hidden_states: Optional[tuple] = None
    attentions: Optional[tuple] = None
    router_logits: Optional[tuple] = None
