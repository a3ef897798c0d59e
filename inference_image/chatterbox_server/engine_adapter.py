"""The only module that calls the engine (`chatterbox_engine`) and touches torch.

Everything else in the server sees plain numpy audio, opaque voice and request objects and
`errors.APIError`s (the API schema only reads the engine's knob bounds and defaults).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InvalidRequest

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
    ) -> None:
        """Concurrent syntheses decode T3 in one continuous batch of up to max_requests (same tokens as
        alone); with batch_s3gen (None: on a GPU only), concurrent streams also render their chunks through
        S3Gen together (same audio up to float rounding). on_step(requests, seconds) after each batched T3
        step, on_s3gen_batch(windows) after each S3Gen call. On a GPU always (the batcher replays the
        decode step from CUDA graphs); on CPU only with several workers."""
        if max_requests < 2 and not self.on_gpu:
            return
        self._engine.enable_batching(
            max_requests,
            on_step=lambda stats: on_step(stats.requests, stats.seconds),
            batch_s3gen=self.on_gpu if batch_s3gen is None else batch_s3gen,
            on_s3gen_batch=lambda stats: on_s3gen_batch(stats.windows),
        )

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

    def stream(self, request: Any) -> Iterator[AudioPiece]:
        """Audio for a `request` as it is made; closing the iterator stops the engine at its next chunk."""
        with self._translated_errors():
            yield from _pieces(self._engine.generate_stream(request))

    def convert_stream(
        self, audio: np.ndarray, sample_rate: int, voice: Any, *, seed: int | None
    ) -> Iterator[AudioPiece]:
        """Source speech spoken in `voice`, as it is made (num_tokens: source tokens covered so far). Checks
        and tokenizes the source first; unusable audio is an InvalidRequest on `file`."""
        with self._translated_errors(audio_param="file"):
            yield from _pieces(self._engine.convert_stream(audio, sample_rate, voice, seed=seed))

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


def _pieces(chunks: Iterator[Any]) -> Iterator[AudioPiece]:
    """The engine's AudioChunks as plain numpy pieces; closing stops the engine at its next chunk."""
    try:
        for chunk in chunks:
            yield AudioPiece(np.asarray(chunk.audio, dtype=np.float32).reshape(-1), int(chunk.num_tokens))
    finally:
        chunks.close()


def _resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
