"""Bad input gets a clear 4xx in OpenAI's error shape, never a 500 or a hang."""

from __future__ import annotations

import io
import wave

import pytest

from .conftest import RunningServer, speech_sample

# Every test here talks to a real chatterbox-server process.
pytestmark = pytest.mark.e2e


def speech(server: RunningServer, **overrides):
    body = {"model": "tts-1", "input": "Hi there.", "voice": "alloy", **overrides}
    body = {key: value for key, value in body.items() if value is not ...}
    with server.client() as http:
        return http.post("/v1/audio/speech", json=body)


def long_silence_wav(seconds: float, rate: int = 8_000) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"\0\0" * int(seconds * rate))
    return buffer.getvalue()


def assert_openai_error(response, status: int | tuple[int, ...], *words: str) -> None:
    statuses = status if isinstance(status, tuple) else (status,)
    assert response.status_code in statuses, response.text
    error = response.json()["error"]
    assert set(error) >= {"message", "type", "param", "code"}
    for word in words:
        assert word.lower() in error["message"].lower(), error["message"]


@pytest.mark.parametrize(
    ("overrides", "status", "words"),
    [
        ({"input": ""}, 400, ("input",)),
        ({"input": "x" * 4097}, 400, ("input", "4096")),
        ({"voice": "nobody-by-that-name"}, 400, ("voice", "not found")),
        ({"voice": {"id": "voice_000000000000000000000000"}}, 400, ("not found",)),
        ({"response_format": "ogg"}, 400, ("response_format",)),
        ({"speed": 0}, 400, ("speed",)),
        ({"speed": 4.5}, 400, ("speed",)),
        ({"model": "whisper-1"}, 400, ("model", "chatterbox")),
        ({"stream_format": "video"}, 400, ("stream_format",)),
        ({"temperature": 0}, 400, ("temperature",)),
        ({"cfg_weight": 10.5}, 400, ("cfg_weight",)),
        ({"repetition_penalty": 0}, 400, ("repetition_penalty",)),
        ({"seed": -1}, 400, ("seed",)),
        ({"unknown_knob": 1}, 400, ("unknown_knob",)),
        ({"input": ...}, 400, ("input",)),
    ],
    ids=lambda value: str(value)[:40],
)
def test_bad_speech_requests(
    server: RunningServer, overrides: dict, status: int, words: tuple[str, ...]
) -> None:
    assert_openai_error(speech(server, **overrides), status, *words)


def test_whitespace_only_input_is_refused_by_the_engine_as_bad_input(server: RunningServer) -> None:
    response = speech(server, input="   \n ")
    assert_openai_error(response, 400)
    assert response.json()["error"]["param"] == "input"


@pytest.mark.parametrize("voice", [5, {}, {"id": "default", "x": 1}, [], "", "v" * 201])
def test_malformed_voice_names_the_field_not_pydantic_internals(server: RunningServer, voice) -> None:
    response = speech(server, voice=voice)
    assert_openai_error(response, 400, "voice must be a voice name, an id, or")
    assert response.json()["error"]["param"] == "voice"


@pytest.mark.parametrize("body", [b"{not json", b"hello"])
def test_malformed_json_is_a_400(server: RunningServer, body: bytes) -> None:
    with server.client() as http:
        response = http.post("/v1/audio/speech", content=body, headers={"content-type": "application/json"})
    assert_openai_error(response, 400, "request body is not valid JSON")
    assert response.json()["error"]["param"] is None


@pytest.mark.parametrize(
    ("name", "sample", "status", "words"),
    [
        ("Not Audio", b"this is a text file, not audio" * 10, 400, ("audio",)),
        ("Empty", b"", 400, ("empty",)),
        ("Nine Minutes", long_silence_wav(9 * 60), 400, ("longer", "limit")),
        ("Too Big", b"\0" * (11 * 1024 * 1024), 413, ("larger",)),
        ("Too Short", speech_sample(seconds=0.5, audio_format="wav"), 400, ()),
        ("../../etc/passwd", speech_sample(), 400, ("name",)),
        ("voices/evil", speech_sample(), 400, ("name",)),
        ("..", speech_sample(), 400, ("name",)),
        ("default", speech_sample(), 400, ("reserved",)),
        ("", speech_sample(), 400, ("name must not be empty", "1-64 characters")),
        ("n" * 65, speech_sample(), 400, ("1-64 characters",)),
        ("n" * 201, speech_sample(), 400, ("1-64 characters",)),
    ],
    ids=lambda value: str(value)[:20] if not isinstance(value, bytes) else f"{len(value)} bytes",
)
def test_bad_voice_uploads(server: RunningServer, name: str, sample: bytes, status: int, words) -> None:
    with server.client() as http:
        response = http.post(
            "/v1/audio/voices", data={"name": name}, files={"audio_sample": ("clip.wav", sample)}
        )
    assert_openai_error(response, status, *words)


@pytest.mark.parametrize("voice_id", ["..%2F..%2Findex.json", "voice_..", "%2Fetc%2Fpasswd", "VOICE_X"])
def test_path_like_voice_ids_are_just_not_found(server: RunningServer, voice_id: str) -> None:
    with server.client() as http:
        for method, suffix in (("GET", ""), ("DELETE", ""), ("GET", "/sample")):
            response = http.request(method, f"/v1/audio/voices/{voice_id}{suffix}")
            assert response.status_code == 404, (method, voice_id, response.text)


def test_a_voice_name_in_the_path_points_to_ids(server: RunningServer) -> None:
    with server.client() as http:
        for method in ("GET", "DELETE"):
            assert_openai_error(http.request(method, "/v1/audio/voices/Some Name"), 404, "not names")


def test_deleting_the_built_in_voice_is_refused(server: RunningServer) -> None:
    with server.client() as http:
        assert_openai_error(http.delete("/v1/audio/voices/default"), 400, ("built-in"))
