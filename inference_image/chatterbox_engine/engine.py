"""The public engine: voices in, 24 kHz audio out, one-shot or streamed.

`Engine` holds read-only networks; every synthesis runs in its one loop thread (`engine_core.py`), which
batches concurrent calls (one shared KV cache, one T3 step for all) while each call keeps its own
`torch.Generator`s, so any thread may call it and identical arguments with a seed give identical audio.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .conversion import MIN_SOURCE_SECONDS, ONE_SHOT_PLAN, Conversion, source_tokens
from .decoding import StepStats
from .engine_core import AudioChunk, EngineCore, Job, SchedulerConfig, WindowBatchStats
from .loading import Models, write_models
from .request import GenerationRequest, RequestBuilder, check_seed
from .runtime import stage_dtypes
from .s3gen.config import S3GEN_SR
from .streaming import CHUNK_PLANS, ChunkPlan, chunk_plan_name
from .variants import S3GEN_SILENCE_TOKEN
from .voice import Voice, check_reference, check_voice, default_reference
from .watermark import Watermarker

SAMPLE_RATE = S3GEN_SR


@dataclass(frozen=True)
class Synthesis:
    audio: np.ndarray  # float32, 1-D, at sample_rate
    sample_rate: int
    num_tokens: int
    t3_seconds: float
    s3gen_seconds: float


class Engine:
    """Chatterbox text-to-speech on one device. Build it with `chatterbox_engine.load`."""

    sample_rate = SAMPLE_RATE

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
        self._core = self._new_core(SchedulerConfig())
        self.use_chunk_plan("auto")

    def use_chunk_plan(self, name: str, continuation_prompt_tokens: int | None = None) -> ChunkPlan:
        """Stream in the named plan of `streaming.CHUNK_PLANS` ("realtime": chunks of 1-4 s for devices
        faster than real time; "throughput": 4-16 s after the first, fewer S3Gen prompt re-renders for
        slower ones), or "auto", the device's (CPU: throughput, GPU: realtime). The first chunk is the
        same in all. Every stream gets the same plan, so streams decoded in step batch their windows.

        `continuation_prompt_tokens` (opt-in, changes the audio; drift in benchmarks/RESULTS.md): windows
        after a sentence's first condition S3Gen on only that many of the voice prompt's last tokens."""
        name = chunk_plan_name(name, self.device)
        plan = CHUNK_PLANS[name].with_continuation_prompt(continuation_prompt_tokens)
        self.chunk_plan = plan  # generate_stream's and convert_stream's
        self.info["chunk_plan"] = name
        if continuation_prompt_tokens is None:
            self.info.pop("continuation_prompt_tokens", None)
        else:
            self.info["continuation_prompt_tokens"] = continuation_prompt_tokens
        return plan

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
        overlap_s3gen: bool | None = None,
    ) -> bool:
        """Set up the loop every call runs in (`engine_core.py`) before the first one: at most max_requests
        decode in one T3 batch (a seed gives the same tokens batched or alone; on_step(StepStats) after
        every step), and with batch_s3gen concurrent streams' chunk windows of equal shape share S3Gen
        calls (the same audio up to float rounding; on_s3gen_batch(WindowBatchStats) after each).
        overlap_s3gen: S3Gen on its own thread while T3 decodes (True/False; None keeps the loop's setting,
        by default on where it wins, `engine_core.overlap_wins`; True on a GPU is refused). Every
        variant batches; returns True. A setup step: refused (RuntimeError) while requests run, so none is
        cut off; the idle loop it replaces is stopped and its thread joined."""
        replaced = self._core
        overlap = replaced.config.overlap_s3gen if overlap_s3gen is None else overlap_s3gen
        config = SchedulerConfig.batching(
            max_requests, batch_s3gen, replaced.config.prefill_length_slack, overlap
        )
        if replaced.active_requests:
            raise RuntimeError(f"{replaced.active_requests} requests run: enable_batching before any")
        self._core = self._new_core(config, on_step, on_s3gen_batch)
        # A call that read the old loop before the swap ends with EngineStopped, whether it submitted before
        # this stop or after (closed: it does not start the old loop again).
        replaced.closed = True
        replaced.stop()
        return True

    def _new_core(self, config: SchedulerConfig, on_step=None, on_s3gen_batch=None) -> EngineCore:
        return EngineCore(
            self.t3,
            self.s3gen,
            finish_audio=self._finish,
            tail_tokens=[S3GEN_SILENCE_TOKEN] * self.spec.trailing_silence_tokens,  # Turbo: three
            drop_last_token_audio=self.spec.drop_last_token_audio,
            config=config,
            on_step=on_step,
            on_s3gen_batch=on_s3gen_batch,
        )

    @property
    def loop_busy_s(self) -> float:
        """Seconds the engine's loop has been in its current step (0 while it waits for work): liveness."""
        return self._core.busy_s

    @property
    def loop_alive(self) -> bool:
        """False once the engine's loop thread died of an error: requests fail at once (liveness)."""
        return self._core.alive

    def close(self, timeout_s: float | None = None) -> None:
        """Shut the loop down: requests still running end with `EngineStopped`, the thread is joined (the
        engine stays usable: a later call starts the loop again)."""
        self._core.stop(timeout_s)

    def save_checkpoint(self, folder) -> None:
        """Write this engine's weights, tokenizer and default voice in the official layout."""
        write_models(self.models, folder, self.default_voice)

    # -- voices -------------------------------------------------------------------------------------------

    def embed_voice(self, audio: np.ndarray | torch.Tensor, sample_rate: int) -> Voice:
        """Compute a reusable Voice from a mono float reference recording (>= 2 s; Turbo > 5 s)."""
        prompt_len = self.t3.cfg.speech_cond_prompt_len
        return Voice.from_reference(audio, sample_rate, self.spec, self.s3gen, self.voice_encoder, prompt_len)

    # -- synthesis ----------------------------------------------------------------------------------------

    def _generators(self, seed: int) -> tuple[torch.Generator, torch.Generator]:
        """Separate streams for token sampling and S3Gen noise, so a streamed request samples the
        same tokens as a one-shot one although its S3Gen calls interleave with decoding."""
        t3_generator = torch.Generator(self.device).manual_seed(seed)
        s3gen_generator = torch.Generator(self.device).manual_seed((seed + 0x5EED) % 2**63)
        return t3_generator, s3gen_generator

    def _finish(self, audio: np.ndarray) -> np.ndarray:
        audio = audio.astype(np.float32, copy=False)
        return self.watermarker.apply(audio) if self.watermarker else audio

    def generate(
        self, request: GenerationRequest | str, voice: Voice | None = None, **options: Any
    ) -> Synthesis:
        """Synthesise a request (`Engine.request`; or text, voice and its options) in one go; long text
        is split at sentence boundaries and concatenated."""
        request = self.request.resolve(request, voice, options)
        outputs = self._core.outputs(self.speech_job(request, streamed=False))
        parts = [chunk.audio for chunk in outputs]
        audio = np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
        done = outputs.finished
        return Synthesis(
            self._finish(audio), SAMPLE_RATE, done.num_tokens, done.t3_seconds, done.s3gen_seconds
        )

    def generate_stream(
        self,
        request: GenerationRequest | str,
        voice: Voice | None = None,
        *,
        chunk_tokens: int | None = None,
        **options: Any,
    ) -> Iterator[AudioChunk]:
        """Yield audio chunks of a request (`Engine.request`; or text, voice and its options) as speech
        tokens arrive: a small first chunk (0.4 s), then larger ones as `use_chunk_plan` set (by default
        the device's: doubling from 1 s to 4 s on a GPU, 4 s to 16 s on a CPU); `chunk_tokens` fixes
        them at that many tokens.

        Input is validated before the first chunk; closing the iterator stops work at the next step.
        """
        request = self.request.resolve(request, voice, options)
        return self._chunks(self.speech_job(request, chunk_tokens=chunk_tokens))

    def start(self, job: Job, sink: Callable[[object], None]) -> Callable[[], None]:
        """Run a job (`speech_job`, `conversion_job`) for a caller that waits on its own queue (the server's
        event loop): the loop thread hands sink each `AudioChunk`, then `engine_core.Finished` (or the
        exception). Returns the function that cancels the rest of the work."""
        core = self._core
        request = core.submit(job, sink)
        return lambda: core.cancel(request)

    def speech_job(
        self, request: GenerationRequest, *, chunk_tokens: int | None = None, streamed: bool = True
    ) -> Job:
        """The loop's job for a validated request: streamed in chunks (`generate_stream`), or one chunk
        per sentence piece, left unwatermarked for the caller to join (`generate`)."""
        t3_generator, s3gen_generator = self._generators(request.seed)
        ref = request.voice.s3gen_ref.to(self.device, self.s3gen.dtype)  # once, not per window
        plan = None  # one chunk per sentence piece
        if streamed:
            plan = self.chunk_plan if chunk_tokens is None else ChunkPlan.fixed(chunk_tokens)
        return Job(ref, s3gen_generator, plan, generation=request, t3_generator=t3_generator)

    def _chunks(self, job: Job) -> Iterator[AudioChunk]:
        outputs = self._core.outputs(job)  # submitted at the first next(), not when the stream is made
        try:
            yield from outputs
        finally:
            outputs.close()

    # -- voice conversion ---------------------------------------------------------------------------------

    def convert(
        self, audio: np.ndarray | torch.Tensor, sample_rate: int, voice: Voice | None = None, *,
        seed: int | None = None,
    ) -> Conversion:  # fmt: skip
        """Speak the words of mono float source speech in `voice` (None: the built-in voice), in one go.

        Only S3Gen runs (`conversion.py`): long sources render in 10 s windows; one of up to 10 s is one
        S3Gen call. `seed` seeds S3Gen's noise as `torch.manual_seed(seed)` seeds upstream's."""
        started = time.perf_counter()
        job = self.conversion_job(audio, sample_rate, voice, seed=seed, streamed=False)
        tokenized = time.perf_counter()
        outputs = self._core.outputs(job)
        audio_out = self._finish(np.concatenate([chunk.audio for chunk in outputs]))
        rendered = time.perf_counter()
        return Conversion(
            audio_out, SAMPLE_RATE, len(job.source_tokens), tokenized - started, rendered - tokenized
        )

    def convert_stream(
        self, audio: np.ndarray | torch.Tensor, sample_rate: int, voice: Voice | None = None, *,
        seed: int | None = None,
    ) -> Iterator[AudioChunk]:  # fmt: skip
        """`convert` as chunks, sized and joined like `generate_stream`'s (`use_chunk_plan`),
        so conversion windows share S3Gen calls with speech streams when batching is on.

        Input is validated and tokenized before the first chunk; closing the iterator stops the work."""
        return self._chunks(self.conversion_job(audio, sample_rate, voice, seed=seed))

    @torch.inference_mode()
    def conversion_job(
        self, audio, sample_rate, voice: Voice | None = None, *,
        seed: int | None = None, streamed: bool = True,
    ) -> Job:  # fmt: skip
        """The loop's job for a conversion: validate everything, then tokenize the source (bad input fails
        before any S3Gen work). Streamed in `generate_stream`'s chunks, or in 10 s windows left
        unwatermarked for the caller to join (`convert`)."""
        source = check_reference(audio, sample_rate, MIN_SOURCE_SECONDS, what="source audio")
        seed = check_seed(seed)
        if voice is not None:
            check_voice(voice, self.t3.cfg, self.s3gen_vocab_size)
        tokens = source_tokens(self.s3gen, source, sample_rate)
        ref = (voice or self.default_voice).s3gen_ref.to(self.device, self.s3gen.dtype)
        generator = torch.Generator(self.device).manual_seed(seed)
        plan = self.chunk_plan if streamed else ONE_SHOT_PLAN
        return Job(ref, generator, plan, watermark_chunks=streamed, source_tokens=tuple(tokens))

    @property
    def s3gen_vocab_size(self) -> int:
        return self.t3.cfg.start_speech_token  # codes 0..6560; BOS/EOS and above are not audio
