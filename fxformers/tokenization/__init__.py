"""Tokenizers with Transformers' calling convention, on the Rust ``tokenizers`` library.

``AutoTokenizer.from_pretrained(folder_or_hub_id)`` loads tokenizer.json (or builds it from vocab.txt,
vocab.json + merges.txt, or a SentencePiece model); ``tokenizer(texts, padding=True, truncation=True,
return_tensors="np")`` returns a BatchEncoding.
"""

from .base import PreTrainedTokenizer, TokenizerError, TokenizerInputError
from .encoding import BatchEncoding, CharSpan, TokenSpan
from .loading import AutoTokenizer
from .models import (
    BartTokenizer,
    BartTokenizerFast,
    BertTokenizer,
    BertTokenizerFast,
    DistilBertTokenizer,
    DistilBertTokenizerFast,
    GenericTokenizer,
    GPT2Tokenizer,
    GPT2TokenizerFast,
    LlamaTokenizer,
    LlamaTokenizerFast,
    Qwen2Tokenizer,
    Qwen2TokenizerFast,
    RobertaTokenizer,
    RobertaTokenizerFast,
    T5Tokenizer,
    T5TokenizerFast,
    XLMRobertaTokenizer,
    XLMRobertaTokenizerFast,
)

from .spm_families import AlbertTokenizer, AlbertTokenizerFast, DebertaV2Tokenizer, DebertaV2TokenizerFast
from .marian import MarianTokenizer

PreTrainedTokenizerFast = GenericTokenizer

__all__ = [
    "AutoTokenizer", "BatchEncoding", "CharSpan", "TokenSpan", "PreTrainedTokenizer", "PreTrainedTokenizerFast",
    "TokenizerInputError", "BertTokenizer", "BertTokenizerFast", "DistilBertTokenizer", "DistilBertTokenizerFast",
    "RobertaTokenizer", "RobertaTokenizerFast", "BartTokenizer", "BartTokenizerFast", "XLMRobertaTokenizer",
    "XLMRobertaTokenizerFast", "GPT2Tokenizer", "GPT2TokenizerFast", "T5Tokenizer", "T5TokenizerFast",
    "LlamaTokenizer", "LlamaTokenizerFast", "Qwen2Tokenizer", "Qwen2TokenizerFast",
    "AlbertTokenizer", "AlbertTokenizerFast", "DebertaV2Tokenizer", "DebertaV2TokenizerFast",
    "MarianTokenizer",
]
__all__.append("TokenizerError")
