"""Pipeline: preprocess on the host, run the jitted model on padded, bucketed batches, postprocess on the host.

Every task pipeline subclasses :class:`Pipeline` and defines four methods, as in Transformers:

- ``_sanitize_parameters(**kwargs) -> (preprocess, forward, postprocess)`` keyword dicts;
- ``preprocess(item, **params)`` -> a list of *features*: dicts of unpadded token lists (``input_ids``,
  ``attention_mask``, ``token_type_ids`` ...) plus any host-side data the postprocess needs. One input may give
  several features (question answering windows, zero-shot hypotheses, long-text chunks);
- ``_forward(batch, **params)`` -> dict of numpy arrays with a leading batch axis, from one padded batch;
- ``postprocess(features, **params)``: the features of one input, each merged with its rows of the model
  outputs (per-token outputs cut back to the feature's own length), -> the result Transformers returns.

The base class batches features across inputs (``batch_size``), sorting by length and padding each batch to a
bucketed length (powers of two from 16) and row count (powers of two up to ``batch_size``), so a stream of texts of
any length compiles only a handful of shapes, and results do not depend on the batch size.
"""

from __future__ import annotations

import logging
import types
from typing import Any, Iterable, Iterator, Optional, Sequence

import numpy as np

from ..ops.bucketing import bucket_length as shared_bucket_length

logger = logging.getLogger(__name__)

MIN_BUCKET = 16


def bucket_length(length: int, limit: Optional[int] = None, minimum: int = MIN_BUCKET) -> int:
    """Padded length for a batch whose longest row has ``length`` tokens: the shared rule of
    ``fxformers.ops.bucketing`` (next power of two, at least ``minimum``, capped at the model's ``limit``)."""
    return shared_bucket_length(length, minimum=minimum, max_length=limit)


def bucket_rows(rows: int, batch_size: int) -> int:
    """Padded row count: the next power of two, at most ``batch_size`` (and at least ``rows``)."""
    return max(rows, min(batch_size, 1 << max(0, rows - 1).bit_length()))


def progress_bar(total: int, desc: str):
    """A tqdm bar over ``total`` batches; tqdm(disable=None) stays quiet when stderr is not a terminal."""
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return None
    if total < 2:
        return None
    return tqdm(total=total, desc=desc, unit="batch", disable=None, leave=False)


