"""Per-model tokenizer classes: the defaults of each family (special tokens, ``model_input_names``, padding side)
and how it builds its ``tokenizers.Tokenizer``: from legacy vocabulary files when no tokenizer.json exists, and,
as Transformers 5 does, around the vocabulary of a tokenizer.json (the class decides the normaliser,
pre-tokenizer and decoder; the file gives vocabulary, merges, added tokens and, for some families, the
special-token template).

``BertTokenizer`` and ``BertTokenizerFast`` (and so on) are the same class: there is only the Rust-backed one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import BPE, Unigram, WordPiece

from .base import PreTrainedTokenizer, as_added_token
from .spm import BPE as SPM_BPE, CONTROL, USER_DEFINED, check_precompiled_charsmap, generate_merges, parse_spm_model

SPM_FILES = ("spiece.model", "tokenizer.model", "sentencepiece.bpe.model", "spm.model")


class LegacyFilesError(FileNotFoundError):
    """No tokenizer.json and no vocabulary file this tokenizer class can build from."""


def _need(files: dict, names: tuple[str, ...], cls_name: str) -> Path:
    for name in names:
        if files.get(name) is not None:
            return files[name]
    raise LegacyFilesError(
        f"{cls_name} found no tokenizer.json and none of {list(names)} to build the tokenizer from. Point "
        "from_pretrained at a folder holding tokenizer.json (or those vocabulary files)."
    )


def _byte_level_bpe(files: dict, config: dict, cls_name: str) -> Tokenizer:
    vocab_file = _need(files, ("vocab.json",), cls_name)
    merges_file = _need(files, ("merges.txt",), cls_name)
    vocab, merges = BPE.read_file(str(vocab_file), str(merges_file))
    return _byte_level_bpe_from(vocab, merges, config)


def _byte_level_bpe_from(vocab: dict, merges: list, config: dict) -> Tokenizer:
    tk = Tokenizer(
        BPE(vocab, merges, dropout=None, continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False)
    )
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=bool(config.get("add_prefix_space", False)))
    tk.decoder = decoders.ByteLevel()
    return tk


def _spm_extra_tokens(spm) -> list[AddedToken]:
    """SentencePiece control symbols (special) and user-defined symbols (not special), as Transformers adds them."""
    return [
        AddedToken(piece, normalized=False, special=typ == CONTROL)
        for piece, _, typ in spm.pieces
        if typ in (CONTROL, USER_DEFINED)
    ]


def _metaspace_unigram(vocab, unk_id: int, charsmap: bytes, prepend_scheme: str, split: bool = True) -> Tokenizer:
    tk = Tokenizer(Unigram(vocab, unk_id=unk_id, byte_fallback=False))
    if charsmap:
        check_precompiled_charsmap(charsmap)  # the Rust normaliser would allocate or panic on a corrupt one
        tk.normalizer = normalizers.Precompiled(charsmap)
    tk.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="▁", prepend_scheme=prepend_scheme, split=split)]
    )
    tk.decoder = decoders.Metaspace(replacement="▁", prepend_scheme=prepend_scheme, split=split)
    return tk


def _spm_bpe(spm, config: dict) -> Tokenizer:
    vocab = {piece: i for i, (piece, _, _) in enumerate(spm.pieces)}
    return _llama_bpe_from(vocab, generate_merges(vocab), config)


def _llama_bpe_from(vocab: dict, merges: list, config: dict) -> Tokenizer:
    tk = Tokenizer(BPE(vocab=vocab, merges=merges, fuse_unk=True, byte_fallback=True, dropout=None))
    add_prefix_space = config.get("add_prefix_space")
    add_prefix_space = True if add_prefix_space is None else bool(add_prefix_space)
    legacy = bool(config.get("legacy", False))
    scheme = ("first" if not legacy else "always") if add_prefix_space else "never"
    tk.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme=scheme, split=False)
    sequence = [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
    if add_prefix_space:
        sequence.append(decoders.Strip(content=" ", left=1))
    tk.decoder = decoders.Sequence(sequence)
    return tk


def _token_str(config: dict, key: str, default: str) -> str:
    """A special token of the config as a string, whatever its spelling (str, AddedToken, serialised dict)."""
    return str(as_added_token(config.get(key) or default))


def _json_vocab(model: dict) -> dict:
    vocab = model.get("vocab")
    if isinstance(vocab, list):
        return {(v[0] if isinstance(v, (list, tuple)) else v): i for i, v in enumerate(vocab)}
    return dict(vocab or {})


def _json_merges(model: dict) -> list:
    return [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model.get("merges") or []]


def _json_unigram_vocab(model: dict) -> list:
    return [(str(p), float(s)) for p, s in model.get("vocab") or []]


class _FamilyTokenizer(PreTrainedTokenizer):
    """A model family: ``build_backend`` makes the Tokenizer from legacy files and ``rebuild_from_json`` around the
    vocabulary of a tokenizer.json (Transformers 5 rebuilds these families' pipelines from the class, not the
    file); ``family_post_processor`` sets the special-token template once the special tokens have ids."""

    # the tokenizers model type of tokenizer.json this family rebuilds its pipeline around (None: use the file)
    json_model: Optional[str] = None
    # whether the family sets its own post-processor (else the file's is kept)
    own_post_processor: bool = False

    @classmethod
    def build_backend(cls, files: dict, config: dict) -> Tokenizer:
        raise NotImplementedError

    @classmethod
    def rebuild_from_json(cls, model: dict, charsmap: bytes, config: dict) -> Tokenizer:
        """The family's pipeline around the vocabulary of a tokenizer.json, as Transformers 5 builds it."""
        raise NotImplementedError

    def family_post_processor(self) -> Optional[processors.PostProcessor]:
        return None


