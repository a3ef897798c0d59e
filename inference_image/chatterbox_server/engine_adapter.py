"""The only module that calls the engine (`chatterbox_engine`) and touches torch.

Everything else in the server sees plain numpy audio, opaque voice and request objects and
`errors.APIError`s (the API schema only reads the engine's knob bounds and defaults).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InvalidRequest, NotReady

logger = logging.getLogger(__name__)


class ModelLoadError(RuntimeError):
    """The configured model could not be loaded; the server cannot start."""


@dataclasses.dataclass(frozen=True)
class AudioPiece:
    """Audio made so far by one generation call: new samples plus the speech-token count so far."""

    audio: np.ndarray
    num_tokens: int


class EngineAdapter:
    def __init__(self, engine: Any) -> None:
        import chatterbox_engine

        self._ce = chatterbox_engine
        self._engine = engine

    @classmethod
    def load(
        cls,
        source: str,
        *,
        device: str,
        dtype: str,
        watermark: bool,
        cache_dir: str | None,
        variant: str | None = None,
        version: str | None = None,
    ):
        import chatterbox_engine

        device = _resolve_device(device)
        logger.info("loading model %s on %s (%s)", source, device, dtype)
        try:
            engine = chatterbox_engine.load(
                source,
                device=device,
                dtype=dtype,
                watermark=watermark,
                cache_dir=cache_dir,
                variant=variant,
                version=version,
            )
        except Exception as error:
            hint = (
                ""
                if source.startswith("random:")
                else " For an offline demo set CHATTERBOX_MODEL=random:tiny."
            )
            raise ModelLoadError(
                f"could not load model {source!r}: {str(error).rstrip('.')}.{hint}"
            ) from error
        return cls(engine)

    @property
    def on_gpu(self) -> bool:
        return str(self.info.get("device", "")).startswith("cuda")

    @property
    def default_max_concurrent(self) -> int:
        """The batch size when MAX_CONCURRENT is unset: 8 on a GPU, where a batched step costs about what a
        single one does; 2 on CPU, where S3Gen is compute-bound but two requests still share T3's weight reads."""
        return 8 if self.on_gpu else 2

    def enable_batching(
        self,
        max_requests: int,
        on_step: Callable[[int, float], None],
        batch_s3gen: bool | None,
        on_s3gen_batch: Callable[[int], None],
        overlap_s3gen: str = "auto",
    ) -> None:
        """Concurrent syntheses decode T3 in one continuous batch of up to max_requests in the engine's loop
        (same tokens as alone); with batch_s3gen (None: on a GPU only), concurrent streams also render their
        chunks through S3Gen together (same audio up to float rounding; off, a CPU server's concurrent audio
        is bit-identical to solo audio). on_step(requests, seconds) after each T3 step, on_s3gen_batch(windows)
        after each shared S3Gen call. overlap_s3gen ("auto", "on", "off"): S3Gen renders on its own thread
        while T3 decodes; auto: where it wins (a CPU with two or more cores), "on" is refused on a GPU."""
        self._engine.enable_batching(
            max_requests,
            on_step=lambda stats: on_step(stats.requests, stats.seconds),
            batch_s3gen=self.on_gpu if batch_s3gen is None else batch_s3gen,
            on_s3gen_batch=lambda stats: on_s3gen_batch(stats.windows),
            overlap_s3gen={"auto": None, "on": True, "off": False}[overlap_s3gen],
        )

    def use_chunk_plan(self, name: str, continuation_prompt_tokens: int | None = None) -> None:
        """Streamed chunk sizes: "auto", "realtime" or "throughput", and optionally a shorter voice prompt
        for windows after a sentence's first (`Engine.use_chunk_plan`); both reported in `info`."""
        self._engine.use_chunk_plan(name, continuation_prompt_tokens)

    @property
    def loop_busy_s(self) -> float:
        """Seconds the engine's loop thread has been in one step (0 while idle), for liveness."""
        return float(self._engine.loop_busy_s)

    @property
    def loop_alive(self) -> bool:
        """False once the engine's loop thread died (liveness and readiness fail; requests get 503)."""
        return bool(self._engine.loop_alive)

    async def close(self, timeout_s: float = 30.0) -> None:
        """Ends the requests still running (503) and joins the engine's loop thread (off the event loop)."""
        await asyncio.to_thread(self._engine.close, timeout_s)

    @property
    def sample_rate(self) -> int:
        return int(self._engine.sample_rate)

    @property
    def info(self) -> dict[str, Any]:
        return dict(self._engine.info)

    @property
    def supported_languages(self) -> dict[str, str]:
        """Language code -> name the loaded model speaks."""
        return dict(self._engine.supported_languages)

    @property
    def ignored_parameters(self) -> tuple[str, ...]:
        """Request knobs the loaded variant has no use for (reported back to clients)."""
        return tuple(self._engine.ignored_parameters)

    @property
    def knob_defaults(self) -> dict[str, float]:
        """What each knob the model uses takes when a request omits it (the variant spec's values)."""
        from chatterbox_engine.request import knob_defaults

        return knob_defaults(self._engine.spec)

    @property
    def paralinguistic_tags(self) -> tuple[str, ...]:
        """Tags such as `[laugh]` the loaded model voices (Turbo, Nano); others drop them."""
        return tuple(self._engine.paralinguistic_tags)

    @property
    def default_voice(self) -> Any:
        return self._engine.default_voice

    def request(
        self, text: str, voice: Any, *, language: str, seed: int | None, options: dict[str, float]
    ) -> Any:
        """The engine's validated request (opaque here); bad values are InvalidRequests naming the field.
        Knobs missing from options take the model's defaults."""
        with self._translated_errors():
            return self._engine.request(text, voice, language=language, seed=seed, **options)

    async def stream(self, request: Any) -> AsyncIterator[AudioPiece]:
        """Audio for a `request` as the engine's loop makes it; closing the iterator cancels the rest."""
        async for piece in self._run(self._engine.speech_job(request)):
            yield piece

    async def convert_stream(
        self, audio: np.ndarray, sample_rate: int, voice: Any, *, seed: int | None
    ) -> AsyncIterator[AudioPiece]:
        """Source speech spoken in `voice`, as it is made (num_tokens: source tokens covered so far). Checks
        and tokenizes the source first (in a thread: the tokenizer is a model); unusable audio is an
        InvalidRequest on `file`."""
        with self._translated_errors(audio_param="file"):
            job = await asyncio.to_thread(self._engine.conversion_job, audio, sample_rate, voice, seed=seed)
        async for piece in self._run(job, audio_param="file"):
            yield piece

    async def _run(self, job: Any, audio_param: str = "voice") -> AsyncIterator[AudioPiece]:
        """A job's chunks from the engine's loop thread, awaited here: no thread waits for them."""
        loop = asyncio.get_running_loop()
        outputs: asyncio.Queue = asyncio.Queue()

        def deliver(item: object) -> None:  # called in the engine's loop thread
            with contextlib.suppress(RuntimeError):  # the event loop is gone during interpreter shutdown
                loop.call_soon_threadsafe(outputs.put_nowait, item)

        cancel = self._engine.start(job, deliver)
        try:
            while True:
                item = await outputs.get()
                if isinstance(item, self._ce.EngineStopped):  # shutting down, or the loop died
                    raise NotReady(str(item)) from item
                if isinstance(item, BaseException):
                    with self._translated_errors(audio_param):
                        raise item
                if not isinstance(item, self._ce.AudioChunk):  # the engine's Finished
                    return
                yield AudioPiece(np.asarray(item.audio, dtype=np.float32).reshape(-1), int(item.num_tokens))
        finally:
            cancel()

    def embed_voice(self, audio: np.ndarray, sample_rate: int) -> Any:
        try:
            return self._engine.embed_voice(audio, sample_rate)
        except self._ce.EngineError as error:  # e.g. a clip too short to learn a voice from
            raise InvalidRequest(str(error), param="audio_sample") from error

    def save_voice(self, voice: Any, path: Path) -> None:
        voice.save(str(path))

    def load_voice(self, path: Path) -> Any:
        return self._ce.Voice.load(str(path))

    def gpu_memory_bytes(self) -> dict[str, int]:
        """Accelerator memory in use by this process; zeros on CPU."""
        import torch

        if not torch.cuda.is_available():
            return {"allocated": 0, "reserved": 0}
        return {"allocated": torch.cuda.memory_allocated(), "reserved": torch.cuda.memory_reserved()}

    @contextlib.contextmanager
    def _translated_errors(self, audio_param: str = "voice") -> Iterator[None]:
        try:
            yield
        except self._ce.EngineError as error:
            param = getattr(error, "param", None) or {
                "InvalidTextError": "input",
                "InvalidAudioError": audio_param,
            }.get(type(error).__name__)
            raise InvalidRequest(str(error), param=param) from error


def _resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
