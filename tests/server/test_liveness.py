"""Liveness notices a wedged engine: its loop thread stuck in one step longer than any request may run."""

from __future__ import annotations

import asyncio
import threading

import chatterbox_engine
import httpx
import pytest
from chatterbox_server import admission as admission_module
from chatterbox_server.admission import AdmissionControl
from chatterbox_server.app import Runtime
from chatterbox_server.engine_adapter import EngineAdapter
from chatterbox_server.errors import NotReady
from chatterbox_server.metrics import ServerMetrics
from chatterbox_server.routers.system import router
from fastapi import FastAPI


def probed_engine(timeout_s: float) -> tuple[chatterbox_engine.Engine, EngineAdapter, FastAPI]:
    """A tiny engine, its adapter, and an app serving only the probes over them (loaded and ready)."""
    tts = chatterbox_engine.load("random:tiny", watermark=False)
    engine = EngineAdapter(tts)
    app = FastAPI()
    app.include_router(router)
    app.state.engine = engine
    app.state.admission = AdmissionControl(
        max_concurrent=1, max_queue=1, timeout_s=timeout_s, metrics=ServerMetrics()
    )
    app.state.runtime = Runtime()
    app.state.runtime.loaded = True
    return tts, engine, app


async def test_a_wedged_engine_loop_fails_liveness_and_an_idle_one_does_not(monkeypatch) -> None:
    monkeypatch.setattr(admission_module, "STUCK_GRACE_S", 0.2)
    tts, engine, app = probed_engine(timeout_s=0.1)
    release = threading.Event()
    embed_conditioning = tts.t3.embed_conditioning

    def hung_kernel(*args):  # the loop's first model call for a request never returns (until released)
        release.wait(30)
        return embed_conditioning(*args)

    monkeypatch.setattr(tts.t3, "embed_conditioning", hung_kernel)
    request = engine.request("Hello there.", engine.default_voice, language="en", seed=1, options={})

    async def speak() -> int:
        return sum([piece.audio.size async for piece in engine.stream(request)])

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://server") as http:
        assert (await http.get("/healthz")).status_code == 200  # the loop has not started yet
        speaking = asyncio.create_task(speak())
        await asyncio.sleep(0.6)  # past the 0.1 s timeout and the 0.2 s grace
        stuck = await http.get("/healthz")
        assert stuck.status_code == 503 and stuck.json()["status"] == "stuck"
        release.set()
        assert await speaking > 0
        await asyncio.sleep(0.6)  # idle as long again: waiting for work is not being stuck
        assert (await http.get("/healthz")).status_code == 200


class _LoopBug(BaseException):
    """Escapes the loop's per-step handling, as only a bug in the loop itself would."""


async def test_a_dead_engine_loop_fails_liveness_readiness_and_requests_with_503(monkeypatch) -> None:
    tts, engine, app = probed_engine(timeout_s=30)

    def loop_bug():
        raise _LoopBug("bug")

    request = engine.request("Hello there.", engine.default_voice, language="en", seed=1, options={})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://server") as http:
        assert (await http.get("/healthz")).status_code == 200
        assert (await http.get("/readyz")).status_code == 200
        monkeypatch.setattr(tts._core, "step", loop_bug)
        for _ in range(2):  # the request in the loop as it dies, then one after
            with pytest.raises(NotReady, match="died"):
                async for _ in engine.stream(request):
                    pass
        dead = await http.get("/healthz")
        assert dead.status_code == 503 and dead.json()["status"] == "dead"
        assert (await http.get("/readyz")).status_code == 503


async def test_closing_the_engine_ends_a_running_stream_with_503_and_joins_its_loop() -> None:
    tts = chatterbox_engine.load("random:tiny", watermark=False)
    engine = EngineAdapter(tts)
    request = engine.request("Hello there. " * 6, engine.default_voice, language="en", seed=1, options={})
    stream = engine.stream(request)
    await anext(stream)
    loop_thread = tts._core._thread
    await engine.close()
    assert not loop_thread.is_alive()
    with pytest.raises(NotReady, match="shutting down"):
        async for _ in stream:
            pass
