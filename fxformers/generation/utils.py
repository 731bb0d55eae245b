"""GenerationMixin.generate: greedy search, sampling and beam search in ONE jit-compiled program.

Host side (``generate``): resolve the GenerationConfig (model defaults, generation_config.json, per-call keyword
overrides), check the settings, pad the prompt to a bucketed length, then call a jitted program that runs the
model's ``prepare_generation`` (prefill) followed by a ``lax.while_loop`` of ``generation_step`` calls (see
:mod:`.protocol`). The program is cached per static settings and compiled by JAX once per shape, i.e. per
(batch, bucketed prompt length, bucketed number of new tokens); the actual prompt length, number of new tokens and
min lengths are traced scalars, so a new prompt length usually reuses the compiled program.

Buffer layout inside the program (R rows = batch x beams or batch x return sequences, S buffer columns):
decoder-only ``[bucket filler | user prompt (its own left padding included) | new tokens]`` with ``start`` = number
of filler columns; encoder-decoder ``[decoder_start | new tokens]`` with ``start`` = 0. The host returns
``buffer[:, start:end]``, exactly Transformers' ``generate`` output.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import logging
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import io_callback

from ..ops.bucketing import bucket_length
from ..random import next_key
from ..sharding import constrain_kv_cache, place_batch
from . import processors as P
from . import stop_strings as stops
from . import streamers
from .configuration import GENERATION_CONFIG_NAME, GenerationConfig
from .outputs import (GenerateBeamDecoderOnlyOutput, GenerateBeamEncoderDecoderOutput, GenerateDecoderOnlyOutput,
                      GenerateEncoderDecoderOutput)

logger = logging.getLogger(__name__)

# Incremented each time a generation program is traced (i.e. compiled): tests use it to prove there is no recompile.
TRACE_COUNT = 0

PROMPT_BUCKETS = (8, 16, 32, 64, 128, 256, 512, 1024)
NEW_TOKENS_MULTIPLE = 8

_UNSUPPORTED = {  # field -> value meaning "off"; anything else is rejected rather than silently ignored
    "encoder_repetition_penalty": 1.0,
    "encoder_no_repeat_ngram_size": 0, "exponential_decay_length_penalty": None,
    "guidance_scale": None, "penalty_alpha": None, "dola_layers": None,
    "diversity_penalty": 0.0, "num_beam_groups": 1,  # legacy configs carry these neutral values: plain beam search "constraints": None, "force_words_ids": None,
    "output_attentions": None, "output_hidden_states": None, "max_time": None,
}


def prompt_bucket(length: int) -> int:
    """The padded length a prompt of ``length`` tokens runs at: the next power of two from 8, then multiples of 1024."""
    return bucket_length(length, minimum=PROMPT_BUCKETS[0], multiple=PROMPT_BUCKETS[-1])


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


@dataclasses.dataclass(frozen=True)
class _Program:
    """Static settings of one compiled generation program."""

    strategy: str  # "greedy" | "sample" | "beam"
    processors: P.ProcessorSpec
    expand: int  # rows per input: num_beams (beam) or num_return_sequences
    num_return_sequences: int
    pad_token_id: int
    eos_token_ids: tuple[int, ...]
    beam_fill: int
    length_penalty: float
    early_stopping: Any
    is_encoder_decoder: bool
    decoder_start_token_id: int
    buffer_length: int  # S
    stream: bool = False  # call streamers.emit with each step's tokens (generate(streamer=...))
    output_scores: bool = False  # keep each step's processed scores [R, V] (return_dict_in_generate)
    output_logits: bool = False  # keep each step's raw logits [R, V]
    beam_indices: bool = False  # beam search: track each token's source beam (return_dict_in_generate)
    stop_strings: Optional[stops.StopStringSpec] = None  # its table is dyn["stop_table"]


class GenerationMixin:
    """Adds ``generate()`` and ``generation_config`` to a model implementing :class:`.protocol.GenerationModel`."""

    # -- generation_config -----------------------------------------------------------------------------------------
    @property
    def generation_config(self) -> GenerationConfig:
        config = self.__dict__.get("_generation_config")
        if config is None:
            config = GenerationConfig.from_model_config(self.config)
            self.__dict__["_generation_config"] = config
        return config

    @generation_config.setter
    def generation_config(self, value: GenerationConfig) -> None:
        self.__dict__["_generation_config"] = value

    @classmethod
    def from_pretrained(cls, name_or_path, *args: Any, **kwargs: Any):
        """As ``PreTrainedModel.from_pretrained``, also reading ``generation_config.json`` when the model has one."""
        model = super().from_pretrained(name_or_path, *args, **kwargs)
        hub = {k: kwargs[k] for k in ("cache_dir", "revision", "token", "local_files_only") if k in kwargs}
        try:
            model.generation_config = GenerationConfig.from_pretrained(name_or_path, **hub)
        except FileNotFoundError:
            pass
        return model

    # -- generate --------------------------------------------------------------------------------------------------
    def generate(
        self,
        input_ids,
        attention_mask=None,
        generation_config: Optional[GenerationConfig] = None,
        prng_key: Optional[jax.Array] = None,
        *,
        params: Any = None,
        **kwargs: Any,
    ) -> jax.Array:
        """Generate token ids, shaped as ``transformers.generate`` returns them.

        input_ids [B, T] int (left-padded for decoder-only models; the encoder input for encoder-decoders),
        attention_mask [B, T] (inferred from ``pad_token_id`` when omitted, as Transformers does). Keyword arguments
        override ``generation_config`` fields (``max_new_tokens=20, num_beams=4, do_sample=True, top_p=0.9`` ...).
        ``prng_key`` makes sampling deterministic; without it each sampling call draws a fresh key from the
        library key (``fxformers.set_seed(n)`` makes a run repeat exactly, as ``transformers.set_seed`` does).

        Returns [B * num_return_sequences, T + new] int32 for decoder-only models (the prompt, then the new tokens,
        ``pad_token_id`` after a row's EOS) and [B * num_return_sequences, 1 + new] for encoder-decoders.
        """
        streamer = kwargs.pop("streamer", None)
        tokenizer = kwargs.pop("tokenizer", None)  # needed by stop_strings only, as in Transformers
        gc = copy.deepcopy(generation_config if generation_config is not None else self.generation_config)
        unused = gc.update(**kwargs)
        if unused:
            raise TypeError(
                f"generate() got keyword arguments that are not generation settings: {sorted(unused)}. "
                "Model inputs other than input_ids/attention_mask are not supported."
            )
        user_max_length, user_min_length = gc.max_length, gc.min_length
        gc = gc.with_defaults()
        ids = np.asarray(input_ids)
        if ids.ndim == 1:
            ids = ids[None, :]
        if ids.ndim != 2 or not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"input_ids must be a [batch, length] integer array, got shape {ids.shape}, dtype {ids.dtype}.")
        batch, prompt_len = ids.shape
        if batch == 0:
            raise ValueError("input_ids has no rows (batch of 0); pass at least one prompt.")
        if prompt_len == 0:
            raise ValueError("input_ids is empty; generation needs at least one prompt token.")
        config = self.config
        vocab = int(config.vocab_size)
        if ids.min() < 0 or ids.max() >= vocab:
            raise ValueError(f"input_ids holds ids outside [0, {vocab}) (min {ids.min()}, max {ids.max()}).")
        encoder_decoder = bool(getattr(config, "is_encoder_decoder", False))

        eos = gc.eos_token_id
        eos_ids = tuple(int(e) for e in ([] if eos is None else [eos] if isinstance(eos, (int, np.integer)) else eos))
        pad = gc.pad_token_id
        if pad is None and eos_ids:
            logger.warning("Setting pad_token_id to eos_token_id:%d for open-end generation.", eos_ids[0])
            pad = eos_ids[0]
        if attention_mask is None:
            if pad is not None and (ids == pad).any() and pad not in eos_ids:
                mask = (ids != pad).astype(np.int32)
            else:
                mask = np.ones_like(ids, dtype=np.int32)
        else:
            mask = np.asarray(attention_mask).astype(np.int32)
            if mask.shape != ids.shape:
                raise ValueError(f"attention_mask has shape {mask.shape}, input_ids has {ids.shape}; they must match.")
        if not encoder_decoder and (mask[:, -1] == 0).any():
            logger.warning(
                "A decoder-only model is being given right-padded prompts; use left padding "
                "(tokenizer.padding_side = 'left') for correct generation."
            )

        gc.check_values(vocab)  # types, finiteness and ids in the vocabulary, before anything is computed
        # lengths, as Transformers' _prepare_generated_length
        decoder_prompt_len = 1 if encoder_decoder else prompt_len
        if gc.max_new_tokens is not None:
            max_length = gc.max_new_tokens + decoder_prompt_len
        elif user_max_length is None:
            max_length = gc.max_length + decoder_prompt_len
            limit = getattr(config, "max_position_embeddings", None)
            if limit is not None:
                max_length = min(max_length, limit)
        else:
            max_length = gc.max_length
        min_length = gc.min_new_tokens + decoder_prompt_len if gc.min_new_tokens is not None else gc.min_length
        max_new = max_length - decoder_prompt_len
        self._check_settings(gc, max_new, prompt_len, max_length)
        stop_table, stop_spec = None, None
        if gc.stop_strings is not None:
            if tokenizer is None:
                raise ValueError("generate(stop_strings=...) needs the model's tokenizer to match them: pass "
                                 "tokenizer=tokenizer to generate().")
            stop_table, stop_spec = stops.build(tokenizer, gc.stop_strings)
        decoder_start = None
        if encoder_decoder:
            decoder_start = gc.decoder_start_token_id
            if decoder_start is None:
                decoder_start = getattr(config, "decoder_start_token_id", None)
            if decoder_start is None:
                decoder_start = gc.bos_token_id
            if decoder_start is None:
                raise ValueError("An encoder-decoder model needs decoder_start_token_id (or bos_token_id) to generate.")

        do_sample, num_beams = bool(gc.do_sample), int(gc.num_beams)
        strategy = "beam" if num_beams > 1 else ("sample" if do_sample else "greedy")
        nrs = int(gc.num_return_sequences)
        n_eos = len(eos_ids)
        proc = P.ProcessorSpec(
            vocab_size=vocab,
            eos_token_ids=eos_ids,
            repetition_penalty=float(gc.repetition_penalty),
            no_repeat_ngram_size=int(gc.no_repeat_ngram_size or 0),
            bad_words_ids=self._bad_words(gc.bad_words_ids, eos_ids),
            use_min_length=bool(eos_ids) and min_length > 0,
            use_min_new_tokens=bool(eos_ids) and (gc.min_new_tokens or 0) > 0,
            forced_bos_token_id=None if gc.forced_bos_token_id is None else int(gc.forced_bos_token_id),
            forced_eos_token_ids=self._as_ids(gc.forced_eos_token_id),
            suppress_tokens=self._as_ids(gc.suppress_tokens),
            begin_suppress_tokens=self._as_ids(gc.begin_suppress_tokens),
            do_sample=do_sample,
            # The warpers act only when sampling: neutral values otherwise, so greedy and beam programs do not
            # compile again for a temperature or top_k they never use (pipelines default temperature=0.7).
            temperature=float(gc.temperature) if do_sample else 1.0,
            top_k=int(gc.top_k or 0) if do_sample else 0,
            top_p=float(gc.top_p if gc.top_p is not None else 1.0) if do_sample else 1.0,
            min_p=None if gc.min_p is None or not do_sample else float(gc.min_p),
            min_tokens_to_keep=(n_eos + 1 if n_eos else 2) if (do_sample and num_beams > 1) else 1,
            renormalize_logits=bool(gc.renormalize_logits),
            sequence_bias=self._sequence_bias(gc.sequence_bias, vocab),
            typical_p=float(gc.typical_p if gc.typical_p is not None else 1.0) if do_sample else 1.0,
            epsilon_cutoff=float(gc.epsilon_cutoff or 0.0) if do_sample else 0.0,
            eta_cutoff=float(gc.eta_cutoff or 0.0) if do_sample else 0.0,
        )
        new_cap = _round_up(max_new, NEW_TOKENS_MULTIPLE)
        if encoder_decoder:
            enc_len = prompt_bucket(prompt_len)
            fill = (pad if pad is not None else 0)
            ids_in = np.full((batch, enc_len), fill, np.int32)
            ids_in[:, :prompt_len] = ids
            mask_in = np.zeros((batch, enc_len), np.int32)
            mask_in[:, :prompt_len] = mask
            start, prompt_end, buffer_length = 0, 1, 1 + new_cap
            first_token = np.zeros((batch,), np.int32)
            limit = getattr(self, "generation_max_positions", lambda: None)()  # decoder positions (BART's table)
            if limit is not None and max(max_length, prompt_len) > limit:
                raise ValueError(
                    f"The source ({prompt_len} tokens) or the decoder ({max_length} positions: start token + {max_new} "
                    f"new) exceeds this model's {limit} positions (max_position_embeddings); truncate the input or "
                    "lower max_new_tokens."
                )
        else:
            t_bucket = prompt_bucket(prompt_len)
            limit = getattr(self, "generation_max_positions", lambda: None)()
            start = t_bucket - prompt_len
            ids_in = np.full((batch, t_bucket), pad if pad is not None else 0, np.int32)
            ids_in[:, start:] = ids
            mask_in = np.zeros((batch, t_bucket), np.int32)
            mask_in[:, start:] = mask
            prompt_end, buffer_length = t_bucket, t_bucket + new_cap
            # Transformers 5 ignores each row's left padding in the repetition penalty
            first_token = start + np.where(mask.any(axis=1), (mask != 0).argmax(axis=1), prompt_len).astype(np.int32)
            if limit is not None and max_length > limit:
                raise ValueError(
                    f"The prompt ({prompt_len} tokens) plus {max_new} new tokens needs {max_length} positions, more than "
                    f"this model's {limit} (max_position_embeddings); shorten the prompt or lower max_new_tokens."
                )
        program = _Program(
            strategy=strategy, processors=proc, expand=num_beams if strategy == "beam" else nrs,
            num_return_sequences=nrs, pad_token_id=int(pad) if pad is not None else 0, eos_token_ids=eos_ids,
            beam_fill=self._beam_fill(pad, eos_ids), length_penalty=float(gc.length_penalty),
            early_stopping=gc.early_stopping, is_encoder_decoder=encoder_decoder,
            decoder_start_token_id=int(decoder_start) if decoder_start is not None else 0,
            buffer_length=buffer_length, stream=streamer is not None,
            output_scores=bool(gc.return_dict_in_generate and gc.output_scores),
            output_logits=bool(gc.return_dict_in_generate and gc.output_logits),
            beam_indices=bool(gc.return_dict_in_generate) and strategy == "beam",
            stop_strings=stop_spec,
        )
        dyn = {
            "start": start, "prompt_end": prompt_end, "prompt_length": decoder_prompt_len, "max_length": max_length,
            "min_length": min_length, "min_new_tokens": gc.min_new_tokens or 0, "max_new": max_new,
            "begin_index": decoder_prompt_len if (decoder_prompt_len > 1 or gc.forced_bos_token_id is None) else decoder_prompt_len + 1,
        }
        if stop_table is not None:
            dyn["stop_table"] = stop_table
        dyn = {k: jnp.asarray(v, jnp.int32) for k, v in dyn.items()}
        key = prng_key if prng_key is not None else (next_key() if gc.do_sample else jax.random.PRNGKey(0))
        run = self._generation_program(program)
        batch_inputs = {"ids": ids_in, "mask": mask_in, "first": first_token}
        if self.mesh is not None:  # rows split over the mesh's batch axes, as the cache is
            batch_inputs = place_batch({k: np.asarray(v) for k, v in batch_inputs.items()}, self.mesh)
        inputs = tuple(jnp.asarray(batch_inputs[k]) for k in ("ids", "mask", "first"))
        if streamer is None:
            sequences, end, recorded = run(self.params if params is None else params, *inputs, dyn, key)
            sequences = sequences[:, start : int(end)]
            return self._generate_output(gc, sequences, recorded, int(end) - prompt_end, encoder_decoder)
        if batch != 1 or strategy == "beam":
            raise ValueError("generate(streamer=...) needs one prompt (batch size 1) and num_beams=1, as in "
                             "Transformers; call generate once per prompt.")
        streamer.put(np.full((1, 1), decoder_start, np.int64) if encoder_decoder else ids)
        dyn["stream_id"] = jnp.asarray(streamers.register(streamer), jnp.int32)
        try:
            sequences, end, recorded = run(self.params if params is None else params, *inputs, dyn, key)
            sequences = sequences[:, start : int(end)]
        finally:
            streamers.unregister(int(dyn["stream_id"]))
        streamer.end()
        return self._generate_output(gc, sequences, recorded, int(end) - prompt_end, encoder_decoder)

    @staticmethod
    def _generate_output(gc: GenerationConfig, sequences: jax.Array, recorded: dict, generated: int,
                         encoder_decoder: bool):
        """The sequences, or (``return_dict_in_generate``) Transformers' output object with per-step scores.

        ``generated``: new tokens in ``sequences``. Beam search also records ``steps`` (loop iterations, one score
        tensor each; a finished hypothesis can be shorter), ``beam_indices`` and ``sequences_scores``."""
        if not gc.return_dict_in_generate:
            return sequences
        steps = int(recorded["steps"]) if "steps" in recorded else generated
        per_step = {name: tuple(recorded[name][:, i] for i in range(steps)) for name in ("scores", "logits")
                    if name in recorded}
        if "beam_indices" not in recorded:
            cls = GenerateEncoderDecoderOutput if encoder_decoder else GenerateDecoderOnlyOutput
            return cls(sequences=sequences, scores=per_step.get("scores"), logits=per_step.get("logits"))
        cls = GenerateBeamEncoderDecoderOutput if encoder_decoder else GenerateBeamDecoderOnlyOutput
        return cls(sequences=sequences, sequences_scores=recorded.get("sequences_scores"),
                   scores=per_step.get("scores"), logits=per_step.get("logits"),
                   beam_indices=recorded["beam_indices"][:, :generated])

    def compute_transition_scores(self, sequences: Any, scores: tuple, beam_indices: Any = None,
                                  normalize_logits: bool = False) -> np.ndarray:
        """Transformers' ``compute_transition_scores``: the score of each generated token at its step, [B, steps]
        (log-probabilities with ``normalize_logits=True``)."""
        steps = len(scores)
        stacked = np.stack([np.asarray(s, np.float32) for s in scores])  # [steps, R, V]
        if normalize_logits:
            stacked = np.asarray(jax.nn.log_softmax(jnp.asarray(stacked), axis=-1))
        sequences = np.asarray(sequences)
        if beam_indices is None:
            beam_indices = np.broadcast_to(np.arange(stacked.shape[1])[:, None], (stacked.shape[1], steps))
        beam_indices = np.asarray(beam_indices)
        masked = beam_indices < 0
        length = int((~masked).sum(-1).max())
        beam_indices, masked = np.where(masked, 0, beam_indices)[:, :length], masked[:, :length]
        tokens = sequences[:, sequences.shape[-1] - length:]
        step = np.arange(length)[None, :]
        out = stacked[step, beam_indices, tokens]  # [B, length]
        return np.where(masked, 0.0, out)

    # -- helpers ---------------------------------------------------------------------------------------------------
    @staticmethod
    def _as_ids(value) -> tuple[int, ...]:
        if value is None:
            return ()
        if isinstance(value, (int, np.integer)):
            return (int(value),)
        return tuple(int(v) for v in value)

    @staticmethod
    def _bad_words(bad_words_ids, eos_ids) -> tuple[tuple[int, ...], ...]:
        if bad_words_ids is None:
            return ()
        if not isinstance(bad_words_ids, (list, tuple)) or not bad_words_ids or any(
            not isinstance(w, (list, tuple)) or not w for w in bad_words_ids
        ):
            raise ValueError(f"bad_words_ids must be a non-empty list of non-empty lists of token ids, got {bad_words_ids!r}.")
        words = tuple(tuple(int(t) for t in w) for w in bad_words_ids)
        if any(t < 0 for w in words for t in w):
            raise ValueError(f"bad_words_ids holds negative ids: {bad_words_ids!r}.")
        return tuple(w for w in words if not (len(w) == 1 and w[0] in eos_ids))

    @staticmethod
    def _sequence_bias(value, vocab: int) -> tuple:
        """``{(ids...): bias}`` or ``[[ids, bias], ...]`` (Transformers' two spellings) as a hashable tuple."""
        if value is None:
            return ()
        items = value.items() if isinstance(value, dict) else value
        try:
            out = tuple((tuple(int(t) for t in ids), float(bias)) for ids, bias in items)
        except (TypeError, ValueError):
            raise ValueError(f"sequence_bias must be {{(token ids): bias}} or [[token ids, bias], ...], got {value!r}.") from None
        bad = sorted({t for ids, _ in out for t in ids if not 0 <= t < vocab})
        if not out or any(not ids for ids, _ in out) or bad:
            raise ValueError(f"sequence_bias needs non-empty id sequences within the vocabulary of {vocab} tokens "
                             f"(out of range: {bad}), got {value!r}.")
        return out

    @staticmethod
    def _beam_fill(pad, eos_ids) -> int:
        # Transformers: `pad_token_id or eos_token_id[0] if eos_token_id is not None else -1`
        if not eos_ids:
            return -1
        return int(pad) if pad else eos_ids[0]

    def _check_settings(self, gc: GenerationConfig, max_new: int, prompt_len: int, max_length: int) -> None:
        for name, off in _UNSUPPORTED.items():
            value = getattr(gc, name, None)
            if value is not None and value is not False and value != off:
                hint = (" (group beam search: Transformers 5 moved it out of the library, to the Hub's "
                        "transformers-community/group-beam-search)" if name in ("num_beam_groups", "diversity_penalty") else "")
                raise NotImplementedError(f"generate() does not support {name}={value!r}{hint}; unset it.")
        if max_new <= 0:
            raise ValueError(
                f"The prompt has {prompt_len} tokens and max_length is {max_length}: nothing is left to generate. "
                "Set max_new_tokens (or a larger max_length)."
            )
        num_beams, nrs = int(gc.num_beams), int(gc.num_return_sequences)
        if num_beams < 1:
            raise ValueError(f"num_beams must be >= 1, got {num_beams}.")
        if nrs < 1:
            raise ValueError(f"num_return_sequences must be >= 1, got {nrs}.")
        if num_beams > 1 and nrs > num_beams:
            raise ValueError(
                f"num_return_sequences ({nrs}) cannot exceed num_beams ({num_beams}) with beam search: "
                "a beam search returns at most num_beams hypotheses."
            )
        if num_beams == 1 and not gc.do_sample and nrs > 1:
            raise ValueError(
                f"Greedy search returns one sequence per input, not num_return_sequences={nrs}; set do_sample=True or "
                "num_beams >= num_return_sequences."
            )
        if gc.do_sample:
            if not gc.temperature or gc.temperature <= 0:
                raise ValueError(f"temperature must be > 0 when sampling, got {gc.temperature}; for greedy decoding set do_sample=False.")
            if gc.top_p is not None and not 0.0 <= gc.top_p <= 1.0:
                raise ValueError(f"top_p must be in [0, 1], got {gc.top_p}.")
            if gc.top_k is not None and gc.top_k < 0:
                raise ValueError(f"top_k must be >= 0, got {gc.top_k}.")
            if gc.min_p is not None and not 0.0 <= gc.min_p <= 1.0:
                raise ValueError(f"min_p must be in [0, 1], got {gc.min_p}.")
            if gc.typical_p is not None and not 0.0 < gc.typical_p <= 1.0:
                raise ValueError(f"typical_p must be in (0, 1] (1 disables it), got {gc.typical_p}.")
            for name in ("epsilon_cutoff", "eta_cutoff"):
                value = getattr(gc, name)
                if value is not None and not 0.0 <= value < 1.0:
                    raise ValueError(f"{name} must be in [0, 1) (0 disables it), got {value}.")
        if gc.repetition_penalty is not None and gc.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be > 0, got {gc.repetition_penalty}.")
        if gc.early_stopping not in (True, False, "never"):
            raise ValueError(f"early_stopping must be True, False or 'never', got {gc.early_stopping!r}.")

    def _generation_program(self, program: _Program):
        """The jitted program for these settings, shared by every model with the same class, module and dtype."""
        key = (type(self), self.module, program, self.mesh)
        if key not in _PROGRAMS:
            # a parameter-free copy: params are an argument of the program, never captured by it
            skeleton = type(self)._from_parts(self.config, None, jnp.dtype(self.dtype).name, self.mesh)
            _PROGRAMS[key] = jax.jit(functools.partial(_run_program, skeleton, program))
        return _PROGRAMS[key]


_PROGRAMS: dict = {}


# -- the compiled program -----------------------------------------------------------------------------------------------
def _run_program(model, program: _Program, params, input_ids, attention_mask, first_token, dyn, key):
    global TRACE_COUNT
    TRACE_COUNT += 1
    batch, t_in = input_ids.shape
    s = program.buffer_length
    max_positions = s if not program.is_encoder_decoder else s
    # encoder-decoders get the resolved start token (generate(decoder_start_token_id=...) may override the config's)
    extra = {"decoder_start_token_id": program.decoder_start_token_id} if program.is_encoder_decoder else {}
    if getattr(model, "needs_prompt_offset", False):  # models whose cache logic counts the caller's columns (Phi-3)
        extra["prompt_offset"] = dyn["start"]
    logits, state = model.prepare_generation(params, input_ids, attention_mask, max_positions, **extra)
    state = constrain_kv_cache(state, model.mesh)  # on a mesh: cache split over batch and heads
    buffer = jnp.full((batch, s), program.pad_token_id, jnp.int32)
    if program.is_encoder_decoder:
        buffer = buffer.at[:, 0].set(program.decoder_start_token_id)
    else:
        buffer = buffer.at[:, :t_in].set(input_ids.astype(jnp.int32))
    n = program.expand
    if n > 1:
        repeat = lambda a: jnp.repeat(a, n, axis=0)
        logits, state, buffer, first_token = repeat(logits), jax.tree_util.tree_map(repeat, state), repeat(buffer), repeat(first_token)
        state = constrain_kv_cache(state, model.mesh)
    process = P.build(program.processors)
    new_cap = s - (1 if program.is_encoder_decoder else t_in)  # the most steps the loop can take
    if program.strategy == "beam":
        return _beam_search(model, program, process, params, logits, state, buffer, first_token, dyn, key, batch, new_cap)
    return _sample_or_greedy(model, program, process, params, logits, state, buffer, first_token, dyn, key, new_cap)


def _sample_or_greedy(model, program, process, params, logits, state, buffer, first_token, dyn, key, new_cap):
    rows = buffer.shape[0]
    eos = jnp.asarray(program.eos_token_ids or (-1,), jnp.int32)
    end_limit = dyn["prompt_end"] + dyn["max_new"]  # one past the last column to write
    names = [n for n, on in (("scores", program.output_scores), ("logits", program.output_logits)) if on]

    def cond(carry):
        pos, unfinished = carry[0], carry[4]
        return (pos < end_limit) & jnp.any(unfinished)

    def body(carry):
        pos, buffer, logits, state, unfinished, key, recorded = carry
        view = P.SequenceView(buffer, dyn["start"], pos, first_token)
        scores = process(logits, view, dyn)
        step = {"scores": scores, "logits": logits}  # [R, V] each, written at this step's slot
        recorded = {n: jax.lax.dynamic_update_slice_in_dim(recorded[n], step[n][:, None].astype(jnp.float32),
                                                           pos - dyn["prompt_end"], axis=1) for n in recorded}
        if program.strategy == "sample":
            key, sub = jax.random.split(key)
            tokens = jax.random.categorical(sub, scores, axis=-1).astype(jnp.int32)
        else:
            tokens = jnp.argmax(scores, axis=-1).astype(jnp.int32)
        if program.eos_token_ids:
            tokens = jnp.where(unfinished, tokens, program.pad_token_id)
        buffer = jax.lax.dynamic_update_slice(buffer, tokens[:, None], (jnp.zeros((), jnp.int32), pos))
        if program.stream:  # hand the step's tokens to the streamer on the host, in order
            io_callback(streamers.emit, None, tokens, dyn["stream_id"], ordered=True)
        if program.eos_token_ids:
            unfinished = unfinished & ~jnp.any(tokens[:, None] == eos[None, :], axis=-1)
        if program.stop_strings is not None:
            unfinished = unfinished & ~_stop_string_hits(program, buffer, pos, dyn)
        pos = pos + 1
        go_on = (pos < end_limit) & jnp.any(unfinished)
        logits, state = jax.lax.cond(
            go_on, lambda st: model.generation_step(params, st, tokens), lambda st: (logits, st), state
        )
        return pos, buffer, logits, state, unfinished, key, recorded

    recorded = {n: jnp.zeros((rows, new_cap, logits.shape[-1]), jnp.float32) for n in names}  # [R, new, V]
    carry = (dyn["prompt_end"], buffer, logits, state, jnp.ones((rows,), bool), key, recorded)
    pos, buffer, *_, recorded = jax.lax.while_loop(cond, body, carry)
    return buffer, pos, recorded


def _stop_string_hits(program: _Program, sequences: jax.Array, pos: jax.Array, dyn: dict) -> jax.Array:
    """[R] bool: the text of ``sequences`` [R, S] up to column ``pos`` ends with a stop string."""
    spec, table = program.stop_strings, dyn["stop_table"]
    first = 0 if program.is_encoder_decoder else dyn["start"]  # decoder-only: columns before start are filler
    flipped = stops.last_tokens(sequences, pos, first, spec.window, table.shape[0] - 1)
    return stops.hits(table, spec, flipped)


def _beam_search(model, program, process, params, logits, state, buffer, first_token, dyn, key, batch, new_cap):
    """Transformers' vectorised beam search (``GenerationMixin._beam_search``), step for step.

    With ``return_dict_in_generate`` it also carries ``extra``: per-step processed log-probs / raw logits
    [R, new, V] and the source beam of each token of the running and finished hypotheses [B, nb, new] (-1 = none)."""
    nb = program.expand
    s = buffer.shape[1]
    v = logits.shape[-1]
    n_eos = len(program.eos_token_ids)
    keep = max(2, 1 + n_eos) * nb
    eos = jnp.asarray(program.eos_token_ids or (-1,), jnp.int32)
    prompt_end, start = dyn["prompt_end"], dyn["start"]
    max_length = dyn["max_length"]  # in user coordinates (prompt + new)
    lp, early = program.length_penalty, program.early_stopping
    top_num_beam_mask = jnp.arange(keep) < nb
    neg = jnp.float32(-1.0e9)
    zero = jnp.zeros((), jnp.int32)

    running = buffer.reshape(batch, nb, s)
    cols = jnp.arange(s)
    running = jnp.where(cols[None, None, :] < prompt_end, running, program.beam_fill)
    sequences = running
    running_scores = jnp.zeros((batch, nb), jnp.float32).at[:, 1:].set(neg)
    beam_scores = jnp.full((batch, nb), neg, jnp.float32)
    finished_len = jnp.zeros((batch, nb), jnp.int32)  # generated tokens of each finished hypothesis
    is_finished = jnp.zeros((batch, nb), bool)
    heuristic = jnp.ones((batch, 1), bool)
    gather = lambda a, idx: jnp.take_along_axis(a, idx.reshape(idx.shape + (1,) * (a.ndim - 2)), axis=1)

    def body(carry):
        pos, running, running_scores, sequences, beam_scores, finished_len, is_finished, heuristic, logits, state, key, extra, _ = carry
        flat_running = running.reshape(batch * nb, s)
        view = P.SequenceView(flat_running, start, pos, first_token)
        log_probs = process(jax.nn.log_softmax(logits, axis=-1), view, dyn)
        step_index = pos - prompt_end
        extra = dict(extra)
        for name, value in (("scores", log_probs), ("logits", logits)):
            if name in extra:  # [R, new, V]: this step's slot
                extra[name] = jax.lax.dynamic_update_slice_in_dim(extra[name], value[:, None].astype(jnp.float32),
                                                                  step_index, axis=1)
        log_probs = (log_probs.reshape(batch, nb, v) + running_scores[:, :, None]).reshape(batch, nb * v)
        if program.processors.do_sample:
            key, sub = jax.random.split(key)
            gumbel = jax.random.gumbel(sub, log_probs.shape)
            idx = jax.lax.top_k(jnp.where(jnp.isneginf(log_probs), -jnp.inf, log_probs + gumbel), keep)[1]
            topk_log_probs = jnp.take_along_axis(log_probs, idx, axis=1)
        else:
            topk_log_probs, idx = jax.lax.top_k(log_probs, keep)  # [B, K]
        topk_beam, topk_ids = idx // v, (idx % v).astype(jnp.int32)
        topk_sequences = gather(running, topk_beam)  # [B, K, S]
        topk_sequences = jax.lax.dynamic_update_slice(
            topk_sequences, topk_ids[:, :, None], (jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32), pos)
        )
        if "beam_indices" in extra:  # the candidates' source beams, the new token's one numbered over the batch
            topk_bi = gather(extra["running_beam_indices"], topk_beam)  # [B, K, new]
            flat_beam = (topk_beam + jnp.arange(batch)[:, None] * nb).astype(jnp.int32)
            topk_bi = jax.lax.dynamic_update_slice(topk_bi, flat_beam[:, :, None], (zero, zero, step_index))
        hits = (pos + 1 - start >= max_length) | jnp.any(topk_ids[:, :, None] == eos[None, None, :], axis=-1)  # [B, K]
        if program.stop_strings is not None:
            hits = hits | _stop_string_hits(program, topk_sequences.reshape(batch * keep, s), pos, dyn).reshape(batch, keep)

        # running beams for the next step
        masked = topk_log_probs + hits.astype(jnp.float32) * neg
        next_idx = jax.lax.top_k(masked, nb)[1]  # [B, nb]
        new_running = gather(topk_sequences, next_idx)
        new_running_scores = jnp.take_along_axis(masked, next_idx, axis=1)
        if "beam_indices" in extra:
            extra["running_beam_indices"] = gather(topk_bi, next_idx)
        source_beam = jnp.take_along_axis(topk_beam, next_idx, axis=1) + jnp.arange(batch)[:, None] * nb  # [B, nb]

        # finished hypotheses
        just_finished = hits & top_num_beam_mask[None, :]
        gen_len = pos + 1 - prompt_end
        scores = topk_log_probs / (gen_len.astype(jnp.float32) ** lp)
        full = jnp.all(is_finished, axis=-1, keepdims=True) & (early is True)
        scores = scores + full.astype(jnp.float32) * neg + (~heuristic).astype(jnp.float32) * neg
        scores = scores + (~just_finished).astype(jnp.float32) * neg
        merged_seq = jnp.concatenate([sequences, topk_sequences], axis=1)
        merged_scores = jnp.concatenate([beam_scores, scores], axis=1)
        merged_len = jnp.concatenate([finished_len, jnp.broadcast_to(gen_len, hits.shape).astype(jnp.int32)], axis=1)
        merged_fin = jnp.concatenate([is_finished, just_finished], axis=1)
        top = jax.lax.top_k(merged_scores, nb)[1]
        sequences = gather(merged_seq, top)
        beam_scores = jnp.take_along_axis(merged_scores, top, axis=1)
        finished_len = jnp.take_along_axis(merged_len, top, axis=1)
        is_finished = jnp.take_along_axis(merged_fin, top, axis=1)
        if "beam_indices" in extra:
            extra["beam_indices"] = gather(jnp.concatenate([extra["beam_indices"], topk_bi], axis=1), top)

        pos = pos + 1
        # early-stop heuristic (Transformers' _check_early_stop_heuristic)
        if early == "never" and lp > 0.0:
            best_len = (max_length - dyn["prompt_length"]).astype(jnp.float32)
        else:
            best_len = (pos - prompt_end).astype(jnp.float32)
        best_running = new_running_scores[:, :1] / (best_len**lp)
        worst_finished = jnp.where(is_finished, jnp.min(beam_scores, axis=1, keepdims=True), -1.0e9)
        heuristic = heuristic & jnp.any(best_running > worst_finished, axis=-1, keepdims=True)
        go_on = jnp.any(heuristic) & ~(jnp.all(is_finished) & (early is True)) & ~jnp.all(hits) & (pos < s)

        def advance(st):
            st = jax.tree_util.tree_map(lambda a: jnp.take(a, source_beam.reshape(-1), axis=0), st)
            tokens = jax.lax.dynamic_slice_in_dim(new_running.reshape(batch * nb, s), pos - 1, 1, axis=1)[:, 0]
            return model.generation_step(params, st, tokens)

        logits, state = jax.lax.cond(go_on, advance, lambda st: (logits, st), state)
        return (pos, new_running, new_running_scores, sequences, beam_scores, finished_len, is_finished, heuristic,
                logits, state, key, extra, go_on)

    extra = {}
    rows = batch * nb
    if program.output_scores:
        extra["scores"] = jnp.zeros((rows, new_cap, v), jnp.float32)  # [R, new, V]
    if program.output_logits:
        extra["logits"] = jnp.zeros((rows, new_cap, v), jnp.float32)
    if program.beam_indices:
        extra["running_beam_indices"] = extra["beam_indices"] = jnp.full((batch, nb, new_cap), -1, jnp.int32)
    carry = (prompt_end, running, running_scores, sequences, beam_scores, finished_len, is_finished, heuristic,
             logits, state, key, extra, jnp.asarray(True))
    out = jax.lax.while_loop(lambda c: c[-1], body, carry)
    pos, sequences, beam_scores, finished_len, extra = out[0], out[3], out[4], out[5], out[11]
    nrs = program.num_return_sequences
    sequences = sequences[:, :nrs].reshape(batch * nrs, s)
    end = prompt_end + jnp.max(finished_len[:, :nrs])
    recorded = {}
    if program.beam_indices:
        recorded = {name: extra[name] for name in ("scores", "logits") if name in extra}
        recorded["steps"] = pos - prompt_end
        recorded["beam_indices"] = extra["beam_indices"][:, :nrs].reshape(batch * nrs, new_cap)
        if program.output_scores:
            recorded["sequences_scores"] = beam_scores[:, :nrs].reshape(batch * nrs)
    return sequences, end, recorded
