"""Voice conversion: an uploaded recording spoken again in a library voice, streamed like speech.

Shares everything after the engine with `/v1/audio/speech`: admission and its slots, the encoders and
tempo change, chunked audio or SSE events, errors and metrics.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import numpy as np

from ..admission import AdmissionControl
from ..audio import decode_upload
from ..config import Settings
from ..engine_adapter import AudioPiece, EngineAdapter
from ..errors import InvalidRequest, PayloadTooLarge
from ..metrics import ServerMetrics
from ..schemas import VoiceConversionForm
from .speech import SpeechStream, SpeechUsage, _Render, start_render
from .voices import VoiceService


class _ConversionRender(_Render):
    """One conversion's audio: the engine converts instead of synthesising."""

    def __init__(
        self,
        engine: EngineAdapter,
        source: np.ndarray,
        sample_rate: int,
        voice: Any,
        form: VoiceConversionForm,
    ) -> None:
        super().__init__(
            engine, None, form
        )  # the form carries response_format and speed, as speech's request
        self._source = source
        self._sample_rate = sample_rate
        self._voice = voice
        self._seed = form.seed

    def _pieces(self) -> AsyncIterator[AudioPiece]:
        return self._engine.convert_stream(self._source, self._sample_rate, self._voice, seed=self._seed)


class ConversionService:
    def __init__(self, *, engine: EngineAdapter, voices: VoiceService, admission: AdmissionControl,
                 metrics: ServerMetrics, settings: Settings) -> None:  # fmt: skip
        self._engine = engine
        self._voices = voices
        self._admission = admission
        self._metrics = metrics
        self._settings = settings

    async def start(
        self,
        upload: bytes,
        form: VoiceConversionForm,
        is_disconnected: Callable[[], Awaitable[bool]],
        *,
        on_end: Callable[[SpeechUsage], None] | None = None,
    ) -> SpeechStream:
        """Validates, decodes, admits and starts a conversion; returns once the first audio bytes exist.

        Everything refusable (size, undecodable or unusable audio, unknown voice, full queue) is refused
        before a 200 status goes out. Not timed as time to first audio: that would count tokenizing the
        whole upload, and the speech alert on that metric would fire for long uploads. `on_end` gets the
        usage (no input characters; output tokens: the source's speech tokens) when the response ends."""
        limit = self._settings.max_voice_upload_bytes
        if len(upload) > limit:
            raise PayloadTooLarge(
                f"file is {len(upload) / 2**20:.1f} MiB; the limit is {limit / 2**20:g} MiB", param="file"
            )
        if not upload:
            raise InvalidRequest("file is empty: upload the speech to convert", param="file")
        voice = await self._voices.resolve(form.voice)
        source, sample_rate = await asyncio.to_thread(
            decode_upload, upload, max_seconds=self._settings.max_conversion_seconds, param="file"
        )
        render = _ConversionRender(self._engine, source, sample_rate, voice, form)
        first, rest = await start_render(self._admission, render, is_disconnected, None)
        return SpeechStream(
            first, rest, render, input_chars=0, on_finish=self._record, ignored_parameters=[], on_end=on_end
        )

    def _record(self, render: _Render) -> None:
        # No T3 tokens: conversion renders the source's own speech tokens.
        self._metrics.record_synthesis(
            wall_s=render.synthesis_s, audio_s=render.samples_out / self._engine.sample_rate, tokens=0
        )
