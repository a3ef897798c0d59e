"""The server's concurrent syntheses share one continuous T3 batch, visible on /metrics."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from .conftest import CLIENT_TIMEOUT_S, RunningServer, gauge, wait_until_idle

pytestmark = pytest.mark.e2e

TEXT = "Batching shares every decode step between requests that run at the same time."


def test_batch_metrics_exist_from_startup(server: RunningServer) -> None:
    text = httpx.get(f"{server.url}/metrics").text
    for name in (
        "chatterbox_batch_size_count",
        "chatterbox_t3_batch_tokens_per_second_count",
        "chatterbox_s3gen_batch_size_count",
    ):
        assert any(line.startswith(name + " ") for line in text.splitlines()), name


async def test_concurrent_requests_share_decode_steps(server: RunningServer) -> None:
    steps_before = gauge(server, "chatterbox_batch_size_count")
    rows_before = gauge(server, "chatterbox_batch_size_sum")
    body = {"model": "tts-1", "input": TEXT, "voice": "alloy", "response_format": "pcm"}
    async with httpx.AsyncClient(base_url=server.url, timeout=CLIENT_TIMEOUT_S) as http:
        responses = await asyncio.gather(
            *(http.post("/v1/audio/speech", json={**body, "seed": seed}) for seed in range(4))
        )
    assert all(response.status_code == 200 and response.content for response in responses)
    wait_until_idle(server)
    steps = gauge(server, "chatterbox_batch_size_count") - steps_before
    requests_stepped = gauge(server, "chatterbox_batch_size_sum") - rows_before
    assert steps > 0
    # The shared server runs two workers: some steps decoded both requests at once.
    assert requests_stepped > steps


def test_audio_chunks_go_through_the_shared_s3gen_batcher(server: RunningServer) -> None:
    calls_before = gauge(server, "chatterbox_s3gen_batch_size_count")
    windows_before = gauge(server, "chatterbox_s3gen_batch_size_sum")
    body = {"model": "tts-1", "input": TEXT, "voice": "alloy", "response_format": "pcm"}
    response = httpx.post(f"{server.url}/v1/audio/speech", json=body, timeout=CLIENT_TIMEOUT_S)
    assert response.status_code == 200 and response.content
    wait_until_idle(server)
    # Every chunk window was rendered by the batcher: one call per window when the stream runs alone.
    calls = gauge(server, "chatterbox_s3gen_batch_size_count") - calls_before
    assert calls >= 2 and gauge(server, "chatterbox_s3gen_batch_size_sum") - windows_before == calls
