"""What one synthesis asks for, checked once: `Engine.request(...)` builds a `GenerationRequest`, and
`generate` / `generate_stream` (and the server) take it. Every knob's default and range lives here or in
`sampling.py` (`SAMPLING_BOUNDS`); each variant's own defaults are its `VariantSpec.sampling`.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from torch import Tensor

from .errors import InvalidParameterError
from .sampling import SAMPLING_BOUNDS, Bounds, SamplingParams
from .voice import Voice

# Emotion intensity: upstream's default and its demo's range (Turbo has no emotion input).
DEFAULT_EXAGGERATION = 0.5
EXAGGERATION_BOUNDS = Bounds(0.0, 2.0)
# Speech tokens per sentence piece (25 per second of audio); upstream's default. The upper limit is the
# model's (`max_speech_tokens`).
DEFAULT_MAX_NEW_TOKENS = 1000
# Every knob a request may set, with its range (the server's API schema takes them from here).
KNOB_BOUNDS = {"exaggeration": EXAGGERATION_BOUNDS, **SAMPLING_BOUNDS}
MAX_SEED = 2**63 - 1  # torch.Generator seeds are 64-bit; the API stays in the signed range


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
