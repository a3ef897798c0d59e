"""Admission control: how many requests the server takes on, and how long they may wait and run.

A request is admitted (or refused with 429) at once, then waits for one of `max_concurrent` slots; the
engine runs the admitted work in its own loop thread (`chatterbox_engine.engine_core`) and the request
awaits its audio on the event loop, so no thread is held per request and the model never runs on the
event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

from .errors import Overloaded, TimedOut
from .metrics import ServerMetrics

T = TypeVar("T")
# No engine step (one token, one audio window) legitimately outlasts a whole request's time; one still
# running this long past the request timeout is wedged (e.g. a hung GPU kernel): only a restart frees it.
STUCK_GRACE_S = 60.0


class AdmissionControl:
    def __init__(
        self, *, max_concurrent: int, max_queue: int, timeout_s: float, metrics: ServerMetrics
    ) -> None:
        self.max_concurrent = max_concurrent
        self.max_queue = max_queue
        self.timeout_s = timeout_s
        self._metrics = metrics
        self._slots = asyncio.Semaphore(max_concurrent)
        self._waiting = 0
        self._running = 0
        # Typical job length, for a Retry-After that reflects the real backlog.
        self._average_job_s = 2.0

    @property
    def waiting(self) -> int:
        return self._waiting

    @property
    def running(self) -> int:
        return self._running

    def engine_is_stuck(self, loop_busy_s: float) -> bool:
        """Whether the engine's loop, `loop_busy_s` into one step, is wedged (liveness)."""
        return loop_busy_s > self.timeout_s + STUCK_GRACE_S

    def admit(self, *, timeout_s: float | None = None) -> Admission:
        """Reserves a place in the queue or raises `Overloaded` (429) when it is full.

        `timeout_s` overrides the per-request timeout (`math.inf`: none, for the warm-up)."""
        if self._waiting + self._running >= self.max_concurrent + self.max_queue:
            self._metrics.queue_rejections.inc()
            backlog_rounds = (self._waiting + 1) / self.max_concurrent
            retry_after = max(1, math.ceil(backlog_rounds * self._average_job_s))
            raise Overloaded(
                f"the server is busy ({self._running} running, {self._waiting} queued); retry later",
                retry_after_s=retry_after,
            )
        self._waiting += 1
        self._publish()
        return Admission(self, time.monotonic() + (self.timeout_s if timeout_s is None else timeout_s))

    def leave_queue(self) -> None:
        self._waiting -= 1
        self._publish()

    async def acquire_slot(self, deadline: float) -> None:
        """Waits for a free slot until deadline (`TimedOut`)."""
        remaining = max(0.0, deadline - time.monotonic())
        try:
            async with asyncio.timeout(remaining if math.isfinite(remaining) else None):
                await self._slots.acquire()
        except TimeoutError:
            raise TimedOut("timed out waiting for a free slot; retry later") from None
        self._running += 1
        self._publish()

    def release_slot(self, seconds: float) -> None:
        self._running -= 1
        self._slots.release()
        self._average_job_s = 0.8 * self._average_job_s + 0.2 * seconds
        self._publish()

    def _publish(self) -> None:
        self._metrics.queue_depth.set(self._waiting)
        self._metrics.inflight.set(self._running)


class Admission:
    """One admitted request: holds its queue place until it gets a slot (`slot` or `run`, once)."""

    def __init__(self, control: AdmissionControl, deadline: float) -> None:
        self._control = control
        self._deadline = deadline
        self._queued = True

    def withdraw(self) -> None:
        """Gives the queue place back when the request ends before it ran."""
        if self._queued:
            self._queued = False
            self._control.leave_queue()

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Holds a slot while inside (waiting for it at most until the request's deadline)."""
        try:
            await self._control.acquire_slot(self._deadline)
        finally:
            self.withdraw()
        started = time.monotonic()
        try:
            yield
        finally:
            self._control.release_slot(time.monotonic() - started)

    async def run(self, make_items: Callable[[], AsyncIterator[T]]) -> AsyncIterator[T]:
        """The items of make_items() in a slot, each within the request's deadline (`TimedOut`)."""
        async with self.slot():
            items = make_items()
            try:
                while True:
                    remaining = self._deadline - time.monotonic()
                    try:
                        async with asyncio.timeout(remaining if math.isfinite(remaining) else None):
                            item = await anext(items)
                    except StopAsyncIteration:
                        return
                    except TimeoutError:
                        raise TimedOut("the request took longer than the server's timeout") from None
                    yield item
            finally:
                await items.aclose()
