"""The public engine: voices in, 24 kHz audio out, one-shot or streamed.

`Engine` holds read-only networks; every call owns its KV cache and `torch.Generator`, so worker
threads may call it concurrently and identical arguments with a seed give identical audio.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .batching import DecodeBatcher
from .conversion import (
    MIN_SOURCE_SECONDS,
    ONE_SHOT_PLAN,
    Conversion,
    ConversionJob,
    render_chunks,
    source_tokens,
)
from .decoding import StepStats, decode_speech_tokens
from .errors import InvalidAudioError, InvalidParameterError
from .loading import Models, write_models
from .request import GenerationRequest, RequestBuilder, check_seed
from .runtime import stage_dtypes
from .s3gen.config import S3_SR, S3GEN_SR
from .s3gen_batching import MAX_WINDOWS, WindowBatcher, WindowBatchStats
from .streaming import SAMPLES_PER_TOKEN, ChunkPlan, ChunkRenderer, RenderWindow, fade_out
from .variants import S3GEN_SILENCE_TOKEN
from .voice import Voice, check_reference, check_voice, default_reference, resample
from .watermark import Watermarker

SAMPLE_RATE = S3GEN_SR


@dataclass(frozen=True)
class Synthesis:
    audio: np.ndarray  # float32, 1-D, at sample_rate
    sample_rate: int
    num_tokens: int
    t3_seconds: float
    s3gen_seconds: float


@dataclass(frozen=True)
class AudioChunk:
    audio: np.ndarray  # float32, 1-D, at 24 kHz
    num_tokens: int  # speech tokens covered so far
    is_last: bool


class Engine:
    """Chatterbox text-to-speech on one device. Build it with `chatterbox_engine.load`."""

    sample_rate = SAMPLE_RATE
    _batcher: DecodeBatcher | None = None  # set by enable_batching
    _window_batcher: WindowBatcher | None = None  # set by enable_batching

    def __init__(
        self, models: Models, *, source: str, device: str, dtype: torch.dtype, watermark: bool
    ) -> None:
        self.models = models
        self.device = torch.device(device)
        stages = stage_dtypes(self.device, dtype)  # e.g. bf16 T3 with fp32 S3Gen on a CPU without bf16 math
        self.t3 = models.t3.to(self.device, stages.t3)
        self.voice_encoder = models.voice_encoder.to(self.device)
        # S3Gen casts only its synthesis path; its reference front end stays fp32 whatever the dtype.
        self.s3gen = models.s3gen.to(self.device, stages.s3gen)
        self.tokenizer = models.tokenizer
        self.spec = models.spec
        self.variant = self.spec.name
        self.watermarker = Watermarker(SAMPLE_RATE) if watermark else None
        self.info = {
            "model": source,
            "variant": self.spec.family,
            "version": self.spec.version,
            "device": str(self.device),
            "dtype": str(dtype).removeprefix("torch."),
            "stage_dtypes": stages.describe(),
            "watermark": watermark,
        }
        # Random-weight models have no built-in voice (`conds.pt`): embed a synthetic one.
        self.default_voice = models.default_voice or self.embed_voice(*default_reference(self.spec))
        # engine.request(text, voice, **knobs) -> a validated GenerationRequest for generate / generate_stream.
        self.request = RequestBuilder(
            self.spec, self.tokenizer, self.t3.cfg, self.s3gen_vocab_size, self.default_voice
        )

    @property
    def supported_languages(self) -> dict[str, str]:
        """Language code -> name this engine can speak (multilingual: those its front end supports here)."""
        return dict(self.tokenizer.languages)

    @property
    def unavailable_languages(self) -> dict[str, str]:
        """Language code -> why this install cannot speak it (multilingual: e.g. zh without its segmenter)."""
        return dict(self.tokenizer.unavailable)

    @property
    def paralinguistic_tags(self) -> tuple[str, ...]:
        """Tags such as `[laugh]` this model voices as events (Turbo, Nano); other models drop them."""
        return self.tokenizer.tags

    @property
    def ignored_parameters(self) -> tuple[str, ...]:
        """generate() arguments this variant accepts but has no use for (e.g. Turbo: cfg_weight)."""
        return self.spec.ignored_parameters

    def enable_batching(
        self,
        max_requests: int = 8,
        on_step: Callable[[StepStats], None] | None = None,
        batch_s3gen: bool = True,
        on_s3gen_batch: Callable[[WindowBatchStats], None] | None = None,
    ) -> bool:
        """Share the model between concurrent calls: their T3 tokens decode in one continuous batch
        (`batching.py`, at most max_requests at once; on_step(StepStats) after every batched step), and
        with batch_s3gen concurrent streams' chunk windows of equal shape run through S3Gen together
        (`s3gen_batching.py`; on_s3gen_batch(WindowBatchStats) after every S3Gen call). A seed gives the
        same tokens batched or alone, and the same audio (up to float rounding where S3Gen calls were
        shared). Every variant batches; returns True."""
        if batch_s3gen:
            self._window_batcher = WindowBatcher(
                self.s3gen, max_windows=min(max_requests, MAX_WINDOWS), on_batch=on_s3gen_batch
            )
        self._batcher = DecodeBatcher(self.t3, max_requests=max_requests, on_step=on_step)
        return True

    def save_checkpoint(self, folder) -> None:
        """Write this engine's weights, tokenizer and default voice in the official layout."""
        write_models(self.models, folder, self.default_voice)

    # -- voices -------------------------------------------------------------------------------------------

    def embed_voice(self, audio: np.ndarray | torch.Tensor, sample_rate: int) -> Voice:
        """Compute a reusable Voice from a mono float reference recording (>= 2 s; Turbo > 5 s)."""
        prompt_len = self.t3.cfg.speech_cond_prompt_len
        return Voice.from_reference(audio, sample_rate, self.spec, self.s3gen, self.voice_encoder, prompt_len)

    # -- synthesis ----------------------------------------------------------------------------------------

    @torch.inference_mode()
    def _token_streams(
        self, request: GenerationRequest, generator: torch.Generator
    ) -> Iterator[Iterator[int]]:
        """One speech-token iterator per text piece, all conditioned on the same voice."""
        voice, params = request.voice, request.sampling
        dtype = self.t3.speech_head.weight.dtype
        cond = self.t3.embed_conditioning(  # Turbo's T3 has no emotion input and ignores exaggeration
            voice.speaker_emb.to(self.device, dtype),
            voice.prompt_tokens.to(self.device),
            torch.tensor([request.exaggeration], device=self.device, dtype=dtype),
        )
        for text_tokens in request.text_pieces:
            text_tokens = text_tokens.to(self.device)
            if self._batcher is not None:
                yield self._batcher.submit(cond, text_tokens, params, generator, request.max_new_tokens)
            else:
                yield decode_speech_tokens(
                    self.t3, cond, text_tokens, params, generator, request.max_new_tokens
                )

    def _tail_tokens(self) -> list[int]:
        """Tokens appended after each piece before vocoding (Turbo: three S3GEN_SIL)."""
        return [S3GEN_SILENCE_TOKEN] * self.spec.trailing_silence_tokens

    def _generators(self, seed: int) -> tuple[torch.Generator, torch.Generator]:
        """Separate streams for token sampling and S3Gen noise, so a streamed request samples the
        same tokens as a one-shot one although its S3Gen calls interleave with decoding."""
        t3_generator = torch.Generator(self.device).manual_seed(seed)
        s3gen_generator = torch.Generator(self.device).manual_seed((seed + 0x5EED) % 2**63)
        return t3_generator, s3gen_generator

    def _finish(self, audio: np.ndarray) -> np.ndarray:
        audio = audio.astype(np.float32, copy=False)
        return self.watermarker.apply(audio) if self.watermarker else audio

    @torch.inference_mode()
    def generate(
        self, request: GenerationRequest | str, voice: Voice | None = None, **options: Any
    ) -> Synthesis:
        """Synthesise a request (`Engine.request`; or text, voice and its options) in one go; long text
        is split at sentence boundaries and concatenated."""
        request = self.request.resolve(request, voice, options)
        t3_generator, s3gen_generator = self._generators(request.seed)
        ref = request.voice.s3gen_ref.to(self.device, self.s3gen.dtype)  # once, not per window
        parts, num_tokens, t3_seconds, s3gen_seconds = [], 0, 0.0, 0.0
        for token_stream in self._token_streams(request, t3_generator):
            started = time.perf_counter()
            tokens = [t for t in token_stream if t < self.s3gen_vocab_size]
            t3_seconds += time.perf_counter() - started
            num_tokens += len(tokens)
            if not tokens:
                continue
            tokens += self._tail_tokens()
            started = time.perf_counter()
            wav = self.s3gen.inference(torch.tensor([tokens]), ref, s3gen_generator)
            wav = wav[0].float().cpu().numpy()
            if self.spec.drop_last_token_audio:
                wav = wav[: max(1, len(tokens) - 1) * SAMPLES_PER_TOKEN]
            parts.append(fade_out(wav))
            s3gen_seconds += time.perf_counter() - started
        audio = np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
        return Synthesis(self._finish(audio), SAMPLE_RATE, num_tokens, t3_seconds, s3gen_seconds)

    @torch.inference_mode()
    def generate_stream(
        self,
        request: GenerationRequest | str,
        voice: Voice | None = None,
        *,
        chunk_tokens: int | None = None,
        **options: Any,
    ) -> Iterator[AudioChunk]:
        """Yield audio chunks of a request (`Engine.request`; or text, voice and its options) as speech
        tokens arrive: a small first chunk (0.4 s), then chunks doubling from 1 s to 4 s of audio
        (`streaming.ChunkPlan`); `chunk_tokens` fixes them at that many tokens.

        Input is validated before the first chunk; closing the iterator stops work at the next chunk.
        """
        request = self.request.resolve(request, voice, options)
        plan = ChunkPlan()
        if chunk_tokens is not None:
            if (
                isinstance(chunk_tokens, bool)
                or not isinstance(chunk_tokens, int)
                or not 1 <= chunk_tokens <= 500
            ):
                raise InvalidParameterError(
                    f"chunk_tokens must be between 1 and 500, got {chunk_tokens!r}", "chunk_tokens"
                )
            plan = ChunkPlan(
                first_chunk_tokens=min(plan.first_chunk_tokens, chunk_tokens),
                chunk_tokens=chunk_tokens,
                max_chunk_tokens=chunk_tokens,  # an explicit size is kept, not grown
            )
        return self._stream(request, plan)

    def _stream(self, request: GenerationRequest, plan: ChunkPlan) -> Iterator[AudioChunk]:
        with self._window_renderer() as render_window:
            yield from self._stream_chunks(request, plan, render_window)

    @contextmanager
    def _window_renderer(self) -> Iterator[RenderWindow | None]:
        """How a stream renders its windows while open: through the shared S3Gen batcher when batching is on
        (None: alone)."""
        if self._window_batcher is None:
            yield None
            return
        with self._window_batcher.stream() as batcher:
            yield batcher.render

    @torch.inference_mode()
    def _stream_chunks(
        self, request: GenerationRequest, plan: ChunkPlan, render_window: RenderWindow | None
    ) -> Iterator[AudioChunk]:
        t3_generator, s3gen_generator = self._generators(request.seed)
        ref = request.voice.s3gen_ref.to(self.device, self.s3gen.dtype)  # once, not per window
        covered = 0  # tokens of finished pieces
        last_piece = len(request.text_pieces) - 1
        for index, token_stream in enumerate(self._token_streams(request, t3_generator)):
            renderer = ChunkRenderer(self.s3gen, ref, s3gen_generator, plan, render_window)
            try:
                for token in token_stream:
                    if token >= self.s3gen_vocab_size:
                        continue
                    renderer.tokens.append(token)
                    if renderer.next_chunk_due():
                        audio = renderer.render(final=False)
                        if audio.size == 0:  # all of it held back for the cross-fade (tiny chunks)
                            continue
                        yield AudioChunk(
                            self._finish(audio), covered + renderer.rendered_tokens, is_last=False
                        )
            finally:
                # Stops decoding (and frees the KV cache) when the consumer closes the stream early.
                token_stream.close()
            spoken = len(renderer.tokens)
            if spoken:
                renderer.tokens.extend(self._tail_tokens())
            tail = renderer.render(final=True, drop_last_token=self.spec.drop_last_token_audio)
            covered += spoken
            if tail.size or index == last_piece:
                yield AudioChunk(self._finish(tail), covered, is_last=index == last_piece)

    # -- voice conversion ---------------------------------------------------------------------------------

    @torch.inference_mode()
    def convert(
        self, audio: np.ndarray | torch.Tensor, sample_rate: int, voice: Voice | None = None, *,
        seed: int | None = None,
    ) -> Conversion:  # fmt: skip
        """Speak the words of mono float source speech in `voice` (None: the built-in voice), in one go.

        Only S3Gen runs (`conversion.py`): long sources render in 10 s windows; one of up to 10 s is one
        S3Gen call. `seed` seeds S3Gen's noise as `torch.manual_seed(seed)` seeds upstream's."""
        started = time.perf_counter()
        job = self._conversion_job(audio, sample_rate, voice, seed)
        tokenized = time.perf_counter()
        parts = [chunk for chunk, _, _ in render_chunks(self.s3gen, job, ONE_SHOT_PLAN)]
        audio_out = self._finish(np.concatenate(parts))
        return Conversion(
            audio_out, SAMPLE_RATE, len(job.tokens), tokenized - started, time.perf_counter() - tokenized
        )

    def convert_stream(
        self, audio: np.ndarray | torch.Tensor, sample_rate: int, voice: Voice | None = None, *,
        seed: int | None = None,
    ) -> Iterator[AudioChunk]:  # fmt: skip
        """`convert` as chunks, sized and joined like `generate_stream`'s (a small first chunk, then 1-4 s),
        so conversion windows share S3Gen calls with speech streams when batching is on.

        Input is validated and tokenized before the first chunk; closing the iterator stops the work."""
        job = self._conversion_job(audio, sample_rate, voice, seed)
        return self._convert_chunks(job)

    @torch.inference_mode()
    def _convert_chunks(self, job: ConversionJob) -> Iterator[AudioChunk]:
        with self._window_renderer() as render_window:
            for audio, covered, is_last in render_chunks(self.s3gen, job, ChunkPlan(), render_window):
                yield AudioChunk(self._finish(audio), covered, is_last)

    @torch.inference_mode()
    def _conversion_job(self, audio, sample_rate, voice: Voice | None, seed: int | None) -> ConversionJob:
        """Validate everything, then tokenize the source: bad input fails before any S3Gen work."""
        source = check_reference(audio, sample_rate, MIN_SOURCE_SECONDS, what="source audio")
        seed = check_seed(seed)
        if voice is not None:
            check_voice(voice, self.t3.cfg, self.s3gen_vocab_size)
        # As upstream's ChatterboxVC: the source resampled to 16 kHz by librosa, tokenized whole.
        tokens = source_tokens(self.s3gen, resample(source, int(sample_rate), S3_SR))
        if not tokens:
            raise InvalidAudioError("source audio is too short to hold any speech")
        ref = (voice or self.default_voice).s3gen_ref.to(self.device, self.s3gen.dtype)
        return ConversionJob(tokens, ref, torch.Generator(self.device).manual_seed(seed))

    @property
    def s3gen_vocab_size(self) -> int:
        return self.t3.cfg.start_speech_token  # codes 0..6560; BOS/EOS and above are not audio
