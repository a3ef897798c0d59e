"""The official `openai` client against a running server: formats, streaming, SSE, models, health, metrics."""

from __future__ import annotations

import base64
import io
import json

import httpx
import numpy as np
import pytest
import soundfile
from openai import OpenAI

from .conftest import CLIENT_TIMEOUT_S, RunningServer, decode_audio, pcm_seconds

# Every test here talks to a real chatterbox-server process.
pytestmark = pytest.mark.e2e

TEXT = "Hello from Chatterbox."


@pytest.fixture(scope="module")
def client(server: RunningServer) -> OpenAI:
    return OpenAI(base_url=f"{server.url}/v1", api_key="not-needed", max_retries=0, timeout=CLIENT_TIMEOUT_S)


@pytest.fixture(scope="module")
def reference_pcm(client: OpenAI) -> bytes:
    response = client.audio.speech.create(
        model="tts-1", voice="alloy", input=TEXT, response_format="pcm", extra_body={"seed": 7}
    )
    return response.content


def test_pcm_is_raw_24khz_s16le(reference_pcm: bytes) -> None:
    assert len(reference_pcm) % 2 == 0
    assert 0.2 < pcm_seconds(reference_pcm) < 60
    samples = np.frombuffer(reference_pcm, "<i2")
    assert samples.std() > 0, "the clip is silent"


@pytest.mark.parametrize(
    ("response_format", "codec", "sample_rate"),
    [
        ("mp3", "mp3", 24_000),
        # Opus always decodes at 48 kHz, whatever the input rate was.
        ("opus", "opus", 48_000),
        ("aac", "aac", 24_000),
        ("flac", "flac", 24_000),
        ("wav", "pcm_s16le", 24_000),
    ],
)
def test_every_format_decodes_with_the_right_rate_and_length(
    client: OpenAI, reference_pcm: bytes, response_format: str, codec: str, sample_rate: int
) -> None:
    response = client.audio.speech.create(
        model="chatterbox", voice="alloy", input=TEXT, response_format=response_format, extra_body={"seed": 7}
    )
    samples, rate, decoded_codec = decode_audio(response.content)
    assert decoded_codec.startswith(codec)
    assert rate == sample_rate
    # Same seed, same audio: the encoded clip lasts as long as the raw one (give or take codec padding).
    assert abs(samples.size / rate - pcm_seconds(reference_pcm)) < 0.15


def test_flac_is_a_complete_file_that_soundfile_reads(client: OpenAI, reference_pcm: bytes) -> None:
    response = client.audio.speech.create(
        model="tts-1", voice="alloy", input=TEXT, response_format="flac", extra_body={"seed": 7}
    )
    samples, rate = soundfile.read(io.BytesIO(response.content), dtype="int16")
    assert rate == 24_000
    # Sent whole, its header states the length; lossless, its samples are the PCM clip's (up to how the
    # encoder rounds float samples to 16 bits).
    pcm = np.frombuffer(reference_pcm, "<i2").astype(np.int32)
    assert samples.shape == pcm.shape
    assert np.abs(samples.astype(np.int32) - pcm).max() <= 1


def test_speed_changes_duration_not_rate(client: OpenAI, reference_pcm: bytes) -> None:
    fast = client.audio.speech.create(
        model="tts-1", voice="alloy", input=TEXT, response_format="pcm", speed=2.0, extra_body={"seed": 7}
    )
    assert pcm_seconds(fast.content) == pytest.approx(pcm_seconds(reference_pcm) / 2, rel=0.1)


def test_streaming_response_delivers_the_same_clip_in_pieces(client: OpenAI, reference_pcm: bytes) -> None:
    # Another model alias, same seed: the same audio, byte for byte.
    with client.audio.speech.with_streaming_response.create(
        model="gpt-4o-mini-tts", voice="alloy", input=TEXT, response_format="pcm", extra_body={"seed": 7}
    ) as response:
        assert response.headers["content-type"].startswith("audio/pcm")
        pieces = list(response.iter_bytes())
    assert b"".join(pieces) == reference_pcm


def test_sse_deltas_concatenate_to_the_full_clip(server: RunningServer, reference_pcm: bytes) -> None:
    body = {"model": "chatterbox", "input": TEXT, "voice": "alloy", "response_format": "pcm",
            "stream_format": "sse", "seed": 7}  # fmt: skip
    with server.client() as http, http.stream("POST", "/v1/audio/speech", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [
            json.loads(line[len("data: ") :]) for line in response.iter_lines() if line.startswith("data: ")
        ]
    deltas = [event for event in events if event["type"] == "speech.audio.delta"]
    done = events[-1]
    assert deltas and done["type"] == "speech.audio.done"
    assert b"".join(base64.b64decode(event["audio"]) for event in deltas) == reference_pcm
    usage = done["usage"]
    assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]


def test_sse_in_a_compressed_format_carries_that_format(server: RunningServer) -> None:
    body = {"input": TEXT, "response_format": "mp3", "stream_format": "sse", "seed": 3}
    with server.client() as http:
        response = http.post("/v1/audio/speech", json=body)
    events = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")]
    clip = b"".join(
        base64.b64decode(event["audio"]) for event in events if event["type"] == "speech.audio.delta"
    )
    samples, rate, codec = decode_audio(clip)
    assert codec.startswith("mp3") and rate == 24_000 and samples.size > 0


def test_models_lists_chatterbox_and_openai_aliases(client: OpenAI) -> None:
    ids = {model.id for model in client.models.list()}
    assert {"chatterbox", "tts-1", "tts-1-hd", "gpt-4o-mini-tts"} <= ids


def test_health_and_readiness(server: RunningServer) -> None:
    assert httpx.get(f"{server.url}/healthz").json()["status"] == "ok"
    ready = httpx.get(f"{server.url}/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"


def test_metrics_expose_the_contracted_names(server: RunningServer, reference_pcm: bytes) -> None:
    text = httpx.get(f"{server.url}/metrics").text
    for name in (
        "chatterbox_requests_total",
        "chatterbox_request_duration_seconds_bucket",
        "chatterbox_time_to_first_audio_seconds_bucket",
        "chatterbox_real_time_factor_bucket",
        "chatterbox_t3_tokens_total",
        "chatterbox_t3_tokens_per_second_bucket",
        "chatterbox_audio_seconds_total",
        "chatterbox_queue_depth",
        "chatterbox_inflight_requests",
        "chatterbox_queue_rejections_total",
        'chatterbox_model_info{device="cpu"',
        "chatterbox_voices",
        'chatterbox_gpu_memory_bytes{kind="allocated"}',
        "chatterbox_ready 1.0",
    ):
        assert name in text, name
    assert 'route="/v1/audio/speech",status="200"' in text
    assert 'format="pcm"' in text