class BertTokenizer(_FamilyTokenizer):
    """WordPiece tokenizer of BERT (vocab.txt): lower-casing, accent stripping and CJK splitting per the config
    (``do_lower_case``, ``strip_accents``, ``tokenize_chinese_chars``); ``[CLS] A [SEP] B [SEP]``."""

    model_input_names = ["input_ids", "token_type_ids", "attention_mask"]
    default_special_tokens = {
        "unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]", "mask_token": "[MASK]",
    }
    saved_class_name = "BertTokenizer"
    json_model = "WordPiece"
    own_post_processor = True

    @classmethod
    def build_backend(cls, files: dict, config: dict) -> Tokenizer:
        return cls._from_vocab(WordPiece.read_file(str(_need(files, ("vocab.txt",), cls.__name__))), config)

    @classmethod
    def rebuild_from_json(cls, model: dict, charsmap: bytes, config: dict) -> Tokenizer:
        return cls._from_vocab(_json_vocab(model), config)

    @classmethod
    def _from_vocab(cls, vocab: dict, config: dict) -> Tokenizer:
        unk = _token_str(config, "unk_token", "[UNK]")
        tk = Tokenizer(WordPiece(vocab, unk_token=unk))
        tk.normalizer = normalizers.BertNormalizer(
            clean_text=True,
            handle_chinese_chars=bool(config.get("tokenize_chinese_chars", True)),
            strip_accents=config.get("strip_accents"),
            lowercase=bool(config.get("do_lower_case", True)),
        )
        tk.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tk.decoder = decoders.WordPiece(prefix="##")
        return tk

    def family_post_processor(self):
        cls_token, sep_token = str(self.cls_token), str(self.sep_token)
        return processors.TemplateProcessing(
            single=f"{cls_token}:0 $A:0 {sep_token}:0",
            pair=f"{cls_token}:0 $A:0 {sep_token}:0 $B:1 {sep_token}:1",
            special_tokens=[(cls_token, self.cls_token_id), (sep_token, self.sep_token_id)],
        )


class DistilBertTokenizer(BertTokenizer):
    """BERT's WordPiece tokenizer; DistilBERT takes no ``token_type_ids``."""

    model_input_names = ["input_ids", "attention_mask"]
    saved_class_name = "DistilBertTokenizer"


