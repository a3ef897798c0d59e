"""POST /v1/audio/voice-conversion over raw HTTP against a real server: formats, streaming, voices, bad input."""

from __future__ import annotations

import base64
import io
import json
import wave

import httpx
import numpy as np
import pytest

from .conftest import RunningServer, decode_audio, gauge, pcm_seconds, speech_sample, wait_until_idle

pytestmark = pytest.mark.e2e

ROUTE = "/v1/audio/voice-conversion"
CONTAINERS = {"mp3": "mp3float", "opus": "opus", "aac": "aac", "flac": "flac", "wav": "pcm_s16le"}


def wav_file(samples: np.ndarray, rate: int) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return buffer.getvalue()


def convert(server: RunningServer, file: bytes | None, **fields):
    files = {"file": ("source.audio", file, "application/octet-stream")} if file is not None else None
    data = {key: str(value) for key, value in fields.items()}
    with server.client() as http:
        return http.post(ROUTE, files=files, data=data)


def assert_error(response, status: int, param: str | None, *words: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) >= {"message", "type", "param", "code"}
    assert error["param"] == param
    for word in words:
        assert word.lower() in error["message"].lower(), error["message"]


SOURCE = speech_sample(seconds=2.0, audio_format="mp3")


def test_pcm_has_the_source_length_at_24_khz_and_a_seed_repeats_it(server: RunningServer) -> None:
    first = convert(server, SOURCE, response_format="pcm", seed=3)
    assert first.status_code == 200, first.text
    assert first.headers["content-type"] == "audio/pcm"
    assert abs(pcm_seconds(first.content) - 2.0) <= 0.1  # the same words take the same time
    assert convert(server, SOURCE, response_format="pcm", seed=3).content == first.content


@pytest.mark.parametrize("audio_format", list(CONTAINERS))
def test_every_format_decodes_to_24_khz_audio(server: RunningServer, audio_format: str) -> None:
    response = convert(server, SOURCE, response_format=audio_format, seed=1)
    assert response.status_code == 200, response.text
    audio, rate, codec = decode_audio(response.content)
    assert rate == (48_000 if audio_format == "opus" else 24_000)
    assert codec == CONTAINERS[audio_format]
    assert 1.5 <= audio.size / rate <= 2.5


def test_sse_streams_deltas_then_done(server: RunningServer) -> None:
    response = convert(server, SOURCE, response_format="pcm", stream_format="sse", seed=2)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    events = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")]
    assert [e["type"] for e in events[:-1]] == ["speech.audio.delta"] * (len(events) - 1)
    assert events[-1]["type"] == "speech.audio.done" and events[-1]["usage"]["output_tokens"] == 50
    audio = b"".join(base64.b64decode(e["audio"]) for e in events[:-1])
    assert audio == convert(server, SOURCE, response_format="pcm", seed=2).content


def test_a_long_source_streams_in_several_chunks(server: RunningServer) -> None:
    source = wav_file(np.sin(np.linspace(0, 4000, 16_000 * 8)) * 0.3, 16_000)
    with (
        server.client() as http,
        http.stream(
            "POST", ROUTE, files={"file": ("long.wav", source)}, data={"response_format": "pcm", "seed": "0"}
        ) as response,
    ):
        assert response.status_code == 200
        pieces = [piece for piece in response.iter_raw() if piece]
    assert len(pieces) > 1
    assert abs(pcm_seconds(b"".join(pieces)) - 8.0) <= 0.1


def test_a_library_voice_and_an_openai_name_are_targets(server: RunningServer) -> None:
    with server.client() as http:
        created = http.post(
            "/v1/audio/voices",
            files={"audio_sample": ("ref.wav", speech_sample(3.0, "wav"))},
            data={"name": "conversion target"},
        )
    assert created.status_code == 200, created.text
    builtin = convert(server, SOURCE, response_format="pcm", seed=4).content
    by_name = convert(server, SOURCE, voice="conversion target", response_format="pcm", seed=4)
    by_id = convert(server, SOURCE, voice=created.json()["id"], response_format="pcm", seed=4)
    assert by_name.status_code == by_id.status_code == 200
    assert by_name.content == by_id.content != builtin
    assert convert(server, SOURCE, voice="alloy", response_format="pcm", seed=4).content == builtin


