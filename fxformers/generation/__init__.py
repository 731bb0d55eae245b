"""Text generation: one jit-compiled loop (greedy, sampling, beam search) for every model in the library.

The loop lives here; models plug in through a two-method protocol documented in :mod:`.protocol`:

* ``model.prepare_generation(params, input_ids [B, T], attention_mask [B, T], max_length) -> (logits [B, V] f32, state)``
* ``model.generation_step(params, state, tokens [B]) -> (logits [B, V] f32, state)``

with every leaf of ``state`` batch-leading, so beam search reorders it with ``jnp.take(leaf, idx, axis=0)`` and
expands it with ``jnp.repeat``. Decoder-only output is ``[prompt | new]``; encoder-decoder
(``config.is_encoder_decoder``) output is ``[decoder_start_token_id | new]``. Decoder-only models get both methods
from :class:`.decoder_only.DecoderOnlyGenerationMixin`; encoder-decoders mix in :class:`GenerationMixin` and
implement them.
"""

from .configuration import GenerationConfig
from .processors import (
    SequenceView,
    apply_temperature,
    min_p_filter,
    no_repeat_ngram_mask,
    repetition_penalty,
    top_k_filter,
    top_k_top_p_filtering,
    top_p_filter,
)
from .protocol import GenerationModel
from .streamers import BaseStreamer, TextIteratorStreamer, TextStreamer
from .utils import GenerationMixin, prompt_bucket

__all__ = [
    "GenerationConfig", "GenerationMixin", "GenerationModel", "SequenceView", "apply_temperature", "prompt_bucket",
    "min_p_filter", "no_repeat_ngram_mask", "repetition_penalty", "top_k_filter", "top_k_top_p_filtering",
    "top_p_filter", "BaseStreamer", "TextStreamer", "TextIteratorStreamer",
]
