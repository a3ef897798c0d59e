"""Continuous batching: a daemon thread drives the one decode loop (`decoding.DecodeBatch`) for every
concurrent request.

Between steps the thread admits waiting requests and retires finished or cancelled ones. Requests admitted
at the same step and of similar prefill length (text length) are prefilled together: one right-padded
forward pass over all their rows, each row's logits taken at its own last real position.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .decoding import DecodeBatch, DecodeRequest, StepStats, new_request
from .sampling import SamplingParams

log = logging.getLogger(__name__)

# Requests whose prefill lengths differ by more than this many positions get separate passes. On CPU a
# prefill is compute-bound: padding costs as much as real positions and sharing a pass saves little
# (8 full-size bf16 requests: one pass 1.1x faster than 8 at equal lengths with CFG, 1.3x without; 0.9x
# and 1.05x when lengths spread over 28 positions), so only near-equal lengths share. On GPU a prefill of
# a few hundred positions is launch-bound, padding nearly free and one pass replaces several (not yet
# measured there).
PREFILL_LENGTH_SLACK = {"cpu": 8, "cuda": 128}
_FINISHED = object()


@dataclass(eq=False)
class _Member:
    """One request while the batcher holds it: its decode state and where its tokens go."""

    request: DecodeRequest
    out: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)

    @property
    def cancelled(self) -> bool:
        return self.request.cancelled


class TokenStream:
    """The speech tokens of one batched request, as they are sampled. `close()` (or dropping out of a
    for loop over a generator wrapping it) takes the request out of the batch at the next step."""

    def __init__(self, member: _Member) -> None:
        self._member = member

    def __iter__(self) -> TokenStream:
        return self

    def __next__(self) -> int:
        if self._member.cancelled:
            raise StopIteration
        item = self._member.out.get()
        if item is _FINISHED:
            self.close()
            raise StopIteration
        if isinstance(item, BaseException):
            self.close()
            raise item
        return item

    def close(self) -> None:
        self._member.request.cancelled = True


class DecodeBatcher:
    """Runs the shared decode loop in a daemon thread. `submit` from any thread; tokens come back
    through the returned `TokenStream`.

    Requests admitted at one step whose prefill lengths differ by at most prefill_length_slack positions
    (default: `PREFILL_LENGTH_SLACK` for the device) share one prefill pass; with batched_prefill=False
    every request gets its own (for comparison in benchmarks; the tokens are the same either way)."""

    def __init__(
        self,
        t3,
        *,
        max_requests: int = 8,
        on_step: Callable[[StepStats], None] | None = None,
        use_cuda_graphs: bool = True,
        batched_prefill: bool = True,
        prefill_length_slack: int | None = None,
    ) -> None:
        if max_requests < 1:
            raise ValueError("max_requests must be at least 1")
        self.t3 = t3
        self.max_requests = max_requests
        self.on_step = on_step
        self.batched_prefill = batched_prefill
        weight = t3.speech_head.weight
        if prefill_length_slack is None:
            prefill_length_slack = PREFILL_LENGTH_SLACK.get(weight.device.type, PREFILL_LENGTH_SLACK["cpu"])
        self.prefill_length_slack = prefill_length_slack
        self._batch = DecodeBatch(t3, max_rows=2 * max_requests, use_cuda_graphs=use_cuda_graphs)
        self._waiting: list[_Member] = []
        self._active: list[_Member] = []
        self._wake = threading.Condition()
        self._thread = threading.Thread(target=self._loop, name="t3-batcher", daemon=True)
        self._thread.start()

    @property
    def active_requests(self) -> int:
        return len(self._active)

    def submit(
        self,
        cond: Tensor,
        text_tokens: Tensor,
        params: SamplingParams,
        generator: torch.Generator,
        max_new_tokens: int,
    ) -> TokenStream:
        """Queue one request (arguments as `decode_speech_tokens`); it joins at the next step."""
        member = _Member(new_request(self.t3, cond, text_tokens, params, generator, max_new_tokens))
        with self._wake:
            self._waiting.append(member)
            self._wake.notify()
        return TokenStream(member)

    # -- the loop (batcher thread only) ------------------------------------------------------------------

    def _loop(self) -> None:
        with torch.inference_mode():
            while True:
                with self._wake:
                    while not self._waiting and not self._active:
                        self._wake.wait()
                    free = self.max_requests - len(self._active)
                    admitted, self._waiting = self._waiting[:free], self._waiting[free:]
                try:
                    for group in self._prefill_groups(admitted):
                        self._admit(group)
                    self._sample_and_retire()
                    if self._active:
                        self._step()
                except Exception as error:  # a failed step fails its requests, never the server
                    log.exception("batched decode step failed")
                    for member in self._active + admitted:
                        member.out.put(error)
                    self._active, self._batch.requests = [], []

    def _prefill_groups(self, admitted: list[_Member]) -> list[list[_Member]]:
        """Split the requests admitted at one step into prefill passes of similar length."""
        waiting = sorted((m for m in admitted if not m.cancelled), key=lambda m: m.request.prefill_len)
        if not self.batched_prefill:
            return [[member] for member in waiting]
        groups: list[list[_Member]] = []
        for member in waiting:
            first = groups[-1][0].request.prefill_len if groups else None
            if first is not None and member.request.prefill_len - first <= self.prefill_length_slack:
                groups[-1].append(member)
            else:
                groups.append([member])
        return groups

    def _admit(self, group: list[_Member]) -> None:
        self._batch.prefill([member.request for member in group])
        self._active += group

    def _sample_and_retire(self) -> None:
        members = {id(member.request): member for member in self._active}
        for outcome in self._batch.sample():
            member = members[id(outcome.request)]
            if outcome.token is not None:
                member.out.put(outcome.token)
            if outcome.finished:
                member.out.put(_FINISHED)
        self._active = [members[id(request)] for request in self._batch.requests]

    def _step(self) -> None:
        stats = self._batch.decode()
        if self.on_step is not None and stats is not None:
            try:
                self.on_step(stats)
            except Exception:  # metrics must never fail the requests in the batch
                log.exception("decode step callback failed")
