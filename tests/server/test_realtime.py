"""WS /v1/audio/speech/stream with the real `websockets` client against a real server (random:tiny)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from .conftest import CLIENT_TIMEOUT_S, RunningServer, gauge, start_server, wait_until_idle

pytestmark = pytest.mark.e2e

API_KEY = "sk-realtime-test"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
MAX_INPUT_CHARS = 1000
LONG_TEXT = " ".join(f"Sentence {index} keeps the worker busy." for index in range(12))


@pytest.fixture(scope="module")
def socket_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One worker and one queue place, so a third synthesis at once is refused; a short idle timeout."""
    running = start_server(
        tmp_path_factory.mktemp("realtime"),
        max_concurrent=1,
        max_queue=1,
        api_keys=API_KEY,
        stream_idle_timeout_s=3,
        stream_max_input_chars=MAX_INPUT_CHARS,
    )
    yield running
    log = running.log_path.read_text(errors="replace")
    running.stop()
    assert "Traceback" not in log and "unhandled error" not in log, "the server logged a failure"


def ws_url(server: RunningServer, query: str = "") -> str:
    return server.url.replace("http://", "ws://") + "/v1/audio/speech/stream" + query


@dataclass
class Transcript:
    audio: bytes = b""
    events: list[dict] = field(default_factory=list)
    close_code: int | None = None

    def of_type(self, kind: str) -> list[dict]:
        return [event for event in self.events if event["type"] == kind]


async def read_until_closed(socket: ClientConnection, transcript: Transcript | None = None) -> Transcript:
    transcript = transcript or Transcript()
    try:
        async with asyncio.timeout(CLIENT_TIMEOUT_S):
            async for message in socket:
                if isinstance(message, bytes):
                    transcript.audio += message
                else:
                    transcript.events.append(json.loads(message))
    except ConnectionClosed:
        pass
    transcript.close_code = socket.close_code
    return transcript


async def speak(
    server: RunningServer, messages: list[dict | str | bytes], *, query: str = "", headers: dict = AUTH
) -> Transcript:
    async with connect(ws_url(server, query), additional_headers=headers) as socket:
        try:
            for message in messages:
                await socket.send(json.dumps(message) if isinstance(message, dict) else message)
        except ConnectionClosed:
            pass  # the server ended the session early (refused): its messages tell why
        return await read_until_closed(socket)


SESSION = {"type": "session.update", "session": {"voice": "alloy", "seed": 7, "response_format": "pcm"}}
TEXT = "Hi there. Bye now."


async def test_text_split_at_every_character_gives_the_same_audio(socket_server: RunningServer) -> None:
    whole = await speak(
        socket_server, [SESSION, {"type": "input.append", "text": TEXT}, {"type": "input.done"}]
    )
    by_character = await speak(
        socket_server,
        [
            SESSION,
            *({"type": "input.append", "text": character} for character in TEXT),
            {"type": "input.done"},
        ],
    )
    assert whole.close_code == by_character.close_code == 1000
    assert len(whole.audio) > 0 and whole.audio == by_character.audio
    segments = whole.of_type("speech.segment.done")
    assert [segment["text"] for segment in segments] == ["Hi there.", "Bye now."]
    assert segments == by_character.of_type("speech.segment.done")
    # Segments tile the audio: each starts where the previous ended, the last ends with the audio.
    assert segments[0]["start_sample"] == 0 and segments[0]["end_sample"] == segments[1]["start_sample"]
    assert segments[1]["end_sample"] == len(whole.audio) // 2
    [done] = whole.of_type("speech.audio.done")
    assert done["usage"]["input_tokens"] == len(TEXT) and done["usage"]["output_tokens"] > 0
    assert whole.events[-1]["type"] == "speech.audio.done"


