"""Sentence embeddings as sentence-transformers computes them: token features, pooling, normalisation.

A sentence-transformers checkpoint describes its stack in ``modules.json`` (Transformer -> Pooling -> Normalize),
its pooling in ``1_Pooling/config.json`` and its length limit in ``sentence_bert_config.json``. SentenceEmbedder
reads those files and reproduces the stack on the feature-extraction pipeline, so a stream of sentences runs in
length-bucketed batches through the jitted encoder.

    >>> from fxformers.pipelines import SentenceEmbedder
    >>> embedder = SentenceEmbedder("sentence-transformers/all-MiniLM-L6-v2")   # or a local folder
    >>> vectors = embedder.encode(["A man is eating food.", "A man is riding a horse."])   # [2, 384], unit norm
    >>> embedder.similarity(vectors, vectors)   # cosine similarities [2, 2]
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

logger = logging.getLogger(__name__)

_POOLING_MODES = ("cls_token", "mean_tokens", "max_tokens", "mean_sqrt_len_tokens")


@dataclass
class SentenceConfig:
    """What sentence-transformers' module files say about a checkpoint (defaults: mean pooling, no normalisation)."""

    pooling_modes: tuple[str, ...] = ("mean_tokens",)
    normalize: bool = False
    max_seq_length: Optional[int] = None
    do_lower_case: bool = False

    @classmethod
    def from_folder(cls, folder: Optional[Path]) -> "SentenceConfig":
        """Read modules.json, the Pooling module's config.json and sentence_bert_config.json when present."""
        config = cls()
        if folder is None:
            return config
        modules_file = folder / "modules.json"
        pooling_dir = folder / "1_Pooling"
        if modules_file.is_file():
            modules = json.loads(modules_file.read_text(encoding="utf-8"))
            types = [m.get("type", "") for m in modules]
            config.normalize = any(t.endswith(".Normalize") for t in types)
            pooling = [m for m in modules if m.get("type", "").endswith(".Pooling")]
            pooling_dir = folder / pooling[0]["path"] if pooling else None
            unknown = [t for t in types if not t.endswith((".Transformer", ".Pooling", ".Normalize"))]
            if unknown:
                raise ValueError(
                    f"{modules_file} lists modules fxformers does not implement: {unknown}; only Transformer, "
                    "Pooling and Normalize are supported."
                )
        if pooling_dir is not None and (pooling_dir / "config.json").is_file():
            pooling_config = json.loads((pooling_dir / "config.json").read_text(encoding="utf-8"))
            modes = tuple(m for m in _POOLING_MODES if pooling_config.get(f"pooling_mode_{m}"))
            unsupported = [
                k for k, v in pooling_config.items()
                if k.startswith("pooling_mode_") and v and k.removeprefix("pooling_mode_") not in _POOLING_MODES
            ]
            if unsupported:
                raise ValueError(f"{pooling_dir / 'config.json'} asks for pooling modes not supported here: {unsupported}.")
            config.pooling_modes = modes or ("mean_tokens",)
        st_config = folder / "sentence_bert_config.json"
        if st_config.is_file():
            values = json.loads(st_config.read_text(encoding="utf-8"))
            config.max_seq_length = values.get("max_seq_length")
            config.do_lower_case = bool(values.get("do_lower_case", False))
        return config


def pool(hidden: np.ndarray, mask: np.ndarray, modes: Sequence[str] = ("mean_tokens",)) -> np.ndarray:
    """Pool token features [B, T, D] under an attention mask [B, T] -> [B, D * len(modes)], as
    sentence-transformers' Pooling module (the modes' outputs concatenated in its order: cls, max, mean, mean_sqrt)."""
    hidden = hidden.astype(np.float32)
    m = mask.astype(np.float32)[..., None]  # [B, T, 1]
    parts = []
    if "cls_token" in modes:
        parts.append(hidden[:, 0])
    if "max_tokens" in modes:
        parts.append(np.where(m > 0, hidden, -1e9).max(axis=1))
    if "mean_tokens" in modes or "mean_sqrt_len_tokens" in modes:
        summed = (hidden * m).sum(axis=1)  # [B, D]
        counts = np.clip(m.sum(axis=1), 1e-9, None)  # [B, 1]
        if "mean_tokens" in modes:
            parts.append(summed / counts)
        if "mean_sqrt_len_tokens" in modes:
            parts.append(summed / np.sqrt(counts))
    return np.concatenate(parts, axis=-1)


def normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows scaled to unit L2 norm (torch.nn.functional.normalize)."""
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), eps)


class SentenceEmbedder:
    """Sentence embeddings from a sentence-transformers checkpoint (hub id or local folder), or from any encoder
    with explicit ``pooling`` / ``normalize``.

    Args:
        model: hub id, folder, or a feature-extraction pipeline (``pipeline("feature-extraction", ...)``).
        pooling: override the checkpoint's pooling: "mean", "cls", "max", "mean_sqrt_len".
        normalize: override whether embeddings are scaled to unit length (the checkpoint's Normalize module).
        max_seq_length: tokens kept per sentence (default: sentence_bert_config.json, else the tokenizer's limit).
        batch_size: sentences per model call (default 32).
        **pipeline_kwargs: passed to ``pipeline("feature-extraction", ...)`` (``device``, ``dtype`` ...).
    """

    def __init__(self, model: Any, *, pooling: Optional[str] = None, normalize: Optional[bool] = None,
                 max_seq_length: Optional[int] = None, batch_size: int = 32, **pipeline_kwargs: Any):
        from . import pipeline
        from .feature_extraction import FeatureExtractionPipeline

        folder = None
        if isinstance(model, FeatureExtractionPipeline):
            self.pipe = model
        else:
            if isinstance(model, (str, os.PathLike)) and Path(model).is_dir():
                folder = Path(model)
            elif isinstance(model, (str, os.PathLike)):
                folder = _hub_folder(str(model), pipeline_kwargs)
            self.pipe = pipeline("feature-extraction", model=model, **pipeline_kwargs)
        config = SentenceConfig.from_folder(folder)
        if pooling is not None:
            name = {"mean": "mean_tokens", "cls": "cls_token", "max": "max_tokens", "mean_sqrt_len": "mean_sqrt_len_tokens"}
            if pooling not in name:
                raise ValueError(f"pooling={pooling!r}: use one of {sorted(name)}.")
            config.pooling_modes = (name[pooling],)
        if normalize is not None:
            config.normalize = normalize
        if max_seq_length is not None:
            config.max_seq_length = max_seq_length
        if config.max_seq_length is None:
            limit = self.pipe.tokenizer.model_max_length
            # a model with no hard limit (relative positions) truncates at max_position_embeddings, as
            # sentence-transformers does; never at the tokenizer's "unbounded" sentinel
            model_limit = self.pipe.max_length() or getattr(self.pipe.model.config, "max_position_embeddings", None)
            config.max_seq_length = min(limit, model_limit or limit)
        self.config = config
        self.batch_size = batch_size

    @property
    def dimension(self) -> int:
        return int(self.pipe.model.config.hidden_size) * len(self.config.pooling_modes)

    def tokenize(self, sentences: Sequence[str]) -> list[dict]:
        """Features for each sentence, cut to max_seq_length (sentence-transformers truncates the same way)."""
        if self.config.do_lower_case:
            sentences = [s.lower() for s in sentences]
        enc = self.pipe.tokenizer(list(sentences), truncation="longest_first", max_length=self.config.max_seq_length)
        return [{k: v[i] for k, v in enc.items()} for i in range(len(sentences))]

    def encode(self, sentences: Union[str, Sequence[str]], batch_size: Optional[int] = None,
               normalize_embeddings: Optional[bool] = None) -> np.ndarray:
        """Embeddings [N, D] (or [D] for one string) as float32 numpy, in input order."""
        single = isinstance(sentences, str)
        items = [sentences] if single else list(sentences)
        if not items:
            return np.zeros((0, self.dimension), np.float32)
        features = self.tokenize(items)
        outputs = self.pipe.forward_features(features, batch_size or self.batch_size, {})
        rows = []
        for out in outputs:
            hidden = out["last_hidden_state"][None]  # [1, T, D]
            rows.append(pool(hidden, np.ones(hidden.shape[:2], np.float32), self.config.pooling_modes)[0])
        embeddings = np.stack(rows)
        if self.config.normalize if normalize_embeddings is None else normalize_embeddings:
            embeddings = normalize(embeddings)
        return embeddings[0] if single else embeddings

    @staticmethod
    def similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Cosine similarity matrix between rows of ``a`` [N, D] and ``b`` [M, D] -> [N, M]."""
        a, b = np.atleast_2d(a), np.atleast_2d(b)
        return normalize(a) @ normalize(b).T

    def search(self, queries: Union[str, Sequence[str]], corpus: Sequence[str], top_k: int = 3,
               corpus_embeddings: Optional[np.ndarray] = None) -> list[list[dict]]:
        """For each query, the ``top_k`` corpus sentences by cosine similarity:
        ``[[{"corpus_id": i, "sentence": str, "score": float}, ...], ...]``."""
        queries = [queries] if isinstance(queries, str) else list(queries)
        docs = self.encode(list(corpus)) if corpus_embeddings is None else corpus_embeddings
        scores = self.similarity(self.encode(queries), docs)
        hits = []
        for row in scores:
            best = np.argsort(-row, kind="stable")[:top_k]
            hits.append([{"corpus_id": int(i), "sentence": corpus[i], "score": float(row[i])} for i in best])
        return hits


def _hub_folder(name: str, kwargs: dict) -> Optional[Path]:
    """The local folder of a hub model (its modules.json found through the cache or a download), if any."""
    from ..hub import resolve_file

    hub = {k: kwargs[k] for k in ("cache_dir", "revision", "token", "local_files_only") if k in kwargs}
    found = resolve_file(name, "modules.json", **hub)
    if found is None:
        return None
    folder = found.parent
    for sub in ("1_Pooling/config.json", "sentence_bert_config.json"):
        resolve_file(name, sub, **hub)  # fetched into the same snapshot folder
    return folder
