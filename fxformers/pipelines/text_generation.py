"""text-generation: continue a prompt with a decoder-only model (GPT-2, Llama ...) through generate()."""

from __future__ import annotations

import enum
from typing import Any, Optional

import numpy as np

from .base import GenerationPipelineBase, progress_bar, bucket_length, bucket_rows, decode


class ReturnType(enum.Enum):
    TENSORS = 0
    NEW_TEXT = 1
    FULL_TEXT = 2


class TextGenerationPipeline(GenerationPipelineBase):
    """``generator(prompt)`` -> ``[{"generated_text": prompt + continuation}]`` (a list per prompt for a list).
    Parameters: ``return_full_text`` (False: the continuation only), ``return_tensors`` (token ids),
    ``num_return_sequences``, ``prefix``, ``stop_sequence``, ``clean_up_tokenization_spaces``,
    ``skip_special_tokens``, ``handle_long_generation="hole"``, and every generate() option
    (``max_new_tokens``, ``do_sample``, ``temperature``, ``top_k``, ``top_p``, ``num_beams`` ...). As in
    Transformers 4.x the defaults are ``max_new_tokens=256, do_sample=True, temperature=0.7`` unless the model's
    generation config says otherwise; sampling draws from the pipeline's PRNG key (``seed=`` at construction)."""

    default_generation = {"max_new_tokens": 256, "do_sample": True, "temperature": 0.7}

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if "prefix" not in self._preprocess_params and self.prefix:
            pre, fwd, _ = self._sanitize_parameters(prefix=self.prefix, **self._forward_params)
            self._preprocess_params = {**self._preprocess_params, **pre}
            self._forward_params = {**self._forward_params, **fwd}

    def _sanitize_parameters(self, return_full_text=None, return_tensors=None, return_text=None, return_type=None,
                             clean_up_tokenization_spaces=None, prefix=None, handle_long_generation=None,
                             stop_sequence=None, truncation=None, max_length=None, continue_final_message=None,
                             skip_special_tokens=None, tokenizer_encode_kwargs=None, **generate_kwargs):
        pre: dict[str, Any] = {}
        add_special_tokens = False
        if "add_special_tokens" in generate_kwargs:
            add_special_tokens = pre["add_special_tokens"] = generate_kwargs.pop("add_special_tokens")
        if "padding" in generate_kwargs:
            pre["padding"] = generate_kwargs.pop("padding")
        if truncation is not None:
            pre["truncation"] = truncation
        if max_length is not None:
            pre["max_length"] = max_length
            generate_kwargs["max_length"] = max_length
        if prefix is not None:
            pre["prefix"] = prefix
        if prefix:
            prefix_ids = self.tokenizer(prefix, padding=False, add_special_tokens=add_special_tokens)["input_ids"]
            generate_kwargs["prefix_length"] = len(prefix_ids)
        if handle_long_generation is not None:
            if handle_long_generation != "hole":
                raise ValueError(f"{handle_long_generation} is not a valid value for `handle_long_generation` parameter "
                                 "expected [None, 'hole']")
            pre["handle_long_generation"] = handle_long_generation
        if continue_final_message is not None:
            raise NotImplementedError("Chat inputs (continue_final_message) are not supported by fxformers pipelines.")
        if tokenizer_encode_kwargs is not None:
            pre["tokenizer_encode_kwargs"] = tokenizer_encode_kwargs
        pre.update(generate_kwargs)
        if stop_sequence is not None:
            generate_kwargs["eos_token_id"] = self.tokenizer.encode(stop_sequence, add_special_tokens=False)
        post: dict[str, Any] = {}
        if return_full_text is not None and return_type is None:
            if return_text is not None:
                raise ValueError("`return_text` is mutually exclusive with `return_full_text`")
            if return_tensors is not None:
                raise ValueError("`return_full_text` is mutually exclusive with `return_tensors`")
            return_type = ReturnType.FULL_TEXT if return_full_text else ReturnType.NEW_TEXT
        if return_tensors is not None and return_type is None:
            if return_text is not None:
                raise ValueError("`return_text` is mutually exclusive with `return_tensors`")
            return_type = ReturnType.TENSORS
        if return_type is not None:
            post["return_type"] = return_type
        if clean_up_tokenization_spaces is not None:
            post["clean_up_tokenization_spaces"] = clean_up_tokenization_spaces
        if skip_special_tokens is not None:
            post["skip_special_tokens"] = skip_special_tokens
        return pre, generate_kwargs, post

    def __call__(self, text_inputs: Any, **kwargs: Any):
        first = text_inputs[0] if isinstance(text_inputs, (list, tuple)) and text_inputs else None
        if isinstance(first, (dict, list, tuple)):
            raise NotImplementedError("Chat inputs (lists of {'role', 'content'} messages) are not supported by "
                                      "fxformers pipelines; pass the prompt text.")
        if isinstance(text_inputs, tuple):
            text_inputs = list(text_inputs)
        return super().__call__(text_inputs, **kwargs)

    def preprocess(self, prompt_text: str, prefix: str = "", handle_long_generation=None, add_special_tokens=None,
                   truncation=None, padding=None, max_length=None, tokenizer_encode_kwargs=None, **generate_kwargs) -> list[dict]:
        tokenizer_kwargs = {k: v for k, v in dict(add_special_tokens=add_special_tokens, truncation=truncation,
                                                  max_length=max_length).items() if v is not None}
        tokenizer_kwargs.update(tokenizer_encode_kwargs or {})
        enc = self.tokenizer(prefix + prompt_text, **tokenizer_kwargs)
        feature = {"input_ids": list(enc["input_ids"]), "prompt_text": prompt_text}
        if "attention_mask" in enc:
            feature["attention_mask"] = list(enc["attention_mask"])
        if handle_long_generation == "hole":
            cur_len = len(feature["input_ids"])
            if "max_new_tokens" in generate_kwargs:
                new_tokens = generate_kwargs["max_new_tokens"]
            else:
                new_tokens = generate_kwargs.get("max_length", self.generation_config.max_length or 20) - cur_len
                if new_tokens < 0:
                    raise ValueError("We cannot infer how many new tokens are expected")
            if cur_len + new_tokens > self.tokenizer.model_max_length:
                keep_length = self.tokenizer.model_max_length - new_tokens
                if keep_length <= 0:
                    raise ValueError("We cannot use `hole` to handle this generation the number of desired tokens "
                                     "exceeds the models max length")
                feature["input_ids"] = feature["input_ids"][-keep_length:]
                if "attention_mask" in feature:
                    feature["attention_mask"] = feature["attention_mask"][-keep_length:]
        if not feature["input_ids"]:
            raise ValueError("The prompt is empty after tokenization; fxformers' generate() needs at least one token.")
        return [feature]

    def collate(self, features: list[dict], length: int, rows: int) -> dict:
        # decoder-only prompts are always left-padded, whatever the tokenizer's padding side
        side = self.tokenizer.padding_side
        self.tokenizer.padding_side = "left"
        try:
            return super().collate(features, length, rows)
        finally:
            self.tokenizer.padding_side = side

    def max_length(self) -> Optional[int]:
        return None  # generate() checks the prompt plus new tokens against the position limit itself

    def forward_features(self, features: list[dict], batch_size: int, fwd: dict) -> list[dict]:
        """Generate for batches of prompts; each feature gets its own rows, cut as if generated alone."""
        outputs = []
        groups = [features[i:i + batch_size] for i in range(0, len(features), batch_size)]
        gen_kwargs = self._generate_kwargs(fwd)
        eos = self.eos_ids(gen_kwargs)
        bar = progress_bar(len(groups), self.task)
        for group in groups:
            if bar is not None:
                bar.update(1)
            length = bucket_length(max(len(f["input_ids"]) for f in group), None, minimum=8)
            batch = self.collate(group, length, bucket_rows(len(group), batch_size))
            sequences = self.generate(batch, gen_kwargs)  # [rows * n, length + new]
            n = sequences.shape[0] // batch["input_ids"].shape[0]
            for r, feature in enumerate(group):
                rows = sequences[r * n:(r + 1) * n, length - len(feature["input_ids"]):]
                outputs.append({"generated_sequence": self.trim_group(rows, len(feature["input_ids"]), eos)})
        if bar is not None:
            bar.close()
        return outputs

    def _generate_kwargs(self, fwd: dict) -> dict:
        kwargs = dict(fwd)
        prefix_length = kwargs.pop("prefix_length", 0)
        if prefix_length > 0:
            config = kwargs.get("generation_config", self.generation_config)
            if "max_new_tokens" not in kwargs and config.max_new_tokens is None:
                kwargs["max_length"] = (kwargs.get("max_length") or config.max_length or 20) + prefix_length
            if "min_new_tokens" not in kwargs and config.min_new_tokens is None and "min_length" in kwargs:
                kwargs["min_length"] += prefix_length
        return kwargs

    def postprocess(self, outputs: dict, return_type=ReturnType.FULL_TEXT, clean_up_tokenization_spaces=True,
                    skip_special_tokens=None):
        skip = True if skip_special_tokens is None else skip_special_tokens
        prompt_ids = outputs["input_ids"]
        prompt_text = outputs["prompt_text"]
        records = []
        for sequence in outputs["generated_sequence"].tolist():
            if return_type == ReturnType.TENSORS:
                records.append({"generated_token_ids": sequence})
                continue
            text = decode(self.tokenizer, sequence, skip, clean_up_tokenization_spaces)
            prompt_length = len(decode(self.tokenizer, prompt_ids, skip, clean_up_tokenization_spaces))
            all_text = text[prompt_length:]
            if return_type == ReturnType.FULL_TEXT:
                all_text = prompt_text + all_text
            records.append({"generated_text": all_text})
        return records