class GPT2Tokenizer(_FamilyTokenizer):
    """Byte-level BPE of GPT-2 (vocab.json + merges.txt). No pad token by default: set
    ``tokenizer.pad_token = tokenizer.eos_token`` to pad."""

    model_input_names = ["input_ids", "attention_mask"]
    default_special_tokens = {"unk_token": "<|endoftext|>", "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"}
    saved_class_name = "GPT2Tokenizer"
    json_model = "BPE"

    @classmethod
    def build_backend(cls, files: dict, config: dict) -> Tokenizer:
        return _byte_level_bpe(files, config, cls.__name__)

    @classmethod
    def rebuild_from_json(cls, model: dict, charsmap: bytes, config: dict) -> Tokenizer:
        return _byte_level_bpe_from(_json_vocab(model), _json_merges(model), config)


class RobertaTokenizer(_FamilyTokenizer):
    """Byte-level BPE of RoBERTa (vocab.json + merges.txt); ``<s> A </s></s> B </s>``; no ``token_type_ids``."""

    model_input_names = ["input_ids", "attention_mask"]
    default_special_tokens = {
        "bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>", "cls_token": "<s>",
        "unk_token": "<unk>", "pad_token": "<pad>", "mask_token": "<mask>",
    }
    saved_class_name = "RobertaTokenizer"
    json_model = "BPE"
    own_post_processor = True

    @classmethod
    def build_backend(cls, files: dict, config: dict) -> Tokenizer:
        return _byte_level_bpe(files, config, cls.__name__)

    @classmethod
    def rebuild_from_json(cls, model: dict, charsmap: bytes, config: dict) -> Tokenizer:
        return _byte_level_bpe_from(_json_vocab(model), _json_merges(model), config)

    def family_post_processor(self):
        return processors.RobertaProcessing(
            (str(self.sep_token), self.sep_token_id),
            (str(self.cls_token), self.cls_token_id),
            trim_offsets=bool(getattr(self, "trim_offsets", True)),
            add_prefix_space=bool(getattr(self, "add_prefix_space", False)),
        )


class BartTokenizer(RobertaTokenizer):
    """BART uses RoBERTa's byte-level BPE and special tokens."""

    saved_class_name = "BartTokenizer"


class XLMRobertaTokenizer(_FamilyTokenizer):
    """SentencePiece Unigram of XLM-RoBERTa (sentencepiece.bpe.model), with fairseq's id layout."""

    model_input_names = ["input_ids", "attention_mask"]
    default_special_tokens = dict(RobertaTokenizer.default_special_tokens)
    saved_class_name = "XLMRobertaTokenizer"
    json_model = "Unigram"
    own_post_processor = True

    @classmethod
    def build_backend(cls, files: dict, config: dict) -> Tokenizer:
        spm = parse_spm_model(_need(files, SPM_FILES, cls.__name__))
        t = {k: _token_str(config, k, v) for k, v in cls.default_special_tokens.items()}
        vocab = [(t["bos_token"], 0.0), (t["pad_token"], 0.0), (t["eos_token"], 0.0), (t["unk_token"], 0.0)]
        vocab += [(p, s) for p, s, _ in spm.pieces[3:]]
        vocab.append((t["mask_token"], 0.0))
        add_prefix_space = config.get("add_prefix_space", True)
        return _metaspace_unigram(vocab, 3, spm.precompiled_charsmap, "always" if add_prefix_space else "never", split=True)

    @classmethod
    def rebuild_from_json(cls, model: dict, charsmap: bytes, config: dict) -> Tokenizer:
        scheme = "always" if config.get("add_prefix_space", True) else "never"
        return _metaspace_unigram(_json_unigram_vocab(model), 3, charsmap, scheme, split=True)

    def family_post_processor(self):
        bos, eos = str(self.bos_token), str(self.eos_token)
        return processors.TemplateProcessing(
            single=[bos, "$A", eos],
            pair=[bos, "$A", eos, eos, "$B", eos],
            special_tokens=[(bos, self.bos_token_id), (eos, self.eos_token_id)],
        )


