"""Turning a growing list of speech tokens into audio chunks that join without clicks.

Each chunk re-runs S3Gen on a window: some already-voiced tokens as left context plus the new ones.
The last few tokens of a window lack right context (the encoder looks 3 tokens ahead), so their audio
is held back and cross-faded with the next window's version of the same samples. The vocoder's
excitation for the overlap is handed over from the previous window so the harmonic phases match.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from .errors import InvalidParameterError
from .s3gen import S3Gen, S3GenReference, SynthesisWindow
from .s3gen.config import TOKEN_MEL_RATIO
from .s3gen.model import apply_trim_fade

SAMPLES_PER_TOKEN = 960  # 25 Hz tokens at 24 kHz
FADE_OUT_SAMPLES = 480  # 20 ms at the end of each sentence-aligned piece


@dataclass(frozen=True)
class ChunkPlan:
    """Chunk sizes in speech tokens (25 per second of audio).

    After the small first chunk, chunks double from `chunk_tokens` up to `max_chunk_tokens`. Every chunk
    re-renders the voice's reference prompt and some left context through S3Gen, so fewer, larger chunks
    later in an utterance cut that repeated work (and give S3Gen more context), while the first chunks
    stay small for an early start. The schedule depends only on the count of chunks rendered, so streams
    decoded in step keep equal window shapes (S3Gen batching).
    """

    first_chunk_tokens: int = 10  # small, for a quick first packet (0.4 s)
    chunk_tokens: int = 25  # then one second of audio
    max_chunk_tokens: int = 100  # doubling up to four seconds per chunk
    context_tokens: int = 25  # left context re-run through S3Gen for continuity
    overlap_tokens: int = 3  # held back and cross-faded (the encoder's lookahead)
    # False: text pieces (sentences) after the first start at chunk_tokens. Where decoding is slower than
    # real time the listener is still waiting for the previous piece's audio to catch up, so a small
    # first chunk there buys nothing and costs a prompt re-render.
    small_start_every_piece: bool = True
    # Opt-in, changes the audio: windows after a piece's first condition S3Gen on only the last this many
    # tokens of the voice's reference prompt (its mel frames with them; same speaker embedding), so they
    # skip most of the prompt's re-render. None: every window carries the whole prompt (exact streaming).
    continuation_prompt_tokens: int | None = None

    def for_piece(self, piece: int) -> ChunkPlan:
        """The plan for text piece `piece` (0-based) of an utterance."""
        if piece == 0 or self.small_start_every_piece:
            return self
        return replace(self, first_chunk_tokens=self.chunk_tokens)

    def with_continuation_prompt(self, tokens: int | None) -> ChunkPlan:
        """This plan with `continuation_prompt_tokens` (1-250, or None: the whole prompt)."""
        if tokens is not None and (
            isinstance(tokens, bool) or not isinstance(tokens, int) or not 1 <= tokens <= 250
        ):
            raise InvalidParameterError(
                f"continuation prompt must be 1-250 tokens, got {tokens!r}", "continuation_prompt_tokens"
            )
        return replace(self, continuation_prompt_tokens=tokens)

    @classmethod
    def fixed(cls, chunk_tokens: int) -> ChunkPlan:
        """Chunks of `chunk_tokens` (1-500) each, kept, not grown; the first no larger than the default's."""
        if (
            isinstance(chunk_tokens, bool)
            or not isinstance(chunk_tokens, int)
            or not 1 <= chunk_tokens <= 500
        ):
            raise InvalidParameterError(
                f"chunk_tokens must be between 1 and 500, got {chunk_tokens!r}", "chunk_tokens"
            )
        first = min(cls.first_chunk_tokens, chunk_tokens)
        return cls(first_chunk_tokens=first, chunk_tokens=chunk_tokens, max_chunk_tokens=chunk_tokens)

    def chunk_size(self, chunks_rendered: int) -> int:
        if chunks_rendered == 0:
            return self.first_chunk_tokens
        return min(
            self.chunk_tokens << min(chunks_rendered - 1, 16), max(self.max_chunk_tokens, self.chunk_tokens)
        )