def test_sample_rates_mono_downmix_and_metrics(server: RunningServer) -> None:
    before = gauge(server, "chatterbox_audio_seconds_total")
    for rate in (8_000, 11_025, 44_100, 48_000):
        t = np.arange(rate) / rate
        response = convert(server, wav_file(0.3 * np.sin(2 * np.pi * 220 * t), rate), response_format="pcm")
        assert response.status_code == 200, (rate, response.text)
        assert abs(pcm_seconds(response.content) - 1.0) <= 0.1
    wait_until_idle(server)
    assert gauge(server, "chatterbox_audio_seconds_total") >= before + 3.5
    with server.client() as http:
        metrics = http.get("/metrics").text
    assert 'route="/v1/audio/voice-conversion",status="200"' in metrics.replace('format="pcm",', "")


def long_wav(seconds: float, rate: int = 8_000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    return wav_file(0.3 * np.sin(2 * np.pi * 200 * t), rate)


@pytest.mark.parametrize(
    ("file", "fields", "status", "param", "words"),
    [
        (b"", {}, 400, "file", ("empty",)),
        (b"this is not audio at all" * 10, {}, 400, "file", ("not a readable audio file",)),
        (wav_file(np.zeros(0), 16_000), {}, 400, "file", ("no audio",)),
        (wav_file(np.zeros(16_000), 16_000), {}, 400, "file", ("silent",)),
        (wav_file(np.zeros(800) + 0.1, 16_000), {}, 400, "file", ("at least 0.25 s",)),
        (long_wav(301), {}, 400, "file", ("longer than the 300 s limit",)),
        (wav_file(0.3 * np.ones(6_000), 6_000), {}, 400, "file", ("sample_rate",)),
        (SOURCE, {"voice": "nobody-by-that-name"}, 400, "voice", ("not found",)),
        (SOURCE, {"voice": "v" * 201}, 400, "voice", ("200 characters",)),
        (SOURCE, {"response_format": "ogg"}, 400, "response_format", ()),
        (SOURCE, {"stream_format": "video"}, 400, "stream_format", ()),
        (SOURCE, {"seed": "-1"}, 400, "seed", ()),
        (SOURCE, {"speed": "9"}, 400, "speed", ()),
        (SOURCE, {"unknown_field": "1"}, 400, "unknown_field", ()),
        (None, {}, 400, "file", ("required",)),
    ],
    ids=[
        "empty", "corrupt", "header-only", "silence", "too-short", "too-long", "rate-6khz", "unknown-voice",
        "voice-too-long", "format", "stream-format", "seed", "speed", "unknown-field", "no-file",
    ],
)  # fmt: skip
def test_bad_input_is_a_clear_400(server: RunningServer, file, fields, status, param, words) -> None:
    assert_error(convert(server, file, **fields), status, param, *words)


def test_an_upload_over_the_size_limit_is_413_before_it_is_read(server: RunningServer) -> None:
    response = convert(server, b"\0" * (11 * 1024 * 1024))
    assert response.status_code == 413, response.text
    assert "larger than" in response.json()["error"]["message"]
    wait_until_idle(server)


def test_api_keys_guard_conversion(tmp_path) -> None:
    from .conftest import start_server

    guarded = start_server(tmp_path, api_keys="sesame", warmup=False)
    try:
        assert_error(convert(guarded, SOURCE), 401, None, "missing api key")
        with guarded.client(headers={"Authorization": "Bearer sesame"}) as http:
            response = http.post(ROUTE, files={"file": ("s.mp3", SOURCE)}, data={"response_format": "wav"})
        assert response.status_code == 200 and response.content[:4] == b"RIFF"
    finally:
        guarded.stop()


def test_the_openai_client_posts_a_conversion_and_gets_typed_errors(server: RunningServer) -> None:
    """OpenAI's SDK has no conversion method, but its generic multipart `post` reaches the route, and a 400
    arrives as its BadRequestError carrying our message."""
    import openai

    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
    multipart = {"headers": {"Content-Type": "multipart/form-data"}}
    audio = client.post(
        "/audio/voice-conversion",
        cast_to=httpx.Response,
        body={"voice": "alloy", "response_format": "pcm", "seed": "3"},
        files=[("file", ("source.mp3", SOURCE))],
        options=multipart,
    )
    assert audio.content == convert(server, SOURCE, voice="alloy", response_format="pcm", seed=3).content
    with pytest.raises(openai.BadRequestError, match="not found"):
        client.post(
            "/audio/voice-conversion",
            cast_to=httpx.Response,
            body={"voice": "nobody-by-that-name"},
            files=[("file", ("source.mp3", SOURCE))],
            options=multipart,
        )
