"""MarianTokenizer (opus-mt folders: ``source.spm``, ``target.spm``, ``vocab.json``), as Transformers' slow
MarianTokenizer computes it: the source SentencePiece model segments the text, ``vocab.json`` gives the ids, a
leading ``>>lang<<`` code stays one token, and ``</s>`` ends each sequence.

The segmentation runs as a ``tokenizers`` Unigram whose vocabulary is ``vocab.json`` in id order, scored with the
source model's piece scores. Pieces of ``vocab.json`` the source model lacks (target-language pieces of a shared
vocabulary) get a score so low that no text the source model can segment ever uses them. Known limits: a source
piece missing from ``vocab.json`` (Transformers maps it to ``<unk>``) cannot be reproduced and is reported when
loading; characters the source model does not know may match a target-only piece instead of ``<unk>``.
Tokenization of targets (``text_target``, the target model) is not implemented.
"""

from __future__ import annotations

import json
import logging

from tokenizers import AddedToken, Tokenizer, processors

from .models import _FamilyTokenizer, _metaspace_unigram, _need, _token_str
from .spm import CONTROL, UNKNOWN, parse_spm_model

logger = logging.getLogger(__name__)

# Far below any path of real pieces (scores are log-probabilities, a few tens at most per word).
_ABSENT_SCORE = -1e6


class MarianTokenizer(_FamilyTokenizer):
    model_input_names = ["input_ids", "attention_mask"]
    default_special_tokens = {"eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}
    saved_class_name = "MarianTokenizer"
    own_post_processor = True

    @classmethod
    def build_backend(cls, files: dict, config: dict) -> Tokenizer:
        vocab_file = _need(files, ("vocab.json",), cls.__name__)
        spm = parse_spm_model(_need(files, ("source.spm",), cls.__name__))
        if config.get("separate_vocabs"):
            logger.info("MarianTokenizer: separate_vocabs=True; the source side uses vocab.json as Transformers does.")
        vocab = json.loads(vocab_file.read_text(encoding="utf-8"))
        ids = sorted(vocab.values())
        if ids != list(range(len(ids))):
            raise ValueError(f"{vocab_file} must number its tokens 0..{len(ids) - 1} without gaps or repeats.")
        scores = {piece: score for piece, score, typ in spm.pieces if typ not in (CONTROL, UNKNOWN)}
        missing = [p for p in scores if p not in vocab]
        if missing:
            logger.warning("MarianTokenizer: %d pieces of source.spm are not in vocab.json (Transformers maps them to "
                           "<unk>; here the text is segmented without them), e.g. %s", len(missing), missing[:5])
        by_id = sorted(vocab.items(), key=lambda kv: kv[1])
        pieces = [(piece, scores.get(piece, _ABSENT_SCORE)) for piece, _ in by_id]
        unk = _token_str(config, "unk_token", "<unk>")
        if unk not in vocab:
            raise KeyError(f"{vocab_file} has no {unk!r}: Marian needs its unk_token in the vocabulary.")
        scheme = "always" if spm.add_dummy_prefix else "never"
        tk = _metaspace_unigram(pieces, vocab[unk], spm.precompiled_charsmap, scheme, split=True)
        # language codes (">>fr<<") are kept whole, as Transformers' remove_language_code does
        codes = [p for p in vocab if p.startswith(">>") and p.endswith("<<")]
        tk.add_tokens([AddedToken(code, normalized=False, special=False) for code in codes])
        return tk

    def family_post_processor(self):
        eos = str(self.eos_token)
        return processors.TemplateProcessing(single=f"$A {eos}", pair=f"$A $B {eos}",
                                             special_tokens=[(eos, self.eos_token_id)])
