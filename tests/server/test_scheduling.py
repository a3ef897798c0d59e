"""Queue and workers under load: concurrent requests never mix audio, overload is 429 only, disconnects free slots."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from .conftest import CLIENT_TIMEOUT_S, RunningServer, gauge, start_server, wait_until_idle

# Every test here talks to a real chatterbox-server process.
pytestmark = pytest.mark.e2e

LONG_TEXT = " ".join(f"Sentence number {index} keeps the worker busy for a while." for index in range(40))


def speech_body(seed: int, text: str = "Never mix audio.") -> dict:
    return {"model": "tts-1", "input": text, "voice": "alloy", "response_format": "pcm", "seed": seed}


async def test_sixteen_concurrent_requests_equal_the_same_requests_alone(server: RunningServer) -> None:
    seeds = range(100, 116)
    async with httpx.AsyncClient(base_url=server.url, timeout=CLIENT_TIMEOUT_S) as http:
        together = await asyncio.gather(*(http.post("/v1/audio/speech", json=speech_body(s)) for s in seeds))
        alone = [await http.post("/v1/audio/speech", json=speech_body(seed)) for seed in seeds]
    assert all(response.status_code == 200 for response in together + alone)
    for seed, concurrent, solo in zip(seeds, together, alone, strict=True):
        assert concurrent.content == solo.content, f"seed {seed}: concurrent audio differs from solo audio"
    assert len({response.content for response in alone}) == len(alone), "distinct seeds, distinct audio"


@pytest.fixture(scope="module")
def small_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One worker and one queue place: the third simultaneous request is over capacity."""
    running = start_server(tmp_path_factory.mktemp("small"), max_concurrent=1, max_queue=1)
    yield running
    running.stop()


async def test_overload_gives_only_429_with_retry_after(small_server: RunningServer) -> None:
    async def status_of_one(http: httpx.AsyncClient, seed: int) -> httpx.Response:
        # Only the status matters: leaving early frees the worker for the queued request.
        async with http.stream("POST", "/v1/audio/speech", json=speech_body(seed, LONG_TEXT)) as response:
            if response.status_code != 200:
                await response.aread()
            return response

    async with httpx.AsyncClient(base_url=small_server.url, timeout=CLIENT_TIMEOUT_S) as http:
        responses = await asyncio.gather(*(status_of_one(http, seed) for seed in range(10)))
    statuses = sorted(response.status_code for response in responses)
    assert set(statuses) <= {200, 429}, statuses
    assert statuses.count(200) >= 1 and statuses.count(429) >= 1, statuses
    for response in responses:
        if response.status_code == 429:
            assert int(response.headers["Retry-After"]) >= 1
            assert response.json()["error"]["type"] == "rate_limit_error"
    assert gauge(small_server, "chatterbox_queue_rejections_total") >= statuses.count(429)


def test_disconnect_mid_stream_frees_the_slot(small_server: RunningServer) -> None:
    wait_until_idle(small_server)
    audio_before = gauge(small_server, "chatterbox_audio_seconds_total")
    with (
        httpx.Client(base_url=small_server.url, timeout=CLIENT_TIMEOUT_S) as http,
        http.stream("POST", "/v1/audio/speech", json=speech_body(1, LONG_TEXT)) as response,
    ):
        assert response.status_code == 200
        audio = response.iter_raw()  # keep a reference: a dropped iterator closes the response
        next(audio)
        assert gauge(small_server, "chatterbox_inflight_requests") == 1
    # Leaving the block closed the connection mid-stream; the worker stops and the slot comes back.
    wait_until_idle(small_server)
    # Only finished requests count their audio: the abandoned one stopped before its end.
    assert gauge(small_server, "chatterbox_audio_seconds_total") == audio_before
    with httpx.Client(base_url=small_server.url, timeout=CLIENT_TIMEOUT_S) as http:
        follow_up = http.post("/v1/audio/speech", json=speech_body(2))
    assert follow_up.status_code == 200


def test_disconnect_while_queued_gives_the_place_back(small_server: RunningServer) -> None:
    wait_until_idle(small_server)
    with (
        httpx.Client(base_url=small_server.url, timeout=CLIENT_TIMEOUT_S) as http,
        http.stream("POST", "/v1/audio/speech", json=speech_body(3, LONG_TEXT)) as busy,
    ):
        assert busy.status_code == 200
        # This one waits for the only worker; give up on it before it starts.
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{small_server.url}/v1/audio/speech", json=speech_body(4, LONG_TEXT), timeout=1.0)
    wait_until_idle(small_server)
