"""SentencePiece Unigram families of the encoders: ALBERT (spiece.model) and DeBERTa-v2/v3 (spm.model).

As Transformers 5 does, each class builds its normaliser, pre-tokenizer and decoder itself, around the pieces of the
SentencePiece model or the Unigram vocabulary of a tokenizer.json.
"""

from __future__ import annotations

from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import Unigram

from .families import FAMILIES
from .models import SPM_FILES, _FamilyTokenizer, _json_unigram_vocab, _need, _spm_extra_tokens, _token_str
from .spm import parse_spm_model


def _family(name: str) -> dict:
    input_names, padding_side, truncation_side, defaults = FAMILIES[name]
    return dict(model_input_names=list(input_names), padding_side=padding_side, truncation_side=truncation_side,
                default_special_tokens=dict(defaults), saved_class_name=name)


def _cls_sep_template(cls_token: str, sep_token: str, cls_id, sep_id) -> processors.TemplateProcessing:
    return processors.TemplateProcessing(
        single=f"{cls_token}:0 $A:0 {sep_token}:0",
        pair=f"{cls_token}:0 $A:0 {sep_token}:0 $B:1 {sep_token}:1",
        special_tokens=[(cls_token, cls_id), (sep_token, sep_id)],
    )


class AlbertTokenizer(_FamilyTokenizer):
    """ALBERT: Unigram with unk id 1; quotes normalised, accents stripped (unless keep_accents) and lower case
    (do_lower_case) before the model's precompiled map; ``[CLS] A [SEP] B [SEP]``."""

    locals().update(_family("AlbertTokenizer"))
    json_model = "Unigram"

    @classmethod
    def build_backend(cls, files: dict, config: dict) -> Tokenizer:
        spm = parse_spm_model(_need(files, SPM_FILES, cls.__name__))
        config.setdefault("extra_special_tokens", _spm_extra_tokens(spm))
        tk = cls._pipeline([(p, s) for p, s, _ in spm.pieces], spm.precompiled_charsmap, config)
        # built from the .model file there is no post-processor to keep: the class's template applies
        cls_token, sep_token = _token_str(config, "cls_token", "[CLS]"), _token_str(config, "sep_token", "[SEP]")
        tk.post_processor = _cls_sep_template("[CLS]", "[SEP]", tk.token_to_id(cls_token), tk.token_to_id(sep_token))
        return tk

    @classmethod
    def rebuild_from_json(cls, model: dict, charsmap: bytes, config: dict) -> Tokenizer:
        return cls._pipeline(_json_unigram_vocab(model), charsmap, config)  # the file's post-processor is kept

    @staticmethod
    def _pipeline(vocab: list, charsmap: bytes, config: dict) -> Tokenizer:
        tk = Tokenizer(Unigram(vocab, unk_id=1, byte_fallback=False))  # Transformers fixes unk_id=1 for ALBERT
        parts = [normalizers.Replace("``", '"'), normalizers.Replace("''", '"')]
        if not config.get("keep_accents", False):
            parts += [normalizers.NFKD(), normalizers.StripAccents()]
        if config.get("do_lower_case", True):
            parts.append(normalizers.Lowercase())
        if charsmap:
            parts.append(normalizers.Precompiled(charsmap))
        tk.normalizer = normalizers.Sequence(parts)
        scheme = "always" if config.get("add_prefix_space", True) else "never"
        tk.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="▁", prepend_scheme=scheme)])
        tk.decoder = decoders.Metaspace(replacement="▁", prepend_scheme=scheme)
        return tk


class DebertaV2Tokenizer(_FamilyTokenizer):
    """DeBERTa-v2/v3: Unigram over spm.model; whitespace runs collapsed, NFC, right strip, optional lower case and
    punctuation split; ``[CLS] A [SEP] B [SEP]`` always (the class's template wins over the file's)."""

    locals().update(_family("DebertaV2Tokenizer"))
    json_model = "Unigram"
    own_post_processor = True

    @classmethod
    def build_backend(cls, files: dict, config: dict) -> Tokenizer:
        spm = parse_spm_model(_need(files, ("spm.model",) + SPM_FILES, cls.__name__))
        config.setdefault("extra_special_tokens", _spm_extra_tokens(spm))
        return cls._pipeline([(p, s) for p, s, _ in spm.pieces], spm.unk_id, config)

    @classmethod
    def rebuild_from_json(cls, model: dict, charsmap: bytes, config: dict) -> Tokenizer:
        return cls._pipeline(_json_unigram_vocab(model), int(config.get("unk_id", 1)), config)

    @staticmethod
    def _pipeline(vocab: list, unk_id: int, config: dict) -> Tokenizer:
        unk = (_token_str(config, "unk_token", "[UNK]"), 0.0)
        unk_id = vocab.index(unk) if unk in vocab else unk_id  # Transformers' rule: the unk piece wins
        config["unk_id"] = unk_id
        tk = Tokenizer(Unigram(vocab, unk_id=unk_id, byte_fallback=False))
        parts = [normalizers.Lowercase()] if config.get("do_lower_case", False) else []
        parts += [normalizers.Replace(Regex(r"\s{2,}|[\n\r\t]"), " "), normalizers.NFC(), normalizers.Strip(left=False, right=True)]
        tk.normalizer = normalizers.Sequence(parts)
        pre = [pre_tokenizers.Punctuation(behavior="isolated")] if config.get("split_by_punct", False) else []
        scheme = "always" if config.get("add_prefix_space", True) else "first"
        tk.pre_tokenizer = pre_tokenizers.Sequence(pre + [pre_tokenizers.Metaspace(replacement="▁", prepend_scheme=scheme)])
        tk.decoder = decoders.Metaspace(replacement="▁", prepend_scheme=scheme)
        return tk

    def family_post_processor(self):
        cls_id = self.cls_token_id if self.cls_token_id is not None else 0
        sep_id = self.sep_token_id if self.sep_token_id is not None else 0
        return _cls_sep_template(str(self.cls_token), str(self.sep_token), cls_id, sep_id)


AlbertTokenizerFast = AlbertTokenizer
DebertaV2TokenizerFast = DebertaV2Tokenizer
