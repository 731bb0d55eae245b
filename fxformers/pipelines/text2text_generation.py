"""text2text-generation, summarization and translation: encoder-decoder models (T5, BART) through generate()."""

from __future__ import annotations

import enum
import logging
import warnings
from typing import Any

from .base import GenerationPipelineBase, progress_bar, bucket_length, bucket_rows, decode

logger = logging.getLogger(__name__)


class ReturnType(enum.Enum):
    TENSORS = 0
    TEXT = 1


class Text2TextGenerationPipeline(GenerationPipelineBase):
    """``text2text(text)`` -> ``[{"generated_text": ...}]`` (one per ``num_return_sequences``; a list of texts gives
    one record per text when each has one). Transformers 4.x defaults: ``max_new_tokens=256, num_beams=4``, then
    the model's generation config, then ``config.task_specific_params[task]`` (T5's "summarize: " prefix ...).
    Parameters: ``return_tensors``, ``return_text``, ``clean_up_tokenization_spaces``, ``truncation``,
    ``stop_sequence`` and every generate() option."""

    return_name = "generated"
    default_generation = {"max_new_tokens": 256, "num_beams": 4}

    def _sanitize_parameters(self, return_tensors=None, return_text=None, return_type=None,
                             clean_up_tokenization_spaces=None, truncation=None, stop_sequence=None, **generate_kwargs):
        pre = {"truncation": truncation} if truncation is not None else {}
        post: dict[str, Any] = {}
        if return_tensors is not None and return_type is None:
            return_type = ReturnType.TENSORS if return_tensors else ReturnType.TEXT
        if return_type is not None:
            post["return_type"] = return_type
        if clean_up_tokenization_spaces is not None:
            post["clean_up_tokenization_spaces"] = clean_up_tokenization_spaces
        if stop_sequence is not None:
            ids = self.tokenizer.encode(stop_sequence, add_special_tokens=False)
            if len(ids) > 1:
                warnings.warn("Stopping on a multiple token sequence is not yet supported on transformers. The first "
                              "token of the stop sequence will be used as the stop sequence string in the interim.")
            generate_kwargs["eos_token_id"] = ids[0]
        return pre, generate_kwargs, post

    def check_inputs(self, input_length: int, min_length: int, max_length: int) -> bool:
        return True

    def __call__(self, *args: Any, **kwargs: Any):
        inputs = args[0] if args else kwargs.pop("inputs", None)
        if isinstance(inputs, tuple):
            inputs = list(inputs)
        result = super().__call__(inputs, **kwargs)
        if isinstance(inputs, list) and all(isinstance(el, str) for el in inputs) and all(len(r) == 1 for r in result):
            return [r[0] for r in result]
        return result

    def preprocess(self, inputs: Any, truncation: Any = "do_not_truncate", **kwargs: Any) -> list[dict]:
        prefix = self.prefix if self.prefix is not None else ""
        if not isinstance(inputs, str):
            raise TypeError(f" `args[0]`: {inputs} have the wrong format. The should be either of type `str` or type `list`")
        enc = self.tokenizer(prefix + inputs, padding=False, truncation=truncation)
        return [{"input_ids": list(enc["input_ids"]), "attention_mask": list(enc["attention_mask"])}]

    def forward_features(self, features: list[dict], batch_size: int, fwd: dict) -> list[dict]:
        """Generate for batches of inputs (right-padded for the encoder); each feature gets its own rows."""
        outputs = []
        config = fwd.get("generation_config", self.generation_config)
        eos = self.eos_ids(fwd)
        starts = range(0, len(features), batch_size)
        bar = progress_bar(len(starts), self.task)
        for i in starts:
            if bar is not None:
                bar.update(1)
            group = features[i:i + batch_size]
            longest = max(len(f["input_ids"]) for f in group)
            for f in group:
                self.check_inputs(len(f["input_ids"]), fwd.get("min_length", config.min_length or 0),
                                  fwd.get("max_length", config.max_length or 20))
            batch = self.collate(group, bucket_length(longest, self.max_length(), minimum=8), bucket_rows(len(group), batch_size))
            sequences = self.generate(batch, fwd)  # [rows * n, 1 + new]
            n = sequences.shape[0] // batch["input_ids"].shape[0]
            for r in range(len(group)):
                outputs.append({"output_ids": self.trim_group(sequences[r * n:(r + 1) * n], 1, eos)})
        if bar is not None:
            bar.close()
        return outputs

    def postprocess(self, outputs: dict, return_type=ReturnType.TEXT, clean_up_tokenization_spaces=False):
        records = []
        for output_ids in outputs["output_ids"]:
            if return_type == ReturnType.TENSORS:
                records.append({f"{self.return_name}_token_ids": output_ids.tolist()})
            else:
                text = decode(self.tokenizer, output_ids, True, clean_up_tokenization_spaces)
                records.append({f"{self.return_name}_text": text})
        return records


class SummarizationPipeline(Text2TextGenerationPipeline):
    """``summarizer(text)`` -> ``[{"summary_text": ...}]``."""

    return_name = "summary"

    def check_inputs(self, input_length: int, min_length: int, max_length: int) -> bool:
        if max_length < min_length:
            logger.warning("Your min_length=%d must be inferior than your max_length=%d.", min_length, max_length)
        if input_length < max_length:
            logger.warning(
                "Your max_length is set to %d, but your input_length is only %d. Since this is a summarization task, "
                "where outputs shorter than the input are typically wanted, you might consider decreasing max_length "
                "manually, e.g. summarizer('...', max_length=%d)", max_length, input_length, input_length // 2,
            )
        return True


class TranslationPipeline(Text2TextGenerationPipeline):
    """``translator(text)`` -> ``[{"translation_text": ...}]``; build it as "translation_en_to_fr" (T5 then adds
    its "translate English to French: " prefix from ``task_specific_params``)."""

    return_name = "translation"

    def check_inputs(self, input_length: int, min_length: int, max_length: int) -> bool:
        if input_length > 0.9 * max_length:
            logger.warning(
                "Your input_length: %d is bigger than 0.9 * max_length: %d. You might consider increasing your "
                "max_length manually, e.g. translator('...', max_length=400)", input_length, max_length,
            )
        return True

    def _sanitize_parameters(self, src_lang=None, tgt_lang=None, **kwargs):
        pre, fwd, post = super()._sanitize_parameters(**kwargs)
        # src_lang / tgt_lang only matter to multilingual tokenizers (mBART, Marian), which fxformers does not
        # special-case; T5 takes the language pair from its task prefix.
        return pre, fwd, post