class Pipeline:
    """Base of every task pipeline: ``pipe(inputs, **call_kwargs)`` with Transformers' calling convention.

    Args:
        model: a fxformers model (``.module``, ``.params``, ``.config``).
        tokenizer: a fxformers tokenizer.
        task: the task name the pipeline was built for.
        batch_size: features per model call (default 1, as Transformers; larger is faster and gives the same
            results).
        device: a ``jax.Device``, an index into ``jax.devices()``, ``-1``/"cpu" for the host CPU, or a platform
            name ("gpu", "cuda:0", "tpu"); None keeps JAX's default device.
        **kwargs: call parameters fixed at construction (``top_k=3``, ``aggregation_strategy="simple"`` ...).
    """

    # per-token output keys: cut back to each feature's own length before postprocess
    sequence_outputs: tuple[str, ...] = ()
    # True when postprocess takes the list of an input's features (one input -> several model rows)
    chunked: bool = False

    def __init__(self, model: Any, tokenizer: Any = None, *, task: str = "", batch_size: Optional[int] = None,
                 device: Any = None, **kwargs: Any):
        self.model = model
        self.tokenizer = tokenizer
        self.task = task
        self.device = resolve_device(device)
        if self.device is not None:
            import jax

            model.params = jax.device_put(model.params, self.device)
        self._batch_size = batch_size
        self.call_count = 0
        self._preprocess_params, self._forward_params, self._postprocess_params = self._sanitize_parameters(**kwargs)

    # -- what each task defines --------------------------------------------------------------------------------------
    def _sanitize_parameters(self, **kwargs: Any) -> tuple[dict, dict, dict]:
        raise NotImplementedError

    def preprocess(self, inputs: Any, **params: Any) -> list[dict]:
        raise NotImplementedError

    def _forward(self, batch: dict, **params: Any) -> dict:
        raise NotImplementedError

    def postprocess(self, outputs: Any, **params: Any) -> Any:
        raise NotImplementedError

    # -- shared helpers --------------------------------------------------------------------------------------------
    @property
    def config(self):
        return self.model.config

    def model_inputs(self, batch: dict) -> dict:
        """The padded arrays the model takes (``tokenizer.model_input_names``) from a batch, and
        ``unpad_inputs=True`` where the model can skip the padding (postprocessing never reads padding positions)."""
        names = getattr(self.tokenizer, "model_input_names", ["input_ids", "attention_mask"])
        inputs = {k: batch[k] for k in names if k in batch}
        if self.unpad:
            inputs["unpad_inputs"] = True
        return inputs

    @property
    def unpad(self) -> bool:
        """Whether batches run unpadded (fxformers.ops.unpadding): encoder models with right padding."""
        return bool(getattr(self.model, "supports_unpadding", False)) and not self._left_padded()

    def _left_padded(self) -> bool:
        return getattr(self.tokenizer, "padding_side", "right") == "left"

    def max_length(self) -> Optional[int]:
        """Longest sequence the model accepts (its position table), for capping the padded bucket."""
        limit = getattr(self.model, "max_input_length", None)
        return limit() if callable(limit) else None

    # -- running ---------------------------------------------------------------------------------------------------
    def __call__(self, inputs: Any, *args: Any, batch_size: Optional[int] = None, num_workers: Any = None, **kwargs: Any):
        """Run the pipeline: one input gives one result, a list gives a list, a generator gives a generator."""
        if args:
            logger.warning("Ignoring positional arguments %s", args)
        batch_size = batch_size or self._batch_size or 1
        pre, fwd, post = self._sanitize_parameters(**kwargs)
        pre = {**self._preprocess_params, **pre}
        fwd = {**self._forward_params, **fwd}
        post = {**self._postprocess_params, **post}
        self.call_count += 1
        if isinstance(inputs, types.GeneratorType):
            return self._iterate(inputs, batch_size, pre, fwd, post)
        if isinstance(inputs, list):
            return self.run(inputs, batch_size, pre, fwd, post)
        return self.run([inputs], batch_size, pre, fwd, post)[0]

    def _iterate(self, inputs: Iterable, batch_size: int, pre: dict, fwd: dict, post: dict) -> Iterator:
        chunk: list = []
        size = max(64, 8 * batch_size)
        for item in inputs:
            chunk.append(item)
            if len(chunk) == size:
                yield from self.run(chunk, batch_size, pre, fwd, post)
                chunk = []
        if chunk:
            yield from self.run(chunk, batch_size, pre, fwd, post)

    def run(self, items: Sequence, batch_size: int, pre: dict, fwd: dict, post: dict) -> list:
        """Preprocess every item, run all their features in batches, postprocess each item."""
        owners: list[int] = []
        features: list[dict] = []
        for i, item in enumerate(items):
            for feature in self.preprocess(item, **pre):
                owners.append(i)
                features.append(feature)
        outputs = self.forward_features(features, batch_size, fwd)
        grouped: list[list[dict]] = [[] for _ in items]
        for owner, feature, output in zip(owners, features, outputs):
            grouped[owner].append({**feature, **output})
        if self.chunked:
            return [self.postprocess(group, **post) for group in grouped]
        return [self.postprocess(group[0], **post) for group in grouped]

    def forward_features(self, features: list[dict], batch_size: int, fwd: dict) -> list[dict]:
        """Model outputs for each feature: batches of similar length, padded to bucketed shapes."""
        if not features:
            return []
        lengths = [len(f["input_ids"]) for f in features]
        order = sorted(range(len(features)), key=lambda i: lengths[i]) if batch_size > 1 else list(range(len(features)))
        results: list[Optional[dict]] = [None] * len(features)
        batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
        bar = progress_bar(len(batches), self.task or type(self).__name__)
        limit = self.max_length()
        for indices in batches:
            group = [features[i] for i in indices]
            batch = self.collate(group, bucket_length(max(lengths[i] for i in indices), limit),
                                 bucket_rows(len(group), batch_size))
            out = self._forward(batch, **fwd)
            for row, i in enumerate(indices):
                results[i] = {
                    k: (v[row, : lengths[i]] if k in self.sequence_outputs else v[row]) for k, v in out.items()
                }
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        return results  # type: ignore[return-value]

    def collate(self, features: list[dict], length: int, rows: int) -> dict:
        """Pad token lists (right, or left for left-padding tokenizers) into int32 arrays of shape [rows, length].

        Extra rows (their outputs are dropped) are empty when the model runs unpadded, so they cost nothing;
        otherwise they repeat the first feature."""
        pad_id = getattr(self.tokenizer, "pad_token_id", None)
        pad_id = 0 if pad_id is None else pad_id
        left = self._left_padded()
        if self.unpad:
            features = features + [{k: [] for k in features[0]}] * (rows - len(features))
        fills = {"input_ids": pad_id, "attention_mask": 0, "token_type_ids": getattr(self.tokenizer, "pad_token_type_id", 0)}
        batch = {}
        for key, fill in fills.items():
            if key not in features[0]:
                continue
            out = np.full((rows, length), fill, dtype=np.int32)
            for r in range(rows):
                seq = features[r if r < len(features) else 0][key]
                if left:
                    out[r, length - len(seq):] = seq
                else:
                    out[r, : len(seq)] = seq
            batch[key] = out
        if "attention_mask" not in batch:
            mask = np.zeros((rows, length), dtype=np.int32)
            for r in range(rows):
                n = len(features[r if r < len(features) else 0]["input_ids"])
                if left:
                    mask[r, length - n:] = 1
                else:
                    mask[r, :n] = 1
            batch["attention_mask"] = mask
        return batch

    def encode(self, text: Any, text_pair: Any = None, **tokenizer_kwargs: Any) -> list[dict]:
        """Tokenize one text (or pair) into features: one per row (several with return_overflowing_tokens)."""
        enc = self.tokenizer(text, text_pair, **tokenizer_kwargs)
        ids = enc["input_ids"]
        if ids and not isinstance(ids[0], list):
            return [{k: v for k, v in enc.items()}]
        return [{k: v[i] for k, v in enc.items() if isinstance(v, list) and len(v) == len(ids)} for i in range(len(ids))]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(task={self.task!r}, model={self.model!r})"


