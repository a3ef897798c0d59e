"""Speech synthesis: the engine's validated request (`Engine.request`, before admission) -> engine (its
loop thread; the audio is awaited here) -> tempo -> encoder -> streamed bytes or SSE.

Long input needs no splitting here: the engine speaks it sentence piece by sentence piece.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..admission import AdmissionControl
from ..audio import WHOLE_FILE_FORMATS, StreamEncoder, TempoChanger
from ..engine_adapter import AudioPiece, EngineAdapter
from ..errors import APIError, InvalidRequest
from ..metrics import ServerMetrics
from ..schemas import MODEL_ALIASES, SERVED_MODEL_ID, SpeechRequest
from .voices import VoiceService

logger = logging.getLogger(__name__)

_DISCONNECT_POLL_S = 0.25


class ClientGone(Exception):
    """The client disconnected before any audio was ready; nothing is left to answer."""


class StreamAborted(Exception):
    """Raised from an audio body after its first bytes went out: the server drops the connection."""


@dataclass(frozen=True)
class SpeechUsage:
    """What one request used. Chatterbox's English tokenizer works on characters, so input tokens are
    input characters."""

    input_characters: int
    output_tokens: int
    audio_seconds: float

    def as_dict(self) -> dict[str, int | float]:
        """OpenAI's usage fields, plus the characters and audio seconds that limits and metrics count."""
        return {
            "input_tokens": self.input_characters,
            "output_tokens": self.output_tokens,
            "total_tokens": self.input_characters + self.output_tokens,
            "input_characters": self.input_characters,
            "audio_seconds": round(self.audio_seconds, 6),
        }


class _Render:
    """One request's audio, awaited from the engine's loop and encoded as it comes; keeps the counts for
    metrics."""

    def __init__(self, engine: EngineAdapter, generation: Any, request: SpeechRequest) -> None:
        self._engine = engine
        self._generation = generation  # the engine's validated request
        self._request = request
        self.tokens = 0
        self.samples_out = 0
        self.synthesis_s = 0.0
        self.complete = False  # the counts above are final

    @property
    def audio_seconds(self) -> float:
        return self.samples_out / self._engine.sample_rate

    async def __call__(self) -> AsyncIterator[bytes]:
        sample_rate = self._engine.sample_rate
        encoder = StreamEncoder(self._request.response_format, sample_rate)
        tempo = TempoChanger(self._request.speed, sample_rate) if self._request.speed != 1.0 else None
        started = time.perf_counter()
        pieces = self._pieces()
        try:
            async for piece in pieces:
                self.tokens = piece.num_tokens
                data = self._encode(encoder, tempo.push(piece.audio) if tempo else piece.audio)
                self.synthesis_s = time.perf_counter() - started
                if data:
                    yield data
            tail = tempo.flush() if tempo else np.zeros(0, np.float32)
            data = self._encode(encoder, tail) + encoder.finish()
            self.complete = True
            if data:
                yield data
        finally:
            await pieces.aclose()  # cancels the engine's work when the client left early
            self.synthesis_s = time.perf_counter() - started
            encoder.close()

    def _pieces(self) -> AsyncIterator[AudioPiece]:
        return self._engine.stream(self._generation)

    def _encode(self, encoder: StreamEncoder, audio: np.ndarray) -> bytes:
        self.samples_out += audio.size
        return encoder.encode(audio)


class SpeechStream:
    """The audio of one admitted request: iterate `chunks()` or `sse_events()` exactly once."""

    def __init__(self, first: bytes, rest: AsyncIterator[bytes], render: _Render, *, input_chars: int,
                 on_finish: Callable[[_Render], None], ignored_parameters: list[str],
                 on_end: Callable[[SpeechUsage], None] | None = None,
                 dropped_tags: tuple[str, ...] = ()) -> None:  # fmt: skip
        self.ignored_parameters = ignored_parameters  # knobs the client set that this model ignores
        self.dropped_tags = list(dropped_tags)  # paralinguistic tags removed: this model has none
        self._first = first
        self._rest = rest
        self._render = render
        self._input_chars = input_chars
        self._on_finish = on_finish
        self._on_end = on_end

    def usage(self) -> SpeechUsage:
        """What the request has used so far (all of it once the audio is complete)."""
        render = self._render
        return SpeechUsage(self._input_chars, render.tokens, render.audio_seconds)

    def usage_header(self) -> str:
        """The usage known before the body: all of it when the whole audio is ready (flac, or any format
        whose audio fit the first piece), else the input only; the rest is in SSE's speech.audio.done."""
        usage = self.usage().as_dict()
        if not self._render.complete:
            usage = {name: usage[name] for name in ("input_tokens", "input_characters")}
        return json.dumps(usage, separators=(",", ":"))

    @property
    def output_tokens(self) -> int:
        """Speech tokens generated so far (all of them once the stream is consumed)."""
        return self._render.tokens

    async def chunks(self) -> AsyncIterator[bytes]:
        completed = False
        try:
            yield self._first
            async for data in self._rest:
                yield data
            completed = True
        except Exception as error:
            # Headers are gone already: the only honest signal left is breaking the connection, so the
            # chunked body never gets its terminating chunk and the client sees a truncated response.
            reason = error.message if isinstance(error, APIError) else repr(error)
            logger.warning("speech stream aborted after audio started: %s", reason)
            raise StreamAborted(reason) from error
        finally:
            await self._end(completed)

    async def sse_events(self) -> AsyncIterator[bytes]:
        """OpenAI's speech.audio.delta events (base64 of the response_format bytes), then speech.audio.done."""
        completed = False
        try:
            yield _sse({"type": "speech.audio.delta", "audio": base64.b64encode(self._first).decode()})
            async for data in self._rest:
                yield _sse({"type": "speech.audio.delta", "audio": base64.b64encode(data).decode()})
            completed = True
            usage = self.usage().as_dict()
            if self.ignored_parameters:
                usage["ignored_parameters"] = self.ignored_parameters
            if self.dropped_tags:
                usage["dropped_tags"] = self.dropped_tags
            yield _sse({"type": "speech.audio.done", "usage": usage})
        except APIError as error:
            logger.warning("speech stream ended early: %s", error.message)
            yield _sse({"type": "error", "error": {"message": error.message, "type": error.error_type}})
        finally:
            await self._end(completed)

    async def _end(self, completed: bool) -> None:
        await self._rest.aclose()
        if completed:
            self._on_finish(self._render)
        if self._on_end is not None:
            self._on_end(self.usage())