# Named plans (server setting `stream_chunk_plan`). The first chunk is the same in both.
CHUNK_PLANS = {
    # Decoding faster than real time (GPU): chunks grow from 1 s to 4 s so the player never runs dry.
    "realtime": ChunkPlan(),
    # Decoding slower than real time (CPU): each chunk's audio has played out long before the next one is
    # decoded, so small later chunks buy the listener nothing while each re-renders the voice's prompt
    # through S3Gen. After the 0.4 s first chunk: 4 s, then 8 s, then 16 s per window; later sentences
    # start at 4 s.
    "throughput": ChunkPlan(chunk_tokens=100, max_chunk_tokens=400, small_start_every_piece=False),
}
# Which plan a device gets by default ("auto"): CPUs decode full-size Chatterbox far slower than real time.
DEVICE_CHUNK_PLANS = {"cpu": "throughput", "cuda": "realtime"}


def chunk_plan_name(name: str, device: torch.device | str) -> str:
    """A name of `CHUNK_PLANS` checked, or "auto" resolved to the device's (`DEVICE_CHUNK_PLANS`; others:
    realtime)."""
    if name == "auto":
        name = DEVICE_CHUNK_PLANS.get(torch.device(device).type, "realtime")
    if name not in CHUNK_PLANS:
        raise InvalidParameterError(
            f"chunk plan must be auto or one of {sorted(CHUNK_PLANS)}, got {name!r}", "chunk_plan"
        )
    return name