async def test_dropped_tags_are_reported_per_segment_and_for_the_session(
    socket_server: RunningServer,
) -> None:
    # The English model voices no paralinguistic tags: dropped as over HTTP, reported, never an error.
    tagged = "Hi [laugh] there. [cough] Bye [laugh] now. [sigh]"
    transcript = await speak(
        socket_server, [SESSION, {"type": "input.append", "text": tagged}, {"type": "input.done"}]
    )
    assert transcript.close_code == 1000
    segments = transcript.of_type("speech.segment.done")
    assert [segment["dropped_tags"] for segment in segments] == [
        ["[laugh]"],
        ["[cough]", "[laugh]"],
        ["[sigh]"],
    ]
    # A segment of tags alone is skipped: no audio, no refusal.
    assert segments[2]["start_sample"] == segments[2]["end_sample"] == len(transcript.audio) // 2
    [done] = transcript.of_type("speech.audio.done")
    assert done["usage"]["dropped_tags"] == ["[laugh]", "[cough]", "[sigh]"]
    # Dropped means no effect: the audio is that of the text without them.
    plain = await speak(
        socket_server, [SESSION, {"type": "input.append", "text": TEXT}, {"type": "input.done"}]
    )
    assert transcript.audio == plain.audio
    assert all("dropped_tags" not in event for event in plain.of_type("speech.segment.done"))
    assert "dropped_tags" not in plain.of_type("speech.audio.done")[0]["usage"]


async def test_the_same_text_over_http_sentence_by_sentence_sounds_the_same(
    socket_server: RunningServer,
) -> None:
    """Segments are ordinary speech requests with the session's seed sequence (seed, seed + 1, ...):
    outside the short fades at their edges, the socket's audio is theirs."""
    streamed = await speak(
        socket_server, [SESSION, {"type": "input.append", "text": TEXT}, {"type": "input.done"}]
    )
    async with httpx.AsyncClient(base_url=socket_server.url, timeout=CLIENT_TIMEOUT_S, headers=AUTH) as http:
        first = await http.post(
            "/v1/audio/speech",
            json={"input": "Hi there.", "voice": "alloy", "seed": 7, "response_format": "pcm"},
        )
    assert first.status_code == 200
    fade_bytes = 2 * 120
    end = len(first.content)
    assert streamed.audio[fade_bytes : end - fade_bytes] == first.content[fade_bytes : end - fade_bytes]


async def test_first_audio_arrives_before_input_done(socket_server: RunningServer) -> None:
    async with connect(ws_url(socket_server), additional_headers=AUTH) as socket:
        await socket.send(json.dumps(SESSION))
        # The first sentence is complete once the space after its full stop arrives.
        await socket.send(json.dumps({"type": "input.append", "text": "The first sentence is here. "}))
        async with asyncio.timeout(CLIENT_TIMEOUT_S):
            first = await socket.recv()
        assert isinstance(first, bytes) and len(first) > 0
        await socket.send(json.dumps({"type": "input.append", "text": "And a second one"}))
        await socket.send(json.dumps({"type": "input.done"}))
        transcript = await read_until_closed(socket, Transcript(audio=first))
    assert transcript.close_code == 1000
    texts = [segment["text"] for segment in transcript.of_type("speech.segment.done")]
    assert texts == ["The first sentence is here.", "And a second one"]


async def test_disconnect_mid_stream_frees_the_slot(socket_server: RunningServer) -> None:
    wait_until_idle(socket_server)
    async with connect(ws_url(socket_server), additional_headers=AUTH) as socket:
        await socket.send(json.dumps({"type": "input.append", "text": LONG_TEXT}))
        await socket.send(json.dumps({"type": "input.done"}))
        async with asyncio.timeout(CLIENT_TIMEOUT_S):
            assert isinstance(await socket.recv(), bytes)
        assert gauge(socket_server, "chatterbox_inflight_requests") == 1
    # Leaving the block closed the socket mid-speech: the synthesis stops and the slot comes back.
    wait_until_idle(socket_server)
    again = await speak(
        socket_server, [{"type": "input.append", "text": "Still here."}, {"type": "input.done"}]
    )
    assert again.close_code == 1000 and again.audio


