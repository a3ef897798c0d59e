"""The optional Wyoming protocol listener (WYOMING_PORT), the way Home Assistant talks to TTS services.

`describe` lists the served model with the voice library's voices and the model's languages;
`synthesize` speaks one text, and `synthesize-start` / `-chunk` / `-stop` stream text in. Both run as a
text-streaming session (services/realtime.py), so audio leaves sentence by sentence through the same
admission, batching and metrics as HTTP; it goes out as raw 16-bit mono PCM `audio-chunk`s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from pydantic import ValidationError
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Attribution, Describe, Info, TtsProgram, TtsVoice
from wyoming.server import AsyncEventHandler, AsyncTcpServer
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeStopped,
    SynthesizeVoice,
)

from .errors import APIError, InvalidRequest
from .schemas import SERVED_MODEL_ID, SpeechRequest
from .services.realtime import SegmentDone, SpeechSession

logger = logging.getLogger(__name__)

PROTOCOL = "wyoming"
_SAMPLE_WIDTH = 2  # bytes: the sessions speak pcm (16-bit little-endian, mono)
_ATTRIBUTION = Attribution(name="Resemble AI", url="https://github.com/resemble-ai/chatterbox")


async def start_wyoming_server(app_state: Any, host: str, port: int) -> AsyncTcpServer:
    """Starts listening on host:port; stop it with `await server.stop()`."""
    server = AsyncTcpServer(host, port)
    await server.start(lambda reader, writer: WyomingHandler(reader, writer, app_state))
    logger.info("Wyoming protocol listening on tcp://%s:%d", host, port)
    return server


class WyomingHandler(AsyncEventHandler):
    """One Wyoming client connection (Home Assistant keeps one per request)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, app_state: Any) -> None:
        super().__init__(reader, writer)
        self._state = app_state
        self._streaming: SpeechSession | None = None
        self._speaking: asyncio.Task | None = None
        self._audio_started = False

    async def handle_event(self, event: Event) -> bool:
        try:
            if Describe.is_type(event.type):
                await self.write_event((await self._info()).event())
            elif Synthesize.is_type(event.type):
                # While streaming, clients also send the whole text as `synthesize` for older servers: skip it.
                if self._streaming is None:
                    request = Synthesize.from_event(event)
                    await self._speak_all(request.voice, request.text)
            elif SynthesizeStart.is_type(event.type):
                self._streaming = self._session(SynthesizeStart.from_event(event).voice)
                self._speaking = asyncio.ensure_future(self._streaming.run())
            elif SynthesizeChunk.is_type(event.type):
                self._stream().append(SynthesizeChunk.from_event(event).text)
            elif SynthesizeStop.is_type(event.type):
                await self._stop_stream()
        except (APIError, ValidationError) as error:
            await self._refuse(error)
        return True

    async def disconnect(self) -> None:
        # The client left: stop the synthesis at its next chunk, which frees its slot.
        await self._drop_stream()

    async def _speak_all(self, voice: SynthesizeVoice | None, text: str) -> None:
        session = self._session(voice)
        try:
            session.append(text)
            session.finish()
            await session.run()
            await self._end_audio()
        finally:
            session.close()

    async def _stop_stream(self) -> None:
        session, speaking = self._stream(), self._speaking
        try:
            session.finish()
            await speaking
            await self._end_audio()
        finally:
            self._streaming = self._speaking = None
            session.close()
        await self.write_event(SynthesizeStopped().event())

    async def _drop_stream(self) -> None:
        if self._speaking is not None:
            self._speaking.cancel()
            with contextlib.suppress(BaseException):
                await self._speaking
        if self._streaming is not None:
            self._streaming.close()
        self._streaming = self._speaking = None

    async def _refuse(self, error: APIError | ValidationError) -> None:
        """Reports a refused request as a Wyoming `error` event; a stream in progress ends with it."""
        await self._drop_stream()
        if isinstance(error, APIError):
            text, code = error.message, error.code or error.error_type
        else:
            first = error.errors()[0]
            text, code = (
                f"{'.'.join(str(part) for part in first['loc'])}: {first['msg']}",
                "invalid_request_error",
            )
        logger.warning("wyoming request refused: %s", text)
        await self.write_event(Error(text=text, code=code).event())

    def _stream(self) -> SpeechSession:
        if self._streaming is None:
            raise InvalidRequest("synthesize-chunk or -stop without synthesize-start", code="no_stream")
        return self._streaming

    def _session(self, voice: SynthesizeVoice | None) -> SpeechSession:
        settings = self._state.settings
        fields: dict[str, Any] = {"input": "-", "response_format": "pcm"}
        if voice is not None and voice.name:
            fields["voice"] = voice.name
        if voice is not None and voice.language and voice.name is None:
            fields["language"] = voice.language.replace("-", "_").split("_")[0].lower()
        self._audio_started = False
        return SpeechSession(
            self._state.speech,
            SpeechRequest.model_validate(fields),
            sample_rate=self._state.engine.sample_rate,
            on_audio=self._send_audio,
            on_segment=_warn_of_dropped_tags,
            is_disconnected=_never,
            max_input_chars=settings.stream_max_input_chars,
            voiced_tags=self._state.engine.paralinguistic_tags,
            # Wyoming has no credentials (a LAN protocol, off by default): no key to count against.
            admit=lambda characters: self._state.api_keys.admit(None, input_characters=characters),
            observe_first_audio=self._state.metrics.stream_first_audio.labels(protocol=PROTOCOL).observe,
        )

    async def _send_audio(self, data: bytes) -> None:
        rate = self._state.engine.sample_rate
        if not self._audio_started:
            self._audio_started = True
            await self.write_event(AudioStart(rate=rate, width=_SAMPLE_WIDTH, channels=1).event())
        await self.write_event(AudioChunk(rate=rate, width=_SAMPLE_WIDTH, channels=1, audio=data).event())

    async def _end_audio(self) -> None:
        if not self._audio_started:  # no speakable text: an empty clip, still well formed
            await self._send_audio(b"")
        await self.write_event(AudioStop().event())

    async def _info(self) -> Info:
        engine = self._state.engine
        languages = sorted(engine.supported_languages)
        voices = [
            TtsVoice(
                name=voice.name,
                description=f"Chatterbox voice {voice.id}" + (" (built in)" if voice.builtin else ""),
                attribution=_ATTRIBUTION,
                installed=True,
                version=None,
                languages=languages,
            )
            for voice in await self._state.voices.list()
        ]
        program = TtsProgram(
            name=SERVED_MODEL_ID,
            description=f"Chatterbox TTS ({engine.info.get('variant', 'english')} model)",
            attribution=_ATTRIBUTION,
            installed=True,
            version=None,
            voices=voices,
            supports_synthesize_streaming=True,
        )
        return Info(tts=[program])


async def _warn_of_dropped_tags(segment: SegmentDone) -> None:
    # Wyoming's TTS events have no field for a warning (HTTP's header, the socket's dropped_tags): the log.
    if segment.dropped_tags:
        logger.warning(
            "wyoming: the model does not voice %s; dropped from sentence %d",
            ", ".join(segment.dropped_tags),
            segment.index + 1,
        )


async def _never() -> bool:
    return False
