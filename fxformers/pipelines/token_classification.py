"""token-classification / ner: a label per token, optionally grouped into words and entities."""

from __future__ import annotations

import enum
import warnings
from typing import Any, Optional

import numpy as np

from .base import Pipeline, softmax


class AggregationStrategy(str, enum.Enum):
    """How tokens are grouped: "none" (every token), "simple" (adjacent tokens of one entity), and the word-aware
    "first" / "average" / "max" (a word takes the label of its first token / mean scores / best token)."""

    NONE = "none"
    SIMPLE = "simple"
    FIRST = "first"
    AVERAGE = "average"
    MAX = "max"


class TokenClassificationPipeline(Pipeline):
    """``ner(text)`` -> ``[{"entity", "score", "index", "word", "start", "end"}]`` (aggregated:
    ``[{"entity_group", "score", "word", "start", "end"}]``). Parameters: ``aggregation_strategy``,
    ``ignore_labels`` (default ["O"]), ``stride`` (long texts in overlapping windows), ``is_split_into_words``,
    ``delimiter``, ``offset_mapping``."""

    sequence_outputs = ("logits",)
    chunked = True

    def _sanitize_parameters(self, ignore_labels=None, grouped_entities: Optional[bool] = None,
                             ignore_subwords: Optional[bool] = None, aggregation_strategy: Any = None,
                             offset_mapping=None, is_split_into_words: bool = False, stride: Optional[int] = None,
                             delimiter: Optional[str] = None):
        pre: dict[str, Any] = {"is_split_into_words": is_split_into_words}
        if is_split_into_words:
            pre["delimiter"] = " " if delimiter is None else delimiter
        if offset_mapping is not None:
            pre["offset_mapping"] = offset_mapping
        post: dict[str, Any] = {}
        if grouped_entities is not None or ignore_subwords is not None:
            if grouped_entities and ignore_subwords:
                aggregation_strategy = AggregationStrategy.FIRST
            elif grouped_entities and not ignore_subwords:
                aggregation_strategy = AggregationStrategy.SIMPLE
            else:
                aggregation_strategy = AggregationStrategy.NONE
            warnings.warn(f"`grouped_entities` / `ignore_subwords` are deprecated; use "
                          f'aggregation_strategy="{aggregation_strategy.value}".')
        if aggregation_strategy is not None:
            if isinstance(aggregation_strategy, str):
                aggregation_strategy = AggregationStrategy(aggregation_strategy.lower())
            post["aggregation_strategy"] = aggregation_strategy
        if ignore_labels is not None:
            post["ignore_labels"] = ignore_labels
        if stride is not None:
            if stride >= self.tokenizer.model_max_length:
                raise ValueError("`stride` must be less than `tokenizer.model_max_length` (or even lower if the "
                                 "tokenizer adds special tokens)")
            if aggregation_strategy in (None, AggregationStrategy.NONE):
                raise ValueError('`stride` was provided to process all the text but `aggregation_strategy="none"`, '
                                 "please select another one instead.")
            pre["tokenizer_params"] = {"return_overflowing_tokens": True, "padding": True, "stride": stride}
        return pre, {}, post

    def __call__(self, inputs: Any, **kwargs: Any):
        if isinstance(inputs, tuple):
            inputs = list(inputs)
        if kwargs.get("is_split_into_words") and isinstance(inputs, list) and not all(isinstance(i, list) for i in inputs):
            return super().__call__([inputs], **kwargs)
        offset_mapping = kwargs.get("offset_mapping")
        if offset_mapping and isinstance(offset_mapping, list) and isinstance(offset_mapping[0], tuple):
            kwargs["offset_mapping"] = [offset_mapping]
        return super().__call__(inputs, **kwargs)

    def preprocess(self, sentence: Any, offset_mapping=None, is_split_into_words: bool = False,
                   delimiter: Optional[str] = None, tokenizer_params: Optional[dict] = None) -> list[dict]:
        tokenizer_params = dict(tokenizer_params or {})
        max_len = self.tokenizer.model_max_length
        truncation = bool(max_len and max_len > 0)
        word_to_chars_map = None
        if is_split_into_words:
            if not isinstance(sentence, list):
                raise ValueError("When `is_split_into_words=True`, `sentence` must be a list of tokens.")
            words = sentence
            sentence = delimiter.join(words)
            word_to_chars_map, offset = [], 0
            for word in words:
                word_to_chars_map.append((offset, offset + len(word)))
                offset += len(word) + len(delimiter)
            text = words
            tokenizer_params["is_split_into_words"] = True
        else:
            if not isinstance(sentence, str):
                raise ValueError("When `is_split_into_words=False`, `sentence` must be an untokenized string.")
            text = sentence
        enc = self.tokenizer(text, truncation=truncation, return_special_tokens_mask=True,
                             return_offsets_mapping=True, **tokenizer_params)
        rows = enc["input_ids"] if isinstance(enc["input_ids"][0], list) else [enc["input_ids"]]
        features = []
        for i in range(len(rows)):
            feature = {k: (v[i] if isinstance(v[0], list) else v) for k, v in enc.items()
                       if k != "overflow_to_sample_mapping" and isinstance(v, list)}
            if offset_mapping is not None:
                feature["offset_mapping"] = offset_mapping[0] if isinstance(offset_mapping[0], list) else offset_mapping
            feature["sentence"] = sentence
            if word_to_chars_map is not None:
                feature["word_ids"] = enc.word_ids(i)
                feature["word_to_chars_map"] = word_to_chars_map
            features.append(feature)
        return features

    def _forward(self, batch: dict) -> dict:
        return {"logits": np.asarray(self.model(**self.model_inputs(batch)).logits, dtype=np.float32)}

    def postprocess(self, all_outputs: list[dict], aggregation_strategy=AggregationStrategy.NONE, ignore_labels=None):
        if ignore_labels is None:
            ignore_labels = ["O"]
        entities_all = []
        sentence = all_outputs[0]["sentence"]
        word_to_chars_map = all_outputs[0].get("word_to_chars_map")
        for out in all_outputs:
            scores = softmax(out["logits"])
            pre_entities = self.gather_pre_entities(
                sentence, np.asarray(out["input_ids"]), scores, out.get("offset_mapping"),
                np.asarray(out["special_tokens_mask"]), aggregation_strategy,
                word_ids=out.get("word_ids"), word_to_chars_map=word_to_chars_map,
            )
            grouped = self.aggregate(pre_entities, aggregation_strategy)
            entities_all.extend(
                e for e in grouped
                if e.get("entity", None) not in ignore_labels and e.get("entity_group", None) not in ignore_labels
            )
        if len(all_outputs) > 1:
            entities_all = self.aggregate_overlapping_entities(entities_all)
        return entities_all

    @staticmethod
    def aggregate_overlapping_entities(entities: list[dict]) -> list[dict]:
        if not entities:
            return entities
        entities = sorted(entities, key=lambda x: x["start"])
        aggregated, previous = [], entities[0]
        for entity in entities:
            if previous["start"] <= entity["start"] < previous["end"]:
                current_length = entity["end"] - entity["start"]
                previous_length = previous["end"] - previous["start"]
                if current_length > previous_length or (current_length == previous_length and entity["score"] > previous["score"]):
                    previous = entity
            else:
                aggregated.append(previous)
                previous = entity
        aggregated.append(previous)
        return aggregated

    def gather_pre_entities(self, sentence: str, input_ids: np.ndarray, scores: np.ndarray, offset_mapping,
                            special_tokens_mask: np.ndarray, aggregation_strategy: AggregationStrategy,
                            word_ids=None, word_to_chars_map=None) -> list[dict]:
        """One record per non-special token: its word piece, scores, character span and whether it continues a word."""
        word_aware = getattr(self.tokenizer.backend_tokenizer.model, "continuing_subword_prefix", None)
        pre_entities = []
        for idx, token_scores in enumerate(scores):
            if special_tokens_mask[idx]:
                continue
            word = self.tokenizer.convert_ids_to_tokens(int(input_ids[idx]))
            if offset_mapping is not None:
                start_ind, end_ind = (int(x) for x in offset_mapping[idx])
                if word_ids is not None and word_to_chars_map is not None:
                    word_index = word_ids[idx]
                    if word_index is not None:
                        start_char, _ = word_to_chars_map[word_index]
                        start_ind += start_char
                        end_ind += start_char
                word_ref = sentence[start_ind:end_ind]
                if word_aware:
                    is_subword = len(word) != len(word_ref)
                else:
                    if aggregation_strategy in {AggregationStrategy.FIRST, AggregationStrategy.AVERAGE, AggregationStrategy.MAX}:
                        warnings.warn("Tokenizer does not support real words, using fallback heuristic", UserWarning)
                    is_subword = start_ind > 0 and " " not in sentence[start_ind - 1: start_ind + 1]
                if int(input_ids[idx]) == self.tokenizer.unk_token_id:
                    word = word_ref
                    is_subword = False
            else:
                start_ind = end_ind = None
                is_subword = False
            pre_entities.append({"word": word, "scores": token_scores, "start": start_ind, "end": end_ind,
                                 "index": idx, "is_subword": is_subword})
        return pre_entities

    def aggregate(self, pre_entities: list[dict], aggregation_strategy: AggregationStrategy) -> list[dict]:
        id2label = self.config.id2label
        if aggregation_strategy in {AggregationStrategy.NONE, AggregationStrategy.SIMPLE}:
            entities = []
            for pre in pre_entities:
                entity_idx = int(pre["scores"].argmax())
                entities.append({"entity": id2label[entity_idx], "score": pre["scores"][entity_idx],
                                 "index": pre["index"], "word": pre["word"], "start": pre["start"], "end": pre["end"]})
        else:
            entities = self.aggregate_words(pre_entities, aggregation_strategy)
        if aggregation_strategy == AggregationStrategy.NONE:
            return entities
        return self.group_entities(entities)

    def aggregate_word(self, entities: list[dict], aggregation_strategy: AggregationStrategy) -> dict:
        id2label = self.config.id2label
        word = self.tokenizer.convert_tokens_to_string([e["word"] for e in entities])
        if aggregation_strategy == AggregationStrategy.FIRST:
            scores = entities[0]["scores"]
            idx = int(scores.argmax())
            score, entity = scores[idx], id2label[idx]
        elif aggregation_strategy == AggregationStrategy.MAX:
            best = max(entities, key=lambda e: e["scores"].max())
            idx = int(best["scores"].argmax())
            score, entity = best["scores"][idx], id2label[idx]
        elif aggregation_strategy == AggregationStrategy.AVERAGE:
            average = np.nanmean(np.stack([e["scores"] for e in entities]), axis=0)
            idx = int(average.argmax())
            score, entity = average[idx], id2label[idx]
        else:
            raise ValueError("Invalid aggregation_strategy")
        return {"entity": entity, "score": score, "word": word, "start": entities[0]["start"], "end": entities[-1]["end"]}

    def aggregate_words(self, entities: list[dict], aggregation_strategy: AggregationStrategy) -> list[dict]:
        if aggregation_strategy in {AggregationStrategy.NONE, AggregationStrategy.SIMPLE}:
            raise ValueError("NONE and SIMPLE strategies are invalid for word aggregation")
        word_entities, group = [], None
        for entity in entities:
            if group is None:
                group = [entity]
            elif entity["is_subword"]:
                group.append(entity)
            else:
                word_entities.append(self.aggregate_word(group, aggregation_strategy))
                group = [entity]
        if group is not None:
            word_entities.append(self.aggregate_word(group, aggregation_strategy))
        return word_entities

    def group_sub_entities(self, entities: list[dict]) -> dict:
        entity = entities[0]["entity"].split("-", 1)[-1]
        scores = np.nanmean([e["score"] for e in entities])
        return {"entity_group": entity, "score": np.mean(scores),
                "word": self.tokenizer.convert_tokens_to_string([e["word"] for e in entities]),
                "start": entities[0]["start"], "end": entities[-1]["end"]}

    @staticmethod
    def get_tag(entity_name: str) -> tuple[str, str]:
        if entity_name.startswith("B-"):
            return "B", entity_name[2:]
        if entity_name.startswith("I-"):
            return "I", entity_name[2:]
        return "I", entity_name  # not in B-/I- form: a continuation

    def group_entities(self, entities: list[dict]) -> list[dict]:
        groups, current = [], []
        for entity in entities:
            if not current:
                current.append(entity)
                continue
            bi, tag = self.get_tag(entity["entity"])
            _, last_tag = self.get_tag(current[-1]["entity"])
            if tag == last_tag and bi != "B":
                current.append(entity)
            else:
                groups.append(self.group_sub_entities(current))
                current = [entity]
        if current:
            groups.append(self.group_sub_entities(current))
        return groups


NerPipeline = TokenClassificationPipeline