async def test_a_full_server_refuses_with_try_again_later(socket_server: RunningServer) -> None:
    wait_until_idle(socket_server)
    body = {"input": LONG_TEXT, "voice": "alloy", "response_format": "pcm"}
    async with (
        httpx.AsyncClient(base_url=socket_server.url, timeout=CLIENT_TIMEOUT_S, headers=AUTH) as http,
        http.stream("POST", "/v1/audio/speech", json=body) as busy,
    ):
        assert busy.status_code == 200
        audio = busy.aiter_raw()
        await anext(audio)  # the one worker is busy...
        queued = asyncio.ensure_future(http.post("/v1/audio/speech", json=body))
        while gauge(socket_server, "chatterbox_queue_depth") < 1:  # ...and the one queue place taken
            await asyncio.sleep(0.05)
        refused = await speak(
            socket_server, [{"type": "input.append", "text": "Hello."}, {"type": "input.done"}]
        )
        queued.cancel()
    [error] = refused.of_type("error")
    assert error["error"]["type"] == "rate_limit_error" and error["error"]["retry_after"] >= 1
    assert refused.close_code == 1013
    wait_until_idle(socket_server)


@pytest.mark.parametrize(
    ("messages", "code", "close_code"),
    [
        pytest.param([{"type": "input.bogus"}], "unknown_message_type", 1008, id="unknown-type"),
        pytest.param(["{not json"], "invalid_json", 1007, id="bad-json"),
        pytest.param([b"\x00\x01"], "binary_message", 1003, id="binary-from-client"),
        pytest.param(
            [{"type": "input.append", "text": "a" * (MAX_INPUT_CHARS + 1)}],
            "input_too_long",
            1009,
            id="too-long",
        ),
        pytest.param(
            [
                {"type": "input.append", "text": "Hi."},
                {"type": "input.done"},
                {"type": "input.append", "text": "x"},
            ],
            "input_closed",
            1008,
            id="text-after-done",
        ),
        pytest.param(
            [{"type": "session.update", "session": {"temperature": 99}}], None, 1008, id="bad-session-field"
        ),
        pytest.param([{"type": "input.append"}], None, 1008, id="append-without-text"),
    ],
)
async def test_bad_messages_get_an_error_and_a_clean_close(
    socket_server: RunningServer, messages: list, code: str | None, close_code: int
) -> None:
    transcript = await speak(socket_server, messages)
    errors = transcript.of_type("error")
    assert len(errors) == 1, transcript.events
    assert errors[0]["error"]["type"] == "invalid_request_error" and errors[0]["error"]["message"]
    assert errors[0]["error"]["code"] == code
    assert transcript.close_code == close_code
    wait_until_idle(socket_server)


async def test_an_idle_session_is_closed(socket_server: RunningServer) -> None:
    async with connect(ws_url(socket_server), additional_headers=AUTH) as socket:
        await socket.send(json.dumps({"type": "input.append", "text": "no sentence end yet"}))
        transcript = await read_until_closed(socket)
    assert [event["error"]["code"] for event in transcript.of_type("error")] == ["idle_timeout"]
    assert transcript.close_code == 1001


@pytest.mark.parametrize(
    ("query", "headers", "accepted"),
    [
        pytest.param(f"?api_key={API_KEY}", {}, True, id="query-key"),
        pytest.param("", {}, False, id="no-key"),
        pytest.param("?api_key=sk-wrong", {}, False, id="wrong-key"),
    ],
)
async def test_keys_come_as_bearer_header_or_query(
    socket_server: RunningServer, query: str, headers: dict, accepted: bool
) -> None:
    messages = [{"type": "input.append", "text": "Key check."}, {"type": "input.done"}]
    transcript = await speak(socket_server, messages, query=query, headers=headers)
    if accepted:
        assert transcript.close_code == 1000 and transcript.audio
        # uvicorn logs each accepted socket with its query string: the key must not reach the log.
        assert API_KEY not in socket_server.log_path.read_text(errors="replace")
    else:
        assert [event["error"]["type"] for event in transcript.of_type("error")] == ["authentication_error"]
        assert transcript.close_code == 1008 and not transcript.audio


def test_sessions_are_counted(socket_server: RunningServer) -> None:
    metrics = httpx.get(f"{socket_server.url}/metrics").text
    assert 'chatterbox_stream_sessions_total{outcome="done",protocol="websocket"}' in metrics
    assert 'chatterbox_stream_sessions_open{protocol="websocket"} 0.0' in metrics
    assert "chatterbox_stream_segment_first_audio_seconds_count" in metrics