def resolve_device(device: Any):
    """None -> None (JAX's default); a jax.Device as is; -1 / "cpu" -> the host CPU; an int -> jax.devices()[i];
    "gpu" / "cuda" / "cuda:1" / "tpu:0" -> that platform's device."""
    if device is None:
        return None
    import jax

    if isinstance(device, jax.Device):
        return device
    if device == -1 or device == "cpu":
        return jax.devices("cpu")[0]
    if isinstance(device, int):
        return jax.devices()[device]
    if isinstance(device, str):
        platform, _, index = device.partition(":")
        platform = {"cuda": "gpu", "rocm": "gpu"}.get(platform, platform)
        return jax.devices(platform)[int(index or 0)]
    raise ValueError(f"Unknown device {device!r}: use None, -1/'cpu', an index, 'gpu', 'cuda:0', 'tpu' or a jax.Device.")


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    maxes = np.max(x, axis=axis, keepdims=True)
    shifted = np.exp(x - maxes)
    return shifted / shifted.sum(axis=axis, keepdims=True)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def decode(tokenizer: Any, ids: Any, skip_special_tokens: bool = False, clean_up_tokenization_spaces: Optional[bool] = None) -> str:
    """``tokenizer.decode`` as Transformers 4.x does it: the clean-up of spaces before punctuation is applied
    whenever asked (or set on the tokenizer), byte-level BPE tokenizers included (Transformers 5 skips it there)."""
    text = tokenizer.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens, clean_up_tokenization_spaces=False)
    clean = tokenizer.clean_up_tokenization_spaces if clean_up_tokenization_spaces is None else clean_up_tokenization_spaces
    return tokenizer.clean_up_tokenization(text) if clean else text


