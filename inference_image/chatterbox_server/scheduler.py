"""Admission control and worker threads: the model never runs on the event loop.

A request is admitted (or refused with 429) at once, waits for one of `max_concurrent` worker slots,
then its blocking iterator runs in a worker thread while the event loop receives the items. The slot
is released only when the worker thread has really stopped, so cancelled work never oversubscribes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from .errors import Overloaded, TimedOut
from .metrics import ServerMetrics

T = TypeVar("T")
logger = logging.getLogger(__name__)

_ITEM, _ERROR, _END = range(3)
# A job still running this long after its deadline has not reached an item boundary, where it would
# have stopped: the engine is wedged (e.g. a hung GPU kernel), and only a restart frees its slot.
STUCK_GRACE_S = 60.0


class Scheduler:
    def __init__(
        self, *, max_concurrent: int, max_queue: int, timeout_s: float, metrics: ServerMetrics
    ) -> None:
        self.max_concurrent = max_concurrent
        self.max_queue = max_queue
        self.timeout_s = timeout_s
        self._metrics = metrics
        self._executor = ThreadPoolExecutor(max_concurrent, thread_name_prefix="synthesis")
        self._slots = asyncio.Semaphore(max_concurrent)
        self._waiting = 0
        self._running = 0
        # Typical job length, for a Retry-After that reflects the real backlog.
        self._average_job_s = 2.0
        # Deadline of each job a worker thread is running (written by the workers, read by liveness).
        self._deadlines: dict[int, float] = {}

    @property
    def waiting(self) -> int:
        return self._waiting

    @property
    def running(self) -> int:
        return self._running

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

    def is_stuck(self) -> bool:
        """Whether a worker has been running a job for STUCK_GRACE_S past its deadline (liveness)."""
        now = time.monotonic()
        return any(now > deadline + STUCK_GRACE_S for deadline in list(self._deadlines.values()))

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _publish(self) -> None:
        self._metrics.queue_depth.set(self._waiting)
        self._metrics.inflight.set(self._running)

    def _job_finished(self, seconds: float) -> None:
        self._running -= 1
        self._slots.release()
        self._average_job_s = 0.8 * self._average_job_s + 0.2 * seconds
        self._publish()


class Admission:
    """One admitted request. `run` streams its work from a worker thread; use it exactly once."""

    def __init__(self, scheduler: Scheduler, deadline: float) -> None:
        self._scheduler = scheduler
        self._deadline = deadline
        self._queued = True

    def withdraw(self) -> None:
        """Gives the queue place back when the request ends before it ran."""
        if self._queued:
            self._queued = False
            self._scheduler._waiting -= 1
            self._scheduler._publish()

    async def run(self, make_items: Callable[[], Iterator[T]]) -> AsyncIterator[T]:
        scheduler = self._scheduler
        try:
            remaining = max(0.0, self._deadline - time.monotonic())
            async with asyncio.timeout(remaining if math.isfinite(remaining) else None):
                await scheduler._slots.acquire()
        except TimeoutError:
            raise TimedOut("timed out waiting for a free worker; retry later") from None
        finally:
            self.withdraw()
        scheduler._running += 1
        scheduler._publish()

        loop = asyncio.get_running_loop()
        outbox: asyncio.Queue[tuple[int, object]] = asyncio.Queue()
        stop = threading.Event()
        deadline = self._deadline

        def deliver(kind: int, value: object) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is gone during interpreter shutdown
                loop.call_soon_threadsafe(outbox.put_nowait, (kind, value))

        def work() -> None:
            started = time.monotonic()
            items = None
            scheduler._deadlines[id(stop)] = deadline
            try:
                items = make_items()
                for item in items:
                    if time.monotonic() > deadline:
                        deliver(_ERROR, TimedOut("the request took longer than the server's timeout"))
                        break
                    deliver(_ITEM, item)
                    if stop.is_set():
                        break
            except BaseException as error:  # handed to the request, which raises it on the loop
                deliver(_ERROR, error)
            finally:
                try:
                    close = getattr(items, "close", None)  # a generator: stop its work now
                    if close is not None:
                        close()
                except Exception:
                    logger.exception("stopping a synthesis failed")
                finally:
                    # Always: the request must end and the slot must come back, whatever happened above.
                    scheduler._deadlines.pop(id(stop), None)
                    deliver(_END, None)
                    with contextlib.suppress(RuntimeError):
                        loop.call_soon_threadsafe(scheduler._job_finished, time.monotonic() - started)

        loop.run_in_executor(scheduler._executor, work)
        try:
            while True:
                kind, value = await outbox.get()
                if kind == _END:
                    return
                if kind == _ERROR:
                    raise value  # type: ignore[misc]
                yield value  # type: ignore[misc]
        finally:
            # Client gone or consumer done: the worker stops at its next item boundary.
            stop.set()
