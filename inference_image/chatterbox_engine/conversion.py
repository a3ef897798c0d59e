"""Voice conversion: the words and timing of source speech, spoken in a target voice.

As upstream's `ChatterboxVC`: the source, resampled to 16 kHz, becomes S3 speech tokens (the tokenizer that
reference audio goes through), and S3Gen renders those tokens conditioned on the target voice's S3Gen
reference. T3 takes no part, so every variant converts, Turbo's meanflow S3Gen included.

Long sources render in windows by the streaming machinery (`streaming.ChunkRenderer`: left context,
held-back overlap, cross-fade, carried vocoder excitation), so S3Gen's attention and memory stay bounded
whatever the length. A source that fits one window renders in one S3Gen call, exactly as upstream does.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from .s3gen import S3Gen, S3GenReference
from .streaming import ChunkPlan, ChunkRenderer, RenderWindow

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


@dataclass(frozen=True)
class ConversionJob:
    """One validated conversion: the source's tokens and what makes the rendering this request's own."""

    tokens: list[int]  # S3 tokens of the source speech, at least one
    ref: S3GenReference  # the target voice's S3Gen reference, on the S3Gen device and dtype
    generator: torch.Generator  # S3Gen's noise (flow start, vocoder source), drawn in upstream's order


def source_tokens(s3gen: S3Gen, source16k: np.ndarray) -> list[int]:
    """S3 tokens of 16 kHz mono speech (sources over 30 s are tokenized in the tokenizer's own windows)."""
    codes, lengths = s3gen.tokenize(torch.from_numpy(source16k)[None])
    return codes[0, : int(lengths[0])].tolist()


def render_chunks(
    s3gen: S3Gen, job: ConversionJob, plan: ChunkPlan, render_window: RenderWindow | None = None
) -> Iterator[tuple[np.ndarray, int, bool]]:
    """(audio, tokens covered so far, is_last) per window, as `plan` sizes them; the audio joins seamlessly.

    The last token always goes into the final window, so a source no longer than the first chunk renders
    in one S3Gen call."""
    renderer = ChunkRenderer(s3gen, job.ref, job.generator, plan, render_window)
    for token in job.tokens[:-1]:
        renderer.tokens.append(token)
        if renderer.next_chunk_due():
            audio = renderer.render(final=False)
            if audio.size:  # all of it may be held back for the cross-fade (tiny chunks)
                yield audio, renderer.rendered_tokens, False
    renderer.tokens.append(job.tokens[-1])
    yield renderer.render(final=True), len(job.tokens), True
