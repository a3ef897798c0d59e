"""Batching S3Gen across concurrent streams: one flow + vocoder pass renders the chunk windows of many requests.

Streams decoded in one T3 batch advance a token per step together, so their chunks fall due at the same
step and their windows (left context + new tokens, over the same kind of reference prompt) have equal
shapes. Each stream's thread hands its window to `WindowBatcher.render` and blocks; a worker thread
gathers what arrives within a moment, groups equal-shape windows (`SynthesisWindow.batch_key`) and
renders each group with one `S3Gen.synthesize` call. Windows of other shapes simply run in their own
group, so nothing is padded and every stream gets the audio it would get alone (same generator, same
draws; only float rounding of the larger matrix products may differ).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from .s3gen import S3Gen, SynthesisWindow

log = logging.getLogger(__name__)

# Most windows one S3Gen call takes: beyond this a batch mostly adds memory (and what one failure touches).
MAX_WINDOWS = 16
# Adaptive wait for peers' windows, seconds: thread wake-ups take a few ms; a CPU S3Gen call takes seconds.
GATHER_BOUNDS = (0.002, 0.25)


@dataclass(eq=False)  # jobs are told apart by identity
class _Job:
    window: SynthesisWindow
    result: Future = field(default_factory=Future)


@dataclass(frozen=True)
class WindowBatchStats:
    """What one batched S3Gen call did, for metrics."""

    windows: int
    seconds: float


class WindowBatcher:
    """Renders stream windows in a daemon thread, batching equal shapes. `render` from any thread."""

    def __init__(
        self,
        s3gen: S3Gen,
        *,
        max_windows: int = 8,
        gather_seconds: float | None = None,
        on_batch: Callable[[WindowBatchStats], None] | None = None,
    ) -> None:
        if max_windows < 1:
            raise ValueError("max_windows must be at least 1")
        self.s3gen = s3gen
        self.max_windows = max_windows
        # How long a window waits for its peers; only spent while some open stream has not handed one in.
        # None: a tenth of the last S3Gen call (so waiting costs at most ~10%), within GATHER_BOUNDS.
        self.gather_seconds = gather_seconds
        self._last_call_seconds = 0.0
        self.on_batch = on_batch
        self._pending: list[_Job] = []
        self._open_streams = 0
        self._wake = threading.Condition()
        self._thread = threading.Thread(target=self._loop, name="s3gen-batcher", daemon=True)
        self._thread.start()

    @contextmanager
    def stream(self):
        """Held by a streaming request while it may still hand in windows, so the worker knows whom to wait
        for: with every open stream's window in, a batch starts at once."""
        with self._wake:
            self._open_streams += 1
        try:
            yield self
        finally:
            with self._wake:
                self._open_streams -= 1
                self._wake.notify()

    def render(self, window: SynthesisWindow) -> tuple[torch.Tensor, torch.Tensor]:
        """(wav (1, S), excitation (1, 1, S)) for one window, as `S3Gen.synthesize` gives it alone."""
        self.s3gen.check_tokens(window.tokens)  # a bad window fails here, alone, not its whole batch
        job = _Job(window)
        with self._wake:
            self._pending.append(job)
            self._wake.notify()
        return job.result.result()

    # -- the worker (batcher thread only) ---------------------------------------------------------------

    def _loop(self) -> None:
        with torch.inference_mode():
            while True:
                group = self._next_group()
                try:
                    self._render_group(group)
                except BaseException as error:  # never leave a caller waiting, never stop the worker
                    log.exception("S3Gen batcher failed")
                    for job in group:
                        if not job.result.done():
                            job.result.set_exception(error)

    def _render_group(self, group: list[_Job]) -> None:
        started = time.perf_counter()
        generators = [job.window.generator for job in group]
        states = [g.get_state() if g is not None else None for g in generators]
        try:
            results = self.s3gen.synthesize([job.window for job in group])
        except Exception as error:
            if len(group) == 1:
                group[0].result.set_exception(error)
                return
            # One window's trouble (or memory for the whole batch) must not fail the others: go one by one,
            # from the generator states the batch started with, so each gets the audio it would alone.
            log.warning(
                "batched S3Gen call of %d windows failed (%r); rendering them one by one", len(group), error
            )
            for generator, state in zip(generators, states, strict=True):
                if generator is not None:
                    generator.set_state(state)
            for job in group:
                try:
                    job.result.set_result(self.s3gen.synthesize([job.window])[0])
                except Exception as single_error:
                    job.result.set_exception(single_error)
            return
        for job, result in zip(group, results, strict=True):
            job.result.set_result(result)
        self._last_call_seconds = time.perf_counter() - started
        if self.on_batch is not None:
            try:
                self.on_batch(WindowBatchStats(len(group), self._last_call_seconds))
            except Exception:  # metrics must never stop the worker every stream waits on
                log.exception("S3Gen batch callback failed")

    def _next_group(self) -> list[_Job]:
        """Wait for work, give peers up to `gather_seconds`, then take the oldest window's shape group."""
        with self._wake:
            while not self._pending:
                self._wake.wait()
            gather = self.gather_seconds
            if gather is None:
                low, high = GATHER_BOUNDS
                gather = min(max(0.1 * self._last_call_seconds, low), high)
            deadline = time.monotonic() + gather
            while len(self._pending) < min(self._open_streams, self.max_windows):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._wake.wait(left)
            key = self._pending[0].window.batch_key
            group = [job for job in self._pending if job.window.batch_key == key][: self.max_windows]
            self._pending = [job for job in self._pending if job not in group]
            return group
