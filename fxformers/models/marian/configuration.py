"""MarianConfig: the fields of a Marian (opus-mt) config.json, with Transformers' defaults."""

from ..bart.configuration import BartConfig


class MarianConfig(BartConfig):
    """BART's fields plus separate target vocabularies: ``share_encoder_decoder_embeddings`` and
    ``decoder_vocab_size`` (None: the source ``vocab_size``)."""

    model_type = "marian"
    default_num_labels = 2
    defaults = {
        "vocab_size": 58101,
        "decoder_vocab_size": None,
        "max_position_embeddings": 1024,
        "encoder_layers": 12,
        "encoder_ffn_dim": 4096,
        "encoder_attention_heads": 16,
        "decoder_layers": 12,
        "decoder_ffn_dim": 4096,
        "decoder_attention_heads": 16,
        "encoder_layerdrop": 0.0,
        "decoder_layerdrop": 0.0,
        "use_cache": True,
        "is_encoder_decoder": True,
        "activation_function": "gelu",
        "d_model": 1024,
        "dropout": 0.1,
        "attention_dropout": 0.0,
        "activation_dropout": 0.0,
        "init_std": 0.02,
        "decoder_start_token_id": 58100,
        "scale_embedding": False,
        "pad_token_id": 58100,
        "eos_token_id": 0,
        "bos_token_id": None,
        "forced_eos_token_id": 0,
        "share_encoder_decoder_embeddings": True,
        "tie_word_embeddings": True,
    }

    def one_embedding_table(self) -> bool:
        """Whether encoder, decoder (and a tied LM head) read the one ``shared`` table. Transformers 5 ties
        ``encoder.embed_tokens`` and ``decoder.embed_tokens`` to ``shared`` only when ``tie_word_embeddings`` is
        true as well; otherwise each side has its own table (and ``shared`` is stored but unused)."""
        return bool(self.share_encoder_decoder_embeddings and self.tie_word_embeddings)

    def target_vocab_size(self) -> int:
        """Rows of the decoder's embedding, LM head and final_logits_bias (Transformers: the source vocabulary
        when the embeddings are shared, else ``decoder_vocab_size``)."""
        if self.share_encoder_decoder_embeddings:
            return self.vocab_size
        return self.decoder_vocab_size or self.vocab_size
