"""The server's concurrent syntheses share one continuous T3 batch, visible on /metrics."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import torch
from chatterbox_engine.engine_core import overlap_wins
from chatterbox_server.config import Settings
from chatterbox_server.engine_adapter import EngineAdapter

from .conftest import CLIENT_TIMEOUT_S, RunningServer, gauge, start_server, wait_until_idle

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


@pytest.fixture(scope="module")
def s3gen_batching_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """BATCH_S3GEN on, as on a GPU by default (a CPU server leaves it off)."""
    running = start_server(tmp_path_factory.mktemp("s3gen-batching"), max_concurrent=3, batch_s3gen="true")
    yield running
    running.stop()


def pcm_samples(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200 and response.content, response.text
    return np.frombuffer(response.content, dtype="<i2").astype(np.int32)


async def test_shared_s3gen_calls_keep_each_requests_audio(s3gen_batching_server: RunningServer) -> None:
    server = s3gen_batching_server
    calls_before = gauge(server, "chatterbox_s3gen_batch_size_count")
    windows_before = gauge(server, "chatterbox_s3gen_batch_size_sum")
    body = {"model": "tts-1", "input": TEXT, "voice": "alloy", "response_format": "pcm"}
    async with httpx.AsyncClient(base_url=server.url, timeout=CLIENT_TIMEOUT_S) as http:
        together = await asyncio.gather(
            *(http.post("/v1/audio/speech", json={**body, "seed": s}) for s in range(3))
        )
        alone = [await http.post("/v1/audio/speech", json={**body, "seed": seed}) for seed in range(3)]
    wait_until_idle(server)
    for concurrent, solo in zip(together, alone, strict=True):
        concurrent, solo = pcm_samples(concurrent), pcm_samples(solo)
        # Same tokens, same noise: only float rounding of the shared matrix products may move a sample by a step.
        assert concurrent.shape == solo.shape
        assert np.abs(concurrent - solo).max() <= 2
    # Every chunk of every request went through the S3Gen batcher (several per call when they met).
    calls = gauge(server, "chatterbox_s3gen_batch_size_count") - calls_before
    windows = gauge(server, "chatterbox_s3gen_batch_size_sum") - windows_before
    assert calls >= 6 and windows >= calls


def test_a_cpu_server_leaves_s3gen_unbatched_so_concurrent_audio_is_bit_identical(
    server: RunningServer,
) -> None:
    # The shared CPU server (two workers) runs T3 batched but S3Gen per request; test_scheduling checks the bytes.
    body = {"model": "tts-1", "input": TEXT, "voice": "alloy", "response_format": "pcm"}
    calls_before = gauge(server, "chatterbox_s3gen_batch_size_count")
    assert httpx.post(f"{server.url}/v1/audio/speech", json=body, timeout=CLIENT_TIMEOUT_S).status_code == 200
    wait_until_idle(server)
    assert gauge(server, "chatterbox_s3gen_batch_size_count") == calls_before


def test_overlap_s3gen_setting_switches_the_s3gen_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    """OVERLAP_S3GEN=off runs S3Gen and T3 on one thread; auto leaves the engine's rule (on with 2+ CPU cores)."""
    import chatterbox_engine as ce

    engine = ce.load("random:tiny", watermark=False)
    adapter = EngineAdapter(engine)
    for value, overlap in (("auto", None), ("off", False), ("on", True)):
        monkeypatch.setenv("OVERLAP_S3GEN", value)
        setting = Settings().overlap_s3gen
        assert setting == value
        adapter.enable_batching(2, lambda requests, seconds: None, None, lambda windows: None, setting)
        assert engine._core.config.overlap_s3gen is overlap
        assert engine._core.overlap_s3gen is (
            overlap_wins(torch.device("cpu")) if overlap is None else overlap
        )
    engine.close(timeout_s=60)