class ChunkRenderer:
    """Renders the audio of one utterance's tokens incrementally (one instance per utterance).

    A chunk is two halves, so the engine's loop can render many streams' windows in one S3Gen call:
    `window(end)` gives the S3Gen window for the tokens up to end, `take(end, final, wav, excitation)` turns
    what S3Gen made of it into the chunk's audio."""

    def __init__(
        self,
        s3gen: S3Gen,
        ref: S3GenReference,
        generator: torch.Generator,
        plan: ChunkPlan,
        drop_last_token: bool = False,
    ) -> None:
        self.s3gen, self.ref, self.generator, self.plan = s3gen, ref, generator, plan
        # Multilingual v3: the final audio stops one token early, as its one-shot cut of
        # `(tokens - 1) * 960` samples does (one token is always kept).
        self.drop_last_token = drop_last_token
        self.tokens: list[int] = []
        # Positions are samples on the utterance timeline, where token k ends at (k + 1) * 960.
        self.emitted_until: int | None = None  # timeline position up to which audio was returned
        self.started_at = 0  # timeline position of the first returned sample
        self.tail = np.zeros(0, dtype=np.float32)  # held-back samples starting at emitted_until
        self.excitation: torch.Tensor | None = None  # vocoder source of the previous window
        self.excitation_start = 0
        self.rendered_tokens = 0
        self.chunks_rendered = 0
        self.continuation_ref = prompt_tail(ref, plan.continuation_prompt_tokens)

    def next_chunk_due(self) -> bool:
        return len(self.tokens) - self.rendered_tokens >= self.plan.chunk_size(self.chunks_rendered)

    def _window_ref(self) -> S3GenReference:
        """The reference the next window renders with: the whole prompt for the first, then the plan's."""
        return self.ref if self.chunks_rendered == 0 else self.continuation_ref

    def _span(self, end: int) -> tuple[int, int]:
        """The window's first token (left context included) and the timeline sample its audio starts at."""
        start = max(0, min(self.rendered_tokens, end - 1) - self.plan.context_tokens)
        # Align the window by its end: a reference with an odd extra prompt frame makes S3Gen drop the
        # first output frame, so the window may start 480 samples after its first token.
        frames = self._window_ref().output_frames(end - start)
        return start, end * SAMPLES_PER_TOKEN - frames * (SAMPLES_PER_TOKEN // 2)

    def window_key(self, end: int) -> tuple[int, int, int]:
        """`SynthesisWindow.batch_key` of `window(end)`, without building it."""
        start, _ = self._span(end)
        ref = self._window_ref()
        return (end - start, ref.prompt_token.size(-1), ref.prompt_feat.size(1))

    def window(self, end: int) -> SynthesisWindow:
        """The S3Gen window for the tokens up to end (end > 0), after the chunks taken so far."""
        start, window_start = self._span(end)
        source = None
        if self.excitation is not None:
            source = self.excitation[..., window_start - self.excitation_start :]
        tokens = torch.tensor([self.tokens[start:end]], dtype=torch.long)
        return SynthesisWindow(tokens, self._window_ref(), self.generator, source)

    def take(self, end: int, final: bool, wav: torch.Tensor, excitation: torch.Tensor) -> np.ndarray:
        """Audio of `window(end)` rendered as (wav (1, S), excitation (1, 1, S)); unless final, the last
        `overlap_tokens` worth is held back for the cross-fade with the next chunk."""
        start, window_start = self._span(end)
        self.excitation, self.excitation_start = excitation, window_start
        if start == 0:
            wav = apply_trim_fade(wav, self.s3gen.trim_fade)
        if self.emitted_until is None:
            self.emitted_until = self.started_at = window_start
        audio = wav[0].float().cpu().numpy()[self.emitted_until - window_start :]
        audio = crossfade(self.tail, audio)
        self.rendered_tokens = end
        self.chunks_rendered += 1
        if final:
            if self.drop_last_token:
                end_at = self.started_at + max(1, end - 1) * SAMPLES_PER_TOKEN
                audio = audio[: max(0, end_at - self.emitted_until)]
            self.tail = np.zeros(0, dtype=np.float32)
            self.emitted_until += len(audio)
            return fade_out(audio)
        keep = min(len(audio), self.plan.overlap_tokens * SAMPLES_PER_TOKEN)
        self.tail = audio[len(audio) - keep :]
        out = audio[: len(audio) - keep]
        self.emitted_until += len(out)
        return out


def prompt_tail(ref: S3GenReference, tokens: int | None) -> S3GenReference:
    """The reference cut to its prompt's last `tokens` tokens and their mel frames (an odd extra frame
    after the last token dropped); the whole reference when it is no longer or tokens is None."""
    n_prompt = ref.prompt_token.size(-1)
    if tokens is None or tokens >= n_prompt:
        return ref
    frames = TOKEN_MEL_RATIO * (n_prompt - tokens), TOKEN_MEL_RATIO * n_prompt
    return S3GenReference(
        ref.prompt_token[:, n_prompt - tokens :],
        torch.full_like(ref.prompt_token_len, tokens),
        ref.prompt_feat[:, frames[0] : frames[1]],
        ref.embedding,
    )


def fade_out(audio: np.ndarray, samples: int = FADE_OUT_SAMPLES) -> np.ndarray:
    """Raised-cosine fade over the last samples, so the next sentence (which starts from silence after
    S3Gen's trim/fade) joins without a step."""
    n = min(samples, audio.size)
    if n == 0:
        return audio
    out = audio.copy()
    out[-n:] *= np.cos(np.linspace(0.0, np.pi / 2, n, dtype=np.float32)) ** 2
    return out


def crossfade(tail: np.ndarray, audio: np.ndarray) -> np.ndarray:
    """Blend the held-back tail into the start of audio covering the same samples (raised-cosine, weights sum to 1)."""
    n = min(len(tail), len(audio))
    if n == 0:
        return audio
    ramp = np.sin(np.linspace(0.0, np.pi / 2, n, dtype=np.float32)) ** 2
    out = audio.copy()
    out[:n] = tail[:n] * (1.0 - ramp) + audio[:n] * ramp
    return out