class SpeechService:
    def __init__(self, *, engine: EngineAdapter, voices: VoiceService, admission: AdmissionControl,
                 metrics: ServerMetrics) -> None:  # fmt: skip
        self._engine = engine
        self._voices = voices
        self._admission = admission
        self._metrics = metrics

    async def start(
        self,
        request: SpeechRequest,
        is_disconnected: Callable[[], Awaitable[bool]],
        *,
        timeout_s: float | None = None,
        on_end: Callable[[SpeechUsage], None] | None = None,
    ) -> SpeechStream:
        """Validates, admits and starts a request; returns once the first audio bytes exist.

        Everything that can be refused (bad model, voice, text, language, knob, full queue) is refused here,
        before a 200 status goes out: the engine validates the request before it is admitted. `on_end` gets
        the request's usage once its audio ends, finished or cut short.
        """
        accepted_at = time.perf_counter()
        if request.model != SERVED_MODEL_ID and request.model not in MODEL_ALIASES:
            raise InvalidRequest(
                f"model {request.model!r} is not served here; use {SERVED_MODEL_ID!r} "
                f"(or one of the aliases {', '.join(MODEL_ALIASES)})",
                param="model",
            )
        voice = await self._voices.resolve(request.voice)
        # Text front ends may load dictionaries on first use (pykakasi): off the event loop.
        generation = await asyncio.to_thread(
            self._engine.request,
            request.input,
            voice,
            language=request.language,
            seed=request.seed,
            options=request.generation_options(),
        )
        render = _Render(self._engine, generation, request)
        first, rest = await start_render(self._admission, render, is_disconnected, timeout_s)
        if request.response_format not in WHOLE_FILE_FORMATS:  # flac's first byte comes with its last
            stream_label = "true" if request.stream_format == "sse" else "false"
            self._metrics.time_to_first_audio.labels(stream=stream_label).observe(
                time.perf_counter() - accepted_at
            )
        ignored = [name for name in self._engine.ignored_parameters if name in request.model_fields_set]
        return SpeechStream(
            first,
            rest,
            render,
            input_chars=len(request.input),
            on_finish=self._record,
            ignored_parameters=ignored,
            on_end=on_end,
            dropped_tags=generation.dropped_tags,
        )

    async def warm_up(self) -> None:
        """One short synthesis through the whole path, so the first real request is not the slow one."""
        request = SpeechRequest(input="Warming up.", response_format="pcm", seed=0)
        # Not bound by REQUEST_TIMEOUT_S: the first synthesis is the slow one, and nobody is waiting on it.
        stream = await self.start(request, _never_disconnected, timeout_s=math.inf)
        async for _ in stream.chunks():
            pass

    def _record(self, render: _Render) -> None:
        self._metrics.record_synthesis(
            wall_s=render.synthesis_s,
            audio_s=render.audio_seconds,
            tokens=render.tokens,
        )


async def start_render(
    admission_control: AdmissionControl,
    render: Callable[[], AsyncIterator[bytes]],
    is_disconnected: Callable[[], Awaitable[bool]],
    timeout_s: float | None,
) -> tuple[bytes, AsyncIterator[bytes]]:
    """Admits a render (429 when the queue is full), starts it in a slot and waits for its first bytes:
    anything the engine refuses before making audio is raised here, before a 200 status goes out."""
    admission = admission_control.admit(timeout_s=timeout_s)
    rest = admission.run(render)
    try:
        first = await _first_item_unless_disconnected(rest, is_disconnected)
    finally:
        admission.withdraw()  # a no-op once it ran; frees the queue place if it was cancelled first
    return first, rest


async def _first_item_unless_disconnected(
    items: AsyncIterator[bytes], is_disconnected: Callable[[], Awaitable[bool]]
) -> bytes:
    first = asyncio.ensure_future(anext(items))
    try:
        while True:
            done, _ = await asyncio.wait({first}, timeout=_DISCONNECT_POLL_S)
            if done:
                break
            if await is_disconnected():
                raise ClientGone()
    except BaseException:
        first.cancel()
        await asyncio.gather(first, return_exceptions=True)
        await items.aclose()
        raise
    try:
        return first.result()
    except StopAsyncIteration:
        raise InvalidRequest("the input produced no audio", param="input") from None


async def _never_disconnected() -> bool:
    return False


def _sse(event: dict) -> bytes:
    return f"data: {json.dumps(event)}\n\n".encode()
