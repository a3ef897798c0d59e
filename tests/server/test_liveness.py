"""Liveness notices a wedged engine: a job far past its deadline without reaching an item boundary."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator

import httpx
from chatterbox_server import scheduler as scheduling
from chatterbox_server.metrics import ServerMetrics
from chatterbox_server.routers.system import router
from fastapi import FastAPI


async def test_a_job_stuck_past_its_deadline_fails_liveness(monkeypatch) -> None:
    monkeypatch.setattr(scheduling, "STUCK_GRACE_S", 0.2)
    scheduler = scheduling.Scheduler(max_concurrent=1, max_queue=1, timeout_s=0.1, metrics=ServerMetrics())
    app = FastAPI()
    app.include_router(router)
    app.state.scheduler = scheduler
    release = threading.Event()

    def wedged() -> Iterator[bytes]:
        release.wait(10)  # a hung kernel: no item, so the worker never sees its deadline pass
        yield b""

    async def consume() -> None:
        with contextlib.suppress(Exception):
            async for _ in scheduler.admit().run(wedged):
                pass

    job = asyncio.create_task(consume())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://server") as http:
        assert (await http.get("/healthz")).status_code == 200  # busy, not yet past its deadline
        await asyncio.sleep(0.5)
        stuck = await http.get("/healthz")
        assert stuck.status_code == 503 and stuck.json()["status"] == "stuck"
        release.set()
        await job
        assert (await http.get("/healthz")).status_code == 200
    scheduler.shutdown()