class GenerationPipelineBase(Pipeline):
    """Shared by the text-generation and text2text pipelines: the pipeline's generation config, built as
    Transformers 4.x builds it, and a PRNG key that advances with every sampled batch."""

    # the pipeline's default generation settings (Transformers 4.x `_default_generation_config`)
    default_generation: dict = {}

    def __init__(self, model: Any, tokenizer: Any = None, *, seed: int = 0, **kwargs: Any):
        from ..generation.configuration import DEFAULTS, GenerationConfig

        if not hasattr(model, "generate"):
            raise TypeError(f"{type(model).__name__} cannot generate; load the model with AutoModelForCausalLM or "
                            "AutoModelForSeq2SeqLM (pipeline() does this for generation tasks).")
        import jax

        task = kwargs.get("task", "")
        # 1. the pipeline defaults; 2. the model's own settings where the pipeline keeps a library default
        config = GenerationConfig(**self.default_generation)
        model_config = model.generation_config
        for key, value in model_config.to_diff_dict().items():
            ours = getattr(config, key, None)
            if value != DEFAULTS.get(key) and (ours is None or ours == DEFAULTS.get(key)):
                setattr(config, key, value)
        # 3. call-time settings given to pipeline(...) land in config (Transformers' _prepare_generation_config)
        for key in list(kwargs):
            if key not in ("task", "batch_size", "device") and config.update(**{key: kwargs[key]}) == {}:
                kwargs.pop(key)
        if (self.default_generation.get("max_new_tokens") is not None
                and config.max_new_tokens == self.default_generation["max_new_tokens"]
                and config.max_length is not None and config.max_length != DEFAULTS["max_length"]):
            config.max_new_tokens = None  # a model-chosen max_length beats the pipeline's default length
        self.prefix = getattr(model.config, "prefix", None)
        task_params = getattr(model.config, "task_specific_params", None) or {}
        if task in task_params:
            params = dict(task_params[task])
            if "prefix" in params:
                self.prefix = params.pop("prefix")
            config.update(**params)
        if tokenizer is not None and tokenizer.pad_token_id is not None and config.pad_token_id is None:
            config.pad_token_id = tokenizer.pad_token_id
        self.generation_config = config
        self._key = jax.random.PRNGKey(seed)
        super().__init__(model, tokenizer, **kwargs)

    def next_key(self):
        import jax

        self._key, key = jax.random.split(self._key)
        return key

    def generate(self, batch: dict, generate_kwargs: dict) -> np.ndarray:
        kwargs = dict(generate_kwargs)
        config = kwargs.pop("generation_config", self.generation_config)
        if "prng_key" not in kwargs:
            kwargs["prng_key"] = self.next_key()
        out = self.model.generate(batch["input_ids"], batch.get("attention_mask"), generation_config=config, **kwargs)
        return np.asarray(out)

    @staticmethod
    def trim_group(sequences: np.ndarray, start: int, eos_ids: tuple) -> np.ndarray:
        """Cut a feature's generated rows [n, S] after column ``start`` to the length of its longest row (to its
        EOS), the shape Transformers returns when that input is generated on its own."""
        if not eos_ids:
            return sequences
        lengths = []
        for row in sequences:
            tail = row[start:]
            hits = np.nonzero(np.isin(tail, eos_ids))[0]
            lengths.append(start + (hits[0] + 1 if len(hits) else len(tail)))
        return sequences[:, : max(lengths)]

    def eos_ids(self, generate_kwargs: dict) -> tuple:
        eos = generate_kwargs.get("eos_token_id", self.generation_config.eos_token_id)
        if eos is None:
            eos = self.model.generation_config.eos_token_id
        if eos is None:
            return ()
        return (int(eos),) if isinstance(eos, (int, np.integer)) else tuple(int(e) for e in eos)