class T5Tokenizer(_FamilyTokenizer):
    """SentencePiece Unigram of T5 (spiece.model) plus ``extra_ids`` sentinel tokens ``<extra_id_N>``; ``A </s>``."""

    model_input_names = ["input_ids", "attention_mask"]
    default_special_tokens = {"eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}
    saved_class_name = "T5Tokenizer"
    json_model = "Unigram"
    own_post_processor = True

    @classmethod
    def build_backend(cls, files: dict, config: dict) -> Tokenizer:
        spm = parse_spm_model(_need(files, SPM_FILES, cls.__name__))
        extra_ids = int(config.get("extra_ids", 100))
        vocab = [(p, s) for p, s, _ in spm.pieces] + [(f"<extra_id_{i}>", 0.0) for i in range(extra_ids - 1, -1, -1)]
        if not (config.get("extra_special_tokens") or config.get("additional_special_tokens")):
            config["extra_special_tokens"] = _spm_extra_tokens(spm)
        return _metaspace_unigram(vocab, 2, spm.precompiled_charsmap, "always", split=True)

    @classmethod
    def rebuild_from_json(cls, model: dict, charsmap: bytes, config: dict) -> Tokenizer:
        return _metaspace_unigram(_json_unigram_vocab(model), 2, charsmap, "always", split=True)

    def __init__(self, tokenizer_object=None, **kwargs):
        # the sentinels <extra_id_0> ... <extra_id_{extra_ids-1}> are special tokens, as in Transformers
        extra_ids = int(kwargs.get("extra_ids", 100))
        extras = kwargs.pop("extra_special_tokens", None) or kwargs.pop("additional_special_tokens", None)
        if extras is None or isinstance(extras, (list, tuple)):
            extras = list(extras or [])
            n_sentinels = sum("<extra_id_" in str(t) for t in extras)
            if n_sentinels == 0:
                extras += [f"<extra_id_{i}>" for i in range(extra_ids)]
            elif extra_ids > 0 and extra_ids != n_sentinels:
                raise ValueError(
                    f"extra_ids={extra_ids} but the extra special tokens hold {n_sentinels} <extra_id_N> sentinels; "
                    "make them agree (or drop extra_ids from the config)."
                )
        kwargs["extra_special_tokens"] = extras
        super().__init__(tokenizer_object, **kwargs)

    def family_post_processor(self):
        return processors.TemplateProcessing(
            single=["$A", "</s>"], pair=["$A", "</s>", "$B", "</s>"], special_tokens=[("</s>", self.eos_token_id)]
        )

    def get_sentinel_tokens(self) -> list[str]:
        return [t for t in self.extra_special_tokens if t.startswith("<extra_id_")]

    def get_sentinel_token_ids(self) -> list[int]:
        return self.convert_tokens_to_ids(self.get_sentinel_tokens())


class LlamaTokenizer(_FamilyTokenizer):
    """SentencePiece BPE with byte fallback of Llama (tokenizer.model). Pads on the left by default; has no pad
    token unless the config names one."""

    model_input_names = ["input_ids", "attention_mask"]
    padding_side = "left"
    default_special_tokens = {"unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>"}
    saved_class_name = "LlamaTokenizer"
    json_model = "BPE"

    @classmethod
    def build_backend(cls, files: dict, config: dict) -> Tokenizer:
        spm = parse_spm_model(_need(files, SPM_FILES, cls.__name__))
        config["extra_special_tokens"] = _spm_extra_tokens(spm)
        config.pop("additional_special_tokens", None)
        config.setdefault("clean_up_tokenization_spaces", False)
        return _spm_bpe(spm, config)

    @classmethod
    def rebuild_from_json(cls, model: dict, charsmap: bytes, config: dict) -> Tokenizer:
        config.setdefault("clean_up_tokenization_spaces", False)
        return _llama_bpe_from(_json_vocab(model), _json_merges(model), config)


QWEN2_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)


class Qwen2Tokenizer(_FamilyTokenizer):
    """Byte-level BPE of Qwen2 (vocab.json + merges.txt): NFC, Qwen's split regex, no BOS; pads with
    ``<|endoftext|>``."""

    model_input_names = ["input_ids", "attention_mask"]
    default_special_tokens = {"unk_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}
    saved_class_name = "Qwen2Tokenizer"
    json_model = "BPE"

    @classmethod
    def build_backend(cls, files: dict, config: dict) -> Tokenizer:
        vocab, merges = BPE.read_file(
            str(_need(files, ("vocab.json",), cls.__name__)), str(_need(files, ("merges.txt",), cls.__name__))
        )
        return cls._from_vocab(vocab, merges, config)

    @classmethod
    def rebuild_from_json(cls, model: dict, charsmap: bytes, config: dict) -> Tokenizer:
        return cls._from_vocab(_json_vocab(model), _json_merges(model), config)

    @classmethod
    def _from_vocab(cls, vocab: dict, merges: list, config: dict) -> Tokenizer:
        tk = Tokenizer(
            BPE(vocab=vocab, merges=merges, dropout=None, unk_token=None, continuing_subword_prefix="",
                end_of_word_suffix="", fuse_unk=False, byte_fallback=False)
        )
        tk.decoder = decoders.ByteLevel()
        tk.normalizer = normalizers.NFC()
        tk.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(QWEN2_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=bool(config.get("add_prefix_space") or False), use_regex=False),
        ])
        return tk


