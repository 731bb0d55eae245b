"""DebertaV2Config: every field DeBERTa-v2/v3 checkpoints carry, with Transformers' defaults (several are read with
``getattr`` there, so absent means the default below)."""

from __future__ import annotations

from ...configuration import PretrainedConfig

_POS_ATT_TYPES = ("c2p", "p2c")


class DebertaV2Config(PretrainedConfig):
    model_type = "deberta-v2"
    defaults = {
        "vocab_size": 128100,
        "hidden_size": 1536,
        "num_hidden_layers": 24,
        "num_attention_heads": 24,
        "intermediate_size": 6144,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": 512,
        "type_vocab_size": 0,
        "initializer_range": 0.02,
        "layer_norm_eps": 1e-7,
        "relative_attention": False,
        "max_relative_positions": -1,
        "position_buckets": -1,
        "pad_token_id": 0,
        "position_biased_input": True,
        "pos_att_type": None,  # list of "c2p" / "p2c", or the older "p2c|c2p" string
        "share_att_key": False,
        "norm_rel_ebd": "none",  # "layer_norm" normalises the relative embeddings
        "conv_kernel_size": 0,  # > 0: DeBERTa-v2's convolution beside the first layer
        "conv_groups": 1,
        "conv_act": "tanh",
        "embedding_size": None,  # None: hidden_size
        "attention_head_size": None,  # None: hidden_size // num_attention_heads
        "pooler_hidden_size": None,  # None: hidden_size
        "pooler_dropout": 0.0,
        "pooler_hidden_act": "gelu",
        "cls_dropout": None,  # None: hidden_dropout_prob
        "legacy": True,  # the MLM head: cls.predictions (legacy) or lm_predictions.lm_head
    }

    def validate(self) -> None:
        if isinstance(self.pos_att_type, str):
            self.pos_att_type = [x.strip() for x in self.pos_att_type.lower().split("|")]
        unknown = [t for t in (self.pos_att_type or []) if t not in _POS_ATT_TYPES]
        if unknown:
            raise ValueError(f"pos_att_type {unknown} unknown; DeBERTa-v2 supports {list(_POS_ATT_TYPES)}.")
        if self.hidden_size % self.num_attention_heads and self.attention_head_size is None:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not a multiple of num_attention_heads {self.num_attention_heads}."
            )
        if self.conv_kernel_size and self.conv_kernel_size % 2 == 0:
            raise ValueError(
                f"conv_kernel_size={self.conv_kernel_size}: an even kernel changes the sequence length (Transformers "
                "fails on it too); use an odd size."
            )
        if not self.legacy and self.embedding_width != self.hidden_size:
            raise ValueError("legacy=False ties the MLM head at hidden_size, so embedding_size must equal hidden_size.")

    def to_dict(self) -> dict:
        # Transformers reads these with getattr(config, name, default): a saved null would override the default
        out = super().to_dict()
        for key in ("embedding_size", "attention_head_size", "pooler_hidden_size"):
            if out.get(key) is None:
                out.pop(key, None)
        return out

    # -- derived sizes, as Transformers resolves them ------------------------------------------------------------
    @property
    def embedding_width(self) -> int:
        return self.embedding_size if self.embedding_size is not None else self.hidden_size

    @property
    def head_dim(self) -> int:
        return self.attention_head_size if self.attention_head_size is not None else self.hidden_size // self.num_attention_heads

    @property
    def pooler_width(self) -> int:
        return self.pooler_hidden_size if self.pooler_hidden_size is not None else self.hidden_size

    @property
    def relative_positions(self) -> int:
        """max_relative_positions, or max_position_embeddings when unset (< 1)."""
        return self.max_relative_positions if self.max_relative_positions >= 1 else self.max_position_embeddings

    @property
    def attention_span(self) -> int:
        """A: relative distances are embedded in 2A rows (position_buckets when set, else relative_positions)."""
        return self.position_buckets if self.position_buckets > 0 else self.relative_positions

    @property
    def norm_rel_ebd_types(self) -> list:
        return [x.strip() for x in (self.norm_rel_ebd or "none").lower().split("|")]

    @property
    def pos_att(self) -> tuple:
        return tuple(self.pos_att_type or ())
