"""Voice conversion: the words and timing of source speech, spoken in a target voice.

As upstream's `ChatterboxVC`: the source, resampled to 16 kHz, becomes S3 speech tokens (the tokenizer that
reference audio goes through), and S3Gen renders those tokens conditioned on the target voice's S3Gen
reference. T3 takes no part, so every variant converts, Turbo's meanflow S3Gen included.

Long sources render in windows by the streaming machinery (`streaming.ChunkRenderer`: left context,
held-back overlap, cross-fade, carried vocoder excitation) in the engine's loop (`engine_core.py`, a job
with `source_tokens`), so S3Gen's attention and memory stay bounded whatever the length. A source that fits
one window renders in one S3Gen call, exactly as upstream does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .errors import InvalidAudioError
from .s3gen import S3Gen
from .s3gen.config import S3_SR
from .streaming import ChunkPlan
from .voice import resample

# Shortest source accepted: a few 40 ms tokens (the tokenizer's STFT also needs more than its window).
MIN_SOURCE_SECONDS = 0.25
# One-shot conversion renders 10 s windows: a source of up to 10 s is one S3Gen call, as upstream's.
WINDOW_TOKENS = 250
ONE_SHOT_PLAN = ChunkPlan(
    first_chunk_tokens=WINDOW_TOKENS, chunk_tokens=WINDOW_TOKENS, max_chunk_tokens=WINDOW_TOKENS
)


@dataclass(frozen=True)
class Conversion:
    audio: np.ndarray  # float32, 1-D, at sample_rate
    sample_rate: int
    num_tokens: int  # S3 tokens of the source (25 per second)
    tokenize_seconds: float
    s3gen_seconds: float


def source_tokens(s3gen: S3Gen, source: np.ndarray, sample_rate: int) -> list[int]:
    """S3 tokens of checked mono source speech, as upstream's ChatterboxVC: resampled to 16 kHz by librosa,
    tokenized whole (over 30 s in the tokenizer's own windows). No token at all is an InvalidAudioError."""
    codes, lengths = s3gen.tokenize(torch.from_numpy(resample(source, int(sample_rate), S3_SR))[None])
    tokens = codes[0, : int(lengths[0])].tolist()
    if not tokens:
        raise InvalidAudioError("source audio is too short to hold any speech")
    return tokens