class GenericTokenizer(_FamilyTokenizer):
    """The class for tokenizers of no known family (Transformers' ``TokenizersBackend`` /
    ``PreTrainedTokenizerFast``); legacy files are read by kind (vocab.txt, vocab.json + merges.txt, *.model)."""

    saved_class_name = "PreTrainedTokenizerFast"

    @classmethod
    def build_backend(cls, files: dict, config: dict) -> Tokenizer:
        if files.get("vocab.txt") is not None:
            return BertTokenizer.build_backend(files, config)
        if files.get("vocab.json") is not None and files.get("merges.txt") is not None:
            return _byte_level_bpe(files, config, cls.__name__)
        spm_file = next((files[n] for n in SPM_FILES if files.get(n) is not None), None)
        if spm_file is None:
            _need(files, ("tokenizer.json", "vocab.txt", "vocab.json", *SPM_FILES), cls.__name__)
        spm = parse_spm_model(spm_file)
        if not (config.get("extra_special_tokens") or config.get("additional_special_tokens")):
            config["extra_special_tokens"] = _spm_extra_tokens(spm)
        if spm.bos_id >= 0:
            config.setdefault("bos_token", spm.bos_piece or "<s>")
        if spm.eos_id >= 0:
            config.setdefault("eos_token", spm.eos_piece or "</s>")
        if spm.unk_id >= 0:
            config.setdefault("unk_token", spm.unk_piece or "<unk>")
        if spm.model_type == SPM_BPE:
            return _spm_bpe(spm, config)
        vocab = [(p, s) for p, s, _ in spm.pieces]
        scheme = "always" if spm.add_dummy_prefix else "never"
        return _metaspace_unigram(vocab, max(spm.unk_id, 0), spm.precompiled_charsmap, scheme, split=True)


# Transformers class names (with or without "Fast") -> fxformers class
TOKENIZER_CLASSES: dict[str, type[PreTrainedTokenizer]] = {
    "BertTokenizer": BertTokenizer,
    "DistilBertTokenizer": DistilBertTokenizer,
    "RobertaTokenizer": RobertaTokenizer,
    "BartTokenizer": BartTokenizer,
    "XLMRobertaTokenizer": XLMRobertaTokenizer,
    "GPT2Tokenizer": GPT2Tokenizer,
    "T5Tokenizer": T5Tokenizer,
    "LlamaTokenizer": LlamaTokenizer,
    "Qwen2Tokenizer": Qwen2Tokenizer,
    "PreTrainedTokenizer": GenericTokenizer,
    "TokenizersBackend": GenericTokenizer,
}

BertTokenizerFast = BertTokenizer
DistilBertTokenizerFast = DistilBertTokenizer
RobertaTokenizerFast = RobertaTokenizer
BartTokenizerFast = BartTokenizer
XLMRobertaTokenizerFast = XLMRobertaTokenizer
GPT2TokenizerFast = GPT2Tokenizer
T5TokenizerFast = T5Tokenizer
LlamaTokenizerFast = LlamaTokenizer
Qwen2TokenizerFast = Qwen2Tokenizer

# SentencePiece encoder families, built on the helpers above
from .spm_families import AlbertTokenizer, DebertaV2Tokenizer  # noqa: E402

TOKENIZER_CLASSES.update(AlbertTokenizer=AlbertTokenizer, DebertaV2Tokenizer=DebertaV2Tokenizer)
from .marian import MarianTokenizer  # noqa: E402  (its module imports the helpers above)

TOKENIZER_CLASSES["MarianTokenizer"] = MarianTokenizer
