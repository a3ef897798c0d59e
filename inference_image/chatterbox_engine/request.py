"""What one synthesis asks for, checked once: `Engine.request(...)` builds a `GenerationRequest`, and
`generate` / `generate_stream` (and the server) take it. Every knob's default and range lives here or in
`sampling.py` (`SAMPLING_BOUNDS`); each variant's own defaults are its `VariantSpec.sampling`.
"""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from torch import Tensor

from .errors import InvalidParameterError, InvalidTextError
from .sampling import SAMPLING_BOUNDS, Bounds, SamplingParams
from .text import check_text, drop_tags, punc_norm, split_sentences
from .voice import Voice, check_voice

if TYPE_CHECKING:
    from .variants import VariantSpec

# Emotion intensity: upstream's default and its demo's range (Turbo has no emotion input).
DEFAULT_EXAGGERATION = 0.5
EXAGGERATION_BOUNDS = Bounds(0.0, 2.0)
# Speech tokens per sentence piece (25 per second of audio); upstream's default. The upper limit is the
# model's (`max_speech_tokens`).
DEFAULT_MAX_NEW_TOKENS = 1000
# Every knob a request may set, with its range (the server's API schema takes them from here).
KNOB_BOUNDS = {"exaggeration": EXAGGERATION_BOUNDS, **SAMPLING_BOUNDS}
MAX_SEED = 2**63 - 1  # torch.Generator seeds are 64-bit; the API stays in the signed range


def knob_defaults(spec: VariantSpec) -> dict[str, float]:
    """The value each knob this variant uses takes when a request leaves it out (`KNOB_BOUNDS` order);
    the knobs it ignores (`spec.ignored_parameters`) have none."""
    defaults = {"exaggeration": DEFAULT_EXAGGERATION, **asdict(spec.sampling)}
    return {name: defaults[name] for name in KNOB_BOUNDS if name not in spec.ignored_parameters}


@dataclass(frozen=True)
class GenerationRequest:
    """One validated synthesis: the text already normalised and tokenised per sentence piece."""

    text: str  # as the caller gave it
    text_pieces: tuple[Tensor, ...]  # (1, L) text tokens per sentence-aligned piece, in order
    voice: Voice
    language: str  # canonical code, "en" for the English-only variants
    sampling: SamplingParams
    exaggeration: float
    seed: int  # drawn at random when the caller gave none, so the result can be reproduced
    max_new_tokens: int  # per piece
    dropped_tags: tuple[str, ...] = ()  # paralinguistic tags removed from the text: this model has none


def check_seed(seed: object) -> int:
    """The caller's seed, or a fresh random one."""
    if seed is None:
        return secrets.randbits(63)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise InvalidParameterError(f"seed must be a non-negative integer below 2**63, got {seed!r}", "seed")
    return seed


def check_max_new_tokens(max_new_tokens: object, limit: int) -> int:
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int):
        raise InvalidParameterError(
            f"max_new_tokens must be an integer, got {max_new_tokens!r}", "max_new_tokens"
        )
    if not 1 <= max_new_tokens <= limit:
        raise InvalidParameterError(f"max_new_tokens must be between 1 and {limit}", "max_new_tokens")
    return max_new_tokens


class RequestBuilder:
    """Builds one model's GenerationRequests (`Engine.request`): its variant spec (defaults, punctuation),
    text front end, T3 limits, S3 token vocabulary size and built-in voice."""

    def __init__(self, spec: VariantSpec, tokenizer, t3_cfg, vocab_size: int, default_voice: Voice) -> None:
        self._spec = spec
        self._tokenizer = tokenizer
        self._t3_cfg = t3_cfg
        self._vocab_size = vocab_size
        self._default_voice = default_voice

    def __call__(
        self,
        text: str,
        voice: Voice | None = None,
        *,
        language: str | None = None,
        seed: int | None = None,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        exaggeration: float = DEFAULT_EXAGGERATION,
        cfg_weight: float | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        min_p: float | None = None,
        repetition_penalty: float | None = None,
    ) -> GenerationRequest:
        """Validate a synthesis up front, so bad input fails (a typed `EngineError`) before any work.

        `voice` None: the built-in voice. `language`: multilingual, one of `supported_languages`; the
        others, "en" or None. Sampling knobs left None take this variant's defaults (`spec.sampling`,
        e.g. Turbo top_p 0.95); `ignored_parameters` are accepted and have no effect. `seed` None draws
        one (kept in the request)."""
        check_text(text)
        spoken, dropped_tags = drop_tags(text, self._tokenizer.tags)
        language = self._tokenizer.check_language("en" if language is None else language)
        sampling = self._spec.sampling.with_overrides(
            cfg_weight=cfg_weight,
            temperature=temperature,
            top_p=top_p,
            min_p=min_p,
            repetition_penalty=repetition_penalty,
        )
        exaggeration = EXAGGERATION_BOUNDS.check("exaggeration", exaggeration)
        cfg = self._t3_cfg
        max_new_tokens = check_max_new_tokens(max_new_tokens, cfg.max_speech_tokens)
        seed = check_seed(seed)
        if voice is not None:
            check_voice(voice, self._t3_cfg, self._vocab_size)
        pieces = [
            self._tokenizer.text_tokens(punc_norm(piece, **self._spec.punctuation), language)
            for piece in split_sentences(spoken)
        ]
        if not pieces:
            raise InvalidTextError("text has nothing to speak")
        for tokens in pieces:
            if tokens.shape[1] > cfg.max_text_tokens:
                raise InvalidTextError(f"a sentence is too long: {tokens.shape[1]} text tokens")
        return GenerationRequest(
            text,
            tuple(pieces),
            voice or self._default_voice,
            language,
            sampling,
            exaggeration,
            seed,
            max_new_tokens,
            dropped_tags,
        )

    def resolve(
        self, request: GenerationRequest | str, voice: Voice | None, options: dict
    ) -> GenerationRequest:
        """generate(request), or the shorthand generate(text, voice, **options of this builder)."""
        if not isinstance(request, GenerationRequest):
            return self(request, voice, **options)
        if voice is not None or options:
            raise TypeError("pass a GenerationRequest alone: its voice and options are already set")
        return request
