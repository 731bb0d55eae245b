"""RobertaConfig and XLMRobertaConfig: BERT's fields with RoBERTa's defaults (padding index 1, positions offset)."""

from ..bert.configuration import BertConfig


class RobertaConfig(BertConfig):
    model_type = "roberta"
    defaults = {**BertConfig.defaults, "vocab_size": 50265, "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2}


class XLMRobertaConfig(RobertaConfig):
    model_type = "xlm-roberta"
    defaults = {**RobertaConfig.defaults, "vocab_size": 250002}
