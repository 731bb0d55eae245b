"""ElectraConfig: BERT's fields plus the embedding size and the multiple-choice summary, with ELECTRA's defaults."""

from ..bert.configuration import BertConfig


class ElectraConfig(BertConfig):
    model_type = "electra"
    defaults = {
        **BertConfig.defaults,
        "embedding_size": 128,
        "hidden_size": 256,
        "num_attention_heads": 4,
        "intermediate_size": 1024,
        # ElectraSequenceSummary (multiple choice): how the sequence is reduced to one vector
        "summary_type": "first",
        "summary_use_proj": True,
        "summary_activation": "gelu",
        "summary_proj_to_labels": False,  # Transformers reads it with hasattr: absent means False
        "summary_first_dropout": 0.0,
        "summary_last_dropout": 0.1,
    }

    def validate(self) -> None:
        super().validate()
        if self.summary_type not in ("last", "first", "mean", "cls_index"):
            raise NotImplementedError(
                f"summary_type={self.summary_type!r} is not supported; use 'last', 'first', 'mean' or 'cls_index' "
                "(Transformers implements no other either)."
            )
