"""WS /v1/audio/speech/stream: text in as it arrives, audio out per sentence (protocol: README, "Streaming
text in over a WebSocket"). Client messages are JSON; audio goes out as binary frames of the session's
format; everything else (segments, errors, the final usage) as JSON messages."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Annotated, Literal

from fastapi import APIRouter, WebSocket
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from starlette.websockets import WebSocketDisconnect, WebSocketState

from ..errors import APIError, InvalidRequest, NotReady, Overloaded, TimedOut, Unauthorized
from ..metrics import ServerMetrics
from ..schemas import SpeechRequest
from ..services.realtime import SegmentDone, SpeechSession
from ..services.speech import ClientGone, StreamAborted

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/v1", tags=["speech"])

PROTOCOL = "websocket"


class CloseCode:
    """RFC 6455 close codes, one per kind of ending (the README's table)."""

    DONE = 1000
    IDLE = 1001  # going away: the client sent nothing for STREAM_IDLE_TIMEOUT_S
    BINARY_FROM_CLIENT = 1003  # unsupported data
    BAD_JSON = 1007  # invalid payload data
    REFUSED = 1008  # policy violation: bad key, bad message, text after input.done
    INPUT_TOO_LONG = 1009  # message too big
    SERVER_ERROR = 1011
    TRY_AGAIN_LATER = 1013  # the 429/503 of sockets: queue full or model loading


# Client messages ---------------------------------------------------------------------------------


class SessionUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["session.update"]
    session: dict = Field(description="Any /v1/audio/speech field but input and stream_format.")


class InputAppend(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["input.append"]
    text: str


class InputFlush(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["input.flush"]


class InputDone(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["input.done"]


ClientMessage = TypeAdapter(
    Annotated[SessionUpdate | InputAppend | InputFlush | InputDone, Field(discriminator="type")]
)
_MESSAGE_TYPES = ("session.update", "input.append", "input.flush", "input.done")
# The socket speaks raw 16-bit PCM unless the session asks otherwise (agents play it as it comes).
_DEFAULT_FORMAT = "pcm"
_PLACEHOLDER_INPUT = "-"


class _Refused(Exception):
    """Ends the session with an error message and `close_code`."""

    def __init__(self, error: APIError, close_code: int) -> None:
        super().__init__(error.message)
        self.error = error
        self.close_code = close_code


@router.websocket("/audio/speech/stream")
async def speech_stream(websocket: WebSocket) -> None:
    await websocket.accept()
    metrics: ServerMetrics = websocket.app.state.metrics
    metrics.stream_sessions.labels(protocol=PROTOCOL).inc()
    outcome = "error"
    try:
        outcome = await _SocketSession(websocket).serve()
    except _Refused as refusal:
        outcome = "rejected" if refusal.close_code == CloseCode.TRY_AGAIN_LATER else "error"
        await _send_error_and_close(websocket, refusal.error, refusal.close_code)
    except Exception:
        logger.exception("speech socket failed")
        await _send_error_and_close(
            websocket, APIError("internal server error", code="server_error"), CloseCode.SERVER_ERROR
        )
    finally:
        metrics.stream_sessions.labels(protocol=PROTOCOL).dec()
        metrics.stream_sessions_total.labels(protocol=PROTOCOL, outcome=outcome).inc()


class _SocketSession:
    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket
        self.app_state = websocket.app.state
        self.settings = self.app_state.settings
        self.config = SpeechRequest(input=_PLACEHOLDER_INPUT, response_format=_DEFAULT_FORMAT)
        self.session: SpeechSession | None = None
        self.key_name: str | None = None  # the API key's name, once authenticated (None: keys are off)
        self.client_gone = False
        self.last_activity = time.monotonic()

    async def serve(self) -> str:
        """Runs the session to its end; returns the outcome for the metrics."""
        self._authenticate()
        self._require_loaded()
        receiving = asyncio.ensure_future(self.websocket.receive())
        speaking: asyncio.Task | None = None
        try:
            while True:
                waiting = {receiving} | ({speaking} if speaking else set())
                done, _ = await asyncio.wait(
                    waiting, timeout=self.settings.stream_idle_timeout_s, return_when=asyncio.FIRST_COMPLETED
                )
                if not done:
                    if self._idle_for() >= self.settings.stream_idle_timeout_s:
                        raise _Refused(
                            InvalidRequest(
                                f"no text for {self.settings.stream_idle_timeout_s:g} s; closing the session",
                                code="idle_timeout",
                            ),
                            CloseCode.IDLE,
                        )
                    continue
                if speaking in done:
                    failure = speaking.exception()
                    if failure is not None:
                        # The client left (seen on receive, or as a failed send: uvicorn raises an OSError).
                        if self.client_gone or isinstance(
                            failure, WebSocketDisconnect | ClientGone | OSError
                        ):
                            return "client_gone"
                        # After the first audio, the service wraps what went wrong in StreamAborted.
                        cause = failure.__cause__ if isinstance(failure, StreamAborted) else failure
                        if isinstance(cause, APIError):
                            raise _Refused(cause, _close_code(cause))
                        raise failure
                    usage = speaking.result().as_dict()
                    if self.session.dropped_tags:
                        usage["dropped_tags"] = self.session.dropped_tags  # as in SSE's done event
                    await self.websocket.send_json({"type": "speech.audio.done", "usage": usage})
                    await self.websocket.close(CloseCode.DONE)
                    return "done"
                message = receiving.result()
                if message["type"] == "websocket.disconnect":
                    self.client_gone = True
                    return "client_gone"
                self.last_activity = time.monotonic()
                self._handle(message)
                if self.session is not None and speaking is None:
                    speaking = asyncio.ensure_future(self.session.run())
                receiving = asyncio.ensure_future(self.websocket.receive())
        finally:
            # Client gone or session over: stop the synthesis at its next chunk (this frees its slot).
            for task in (receiving, speaking):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        await task
            if self.session is not None:
                self.session.close()

    def _handle(self, frame: dict) -> None:
        if frame.get("bytes") is not None:
            raise _Refused(
                InvalidRequest(
                    "send JSON text messages; binary frames are not accepted", code="binary_message"
                ),
                CloseCode.BINARY_FROM_CLIENT,
            )
        try:
            payload = json.loads(frame.get("text") or "")
        except json.JSONDecodeError as error:
            raise _Refused(
                InvalidRequest(f"the message is not valid JSON ({error.msg} at character {error.pos})",
                               code="invalid_json"),
                CloseCode.BAD_JSON,
            ) from None  # fmt: skip
        message = _parse(payload)
        try:
            if isinstance(message, SessionUpdate):
                self._update(message.session)
            elif isinstance(message, InputAppend):
                self._started().append(message.text)
            elif isinstance(message, InputFlush):
                self._started().flush()
            else:
                self._started().finish()
        except APIError as error:
            code = CloseCode.INPUT_TOO_LONG if error.code == "input_too_long" else CloseCode.REFUSED
            raise _Refused(error, code) from None

    def _update(self, changes: dict) -> None:
        if self.session is not None:
            raise InvalidRequest(
                "session.update must come before the first input message", code="session_started"
            )
        for field in ("input", "stream_format"):
            if field in changes:
                raise InvalidRequest(f"session.{field} is not a session setting", param=f"session.{field}")
        fields = {**self.config.model_dump(exclude_unset=True), **changes, "input": _PLACEHOLDER_INPUT}
        try:
            self.config = SpeechRequest.model_validate(fields)
        except ValidationError as error:
            first = error.errors()[0]
            param = ".".join(["session", *(str(part) for part in first["loc"] if isinstance(part, str))])
            raise InvalidRequest(
                f"{param}: {first['msg'].removeprefix('Value error, ')}", param=param
            ) from None

    def _started(self) -> SpeechSession:
        if self.session is None:
            self.session = SpeechSession(
                self.app_state.speech,
                self.config,
                sample_rate=self.app_state.engine.sample_rate,
                on_audio=self.websocket.send_bytes,
                on_segment=self._segment_done,
                is_disconnected=self._is_disconnected,
                max_input_chars=self.settings.stream_max_input_chars,
                voiced_tags=self.app_state.engine.paralinguistic_tags,
                admit=lambda characters: self.app_state.api_keys.admit(
                    self.key_name, input_characters=characters
                ),
                observe_first_audio=self.app_state.metrics.stream_first_audio.labels(
                    protocol=PROTOCOL
                ).observe,
            )
        return self.session

    async def _segment_done(self, segment: SegmentDone) -> None:
        self.last_activity = time.monotonic()
        event = {
            "type": "speech.segment.done",
            "segment": segment.index,
            "text": segment.text,
            "start_sample": segment.start_sample,
            "end_sample": segment.end_sample,
            "sample_rate": self.session.sample_rate if self.session else None,
        }
        if segment.dropped_tags:
            event["dropped_tags"] = list(segment.dropped_tags)
        await self.websocket.send_json(event)

    async def _is_disconnected(self) -> bool:
        return self.client_gone

    def _idle_for(self) -> float:
        if self.session is not None and not self.session.idle:
            self.last_activity = time.monotonic()  # speaking: the client is listening, not idle
        return time.monotonic() - self.last_activity

    def _authenticate(self) -> None:
        # Browsers cannot set headers on a WebSocket, so the key may also come as ?api_key=.
        header = self.websocket.headers.get("authorization", "")
        offered = header[7:].strip() if header.lower().startswith("bearer ") else ""
        try:
            self.key_name = self.app_state.api_keys.authenticate(
                offered or self.websocket.query_params.get("api_key", "")
            )
        except Unauthorized as error:
            raise _Refused(error, CloseCode.REFUSED) from None

    def _require_loaded(self) -> None:
        runtime = self.app_state.runtime
        if not runtime.loaded or runtime.draining:
            raise _Refused(
                NotReady(
                    "the model is not ready; retry shortly (GET /readyz says when)", code="model_loading"
                ),
                CloseCode.TRY_AGAIN_LATER,
            )


def _parse(payload: object) -> SessionUpdate | InputAppend | InputFlush | InputDone:
    if not isinstance(payload, dict) or not isinstance(payload.get("type"), str):
        raise _Refused(
            InvalidRequest('every message is a JSON object with a "type"', param="type"), CloseCode.REFUSED
        )
    if payload["type"] not in _MESSAGE_TYPES:
        raise _Refused(
            InvalidRequest(
                f"unknown message type {payload['type']!r}; expected one of {', '.join(_MESSAGE_TYPES)}",
                param="type",
                code="unknown_message_type",
            ),
            CloseCode.REFUSED,
        )
    try:
        return ClientMessage.validate_python(payload)
    except ValidationError as error:
        first = error.errors()[0]
        param = ".".join(str(part) for part in first["loc"][1:] if isinstance(part, str)) or None
        raise _Refused(
            InvalidRequest(f"{payload['type']}: {param + ': ' if param else ''}{first['msg']}", param=param),
            CloseCode.REFUSED,
        ) from None


def _close_code(error: APIError) -> int:
    if isinstance(error, Overloaded | NotReady):
        return CloseCode.TRY_AGAIN_LATER
    if isinstance(error, TimedOut):
        return CloseCode.SERVER_ERROR
    return CloseCode.REFUSED


async def _send_error_and_close(websocket: WebSocket, error: APIError, close_code: int) -> None:
    if websocket.client_state != WebSocketState.CONNECTED:
        return
    body = {"message": error.message, "type": error.error_type, "param": error.param, "code": error.code}
    if isinstance(error, Overloaded):
        body["retry_after"] = error.retry_after_s
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        await websocket.send_json({"type": "error", "error": body})
        await websocket.close(close_code, reason=error.message[:120])
