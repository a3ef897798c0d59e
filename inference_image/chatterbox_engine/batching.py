"""Continuous batching: one T3 decode loop over every active request.

Each request keeps its own rows of a shared KV cache (a CFG pair, or one row without CFG), its own
sampling parameters, history and `torch.Generator`. Between steps the loop admits waiting requests
(prefilling their rows) and retires finished or cancelled ones (compacting the cache so active rows stay
contiguous). Per request the work is exactly the lone decode loop's (`decoding.decode_speech_tokens`):
the same prefill, the same sampling code in the same order with the same generator, so a seed gives the
same tokens batched or alone; only the backbone's matrix products see more rows at once.

Requests admitted at the same step and of similar prefill length (text length) are prefilled together:
one right-padded forward pass over all their rows (`T3.prefill_padded`), each row's logits taken at its
own last real position.

One step reads the weights once for all rows, which is where batching wins on a memory-bound CPU or GPU.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from .cuda_graphs import StepRunner, make_step_runner
from .sampling import SamplingParams, sample_next
from .t3 import T3

log = logging.getLogger(__name__)

_LENGTH_QUANTUM = 256  # the shared cache grows in these steps (fewer regrowths, fewer CUDA-graph captures)
# Requests whose prefill lengths differ by more than this many positions get separate passes. On CPU a
# prefill is compute-bound: padding costs as much as real positions and sharing a pass saves little
# (8 full-size bf16 requests: one pass 1.1x faster than 8 at equal lengths with CFG, 1.3x without; 0.9x
# and 1.05x when lengths spread over 28 positions), so only near-equal lengths share. On GPU a prefill of
# a few hundred positions is launch-bound, padding nearly free and one pass replaces several (not yet
# measured there).
PREFILL_LENGTH_SLACK = {"cpu": 8, "cuda": 128}
_FINISHED = object()


@dataclass
class _Member:
    """One request while it is in the batch."""

    cond: Tensor
    text_tokens: Tensor
    params: SamplingParams
    generator: torch.Generator
    max_new_tokens: int
    out: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)
    cancelled: bool = False
    rows: int = 0  # 2 with CFG, else 1
    first_row: int = 0
    position: int = 0  # cache position of the next token fed in
    sampled: int = 0  # tokens sampled so far
    history: Tensor | None = None  # repetition-penalty history: BOS then every sampled token
    logits: Tensor | None = None  # (rows, V), to sample the next token from

    @property
    def prefill_len(self) -> int:
        """[cond][text][BOS][BOS], as `T3.prefill_embeds`."""
        return self.cond.shape[1] + self.text_tokens.shape[1] + 2

    @property
    def needed_len(self) -> int:
        return self.prefill_len + self.max_new_tokens


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
            self._member.cancelled = True
            raise StopIteration
        if isinstance(item, BaseException):
            self._member.cancelled = True
            raise item
        return item

    def close(self) -> None:
        self._member.cancelled = True


@dataclass(frozen=True)
class StepStats:
    """What one decode step did, for metrics."""

    requests: int
    rows: int
    seconds: float


class DecodeBatcher:
    """Runs the shared decode loop in a daemon thread. `submit` from any thread; tokens come back
    through the returned `TokenStream`.

    Requests admitted at one step whose prefill lengths differ by at most prefill_length_slack positions
    (default: `PREFILL_LENGTH_SLACK` for the device) share one prefill pass; with batched_prefill=False
    every request gets its own (for comparison in benchmarks; the tokens are the same either way)."""

    def __init__(
        self,
        t3: T3,
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
        self._runner: StepRunner = make_step_runner(t3, weight.device, use_cuda_graphs=use_cuda_graphs)
        self._cache = t3.new_cache(2 * max_requests, _LENGTH_QUANTUM, zeroed=True)
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
        member = _Member(cond, text_tokens, params, generator, max_new_tokens)
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
                    self._active = []

    def _prefill_groups(self, admitted: list[_Member]) -> list[list[_Member]]:
        """Split the requests admitted at one step into prefill passes of similar length."""
        waiting = sorted((m for m in admitted if not m.cancelled), key=lambda m: m.prefill_len)
        if not self.batched_prefill:
            return [[member] for member in waiting]
        groups: list[list[_Member]] = []
        for member in waiting:
            if groups and member.prefill_len - groups[-1][0].prefill_len <= self.prefill_length_slack:
                groups[-1].append(member)
            else:
                groups.append([member])
        return groups

    def _admit(self, group: list[_Member]) -> None:
        """Prefill the group's rows, right after the active ones, in one forward pass: each request's
        rows hold what the lone loop's prefill puts in its own cache (plus masked padding garbage)."""
        first_row = sum(m.rows for m in self._active)
        row = first_row
        for member in group:
            member.rows = 2 if member.params.cfg_weight > 0 else 1
            member.first_row, row = row, row + member.rows
        needed_len = max(m.needed_len for m in group)
        if needed_len > self._cache.max_len:
            self._cache = self._cache.grown(-(-needed_len // _LENGTH_QUANTUM) * _LENGTH_QUANTUM)
        prompts = [
            self.t3.prefill_embeds(m.cond, m.text_tokens, cfg_rows=m.rows == 2) for m in group
        ]  # each (rows, prefill_len, C)
        longest = max(m.prefill_len for m in group)
        embeds = torch.cat([F.pad(prompt, (0, 0, 0, longest - prompt.shape[1])) for prompt in prompts])
        device = embeds.device
        lengths = torch.tensor([m.prefill_len for m in group for _ in range(m.rows)], device=device)
        logits = self.t3.prefill_padded(embeds, self._cache.rows(first_row, row), lengths)  # (rows, V)
        start_token = self.t3.cfg.start_speech_token
        for member in group:
            offset = member.first_row - first_row
            member.logits = logits[offset : offset + member.rows]
            member.position = member.prefill_len
            member.history = torch.full(
                (1, member.max_new_tokens + 1), start_token, dtype=torch.long, device=device
            )
            self._active.append(member)

    def _sample_and_retire(self) -> None:
        stop = self.t3.cfg.stop_speech_token
        live = [member for member in self._active if not member.cancelled]
        tokens = []
        for member in live:
            token = sample_next(
                member.logits, member.history[:, : member.sampled + 1], member.params, member.generator
            )
            member.sampled += 1
            member.history[:, member.sampled] = token[0]
            tokens.append(token.view(1))
        # One device-to-host read for the whole batch, not one per request.
        token_ids = torch.cat(tokens).tolist() if tokens else []
        staying = []
        for member, token_id in zip(live, token_ids, strict=True):
            if token_id != stop:
                member.out.put(token_id)
            if token_id != stop and member.sampled < member.max_new_tokens:
                staying.append(member)
            else:
                member.out.put(_FINISHED)
        for member in self._active:
            member.logits = None  # consumed; the next step sets the staying requests' anew
        self._compact(staying)

    def _compact(self, staying: list[_Member]) -> None:
        """Move the staying requests' rows down so rows 0..N stay the active ones, in order."""
        row = 0
        for member in staying:
            if member.first_row != row:
                self._cache.move_rows(member.first_row, member.first_row + member.rows, row)
                member.first_row = row
            row += member.rows
        self._active = staying

    def _step(self) -> None:
        started = time.perf_counter()
        device = self.t3.speech_head.weight.device
        tokens, speech_positions, positions = [], [], []
        for member in self._active:
            last = member.history[0, member.sampled]
            # The k-th sampled token sits at learned speech position k (the BOS took position 0).
            tokens += [last] * member.rows
            speech_positions += [member.sampled] * member.rows
            positions += [member.position] * member.rows
        token_rows = torch.stack(tokens)[:, None]  # (B, 1)
        embeds = self.t3.embed_speech_rows(token_rows, torch.tensor(speech_positions, device=device))
        logits = self._runner(embeds, self._cache, torch.tensor(positions, device=device), max(positions))
        for member in self._active:
            member.logits = logits[member.first_row : member.first_row + member.rows]
            member.position += 1
        if self.on_step is not None:
            try:
                self.on_step(StepStats(len(self._active), embeds.shape[0], time.perf_counter() - started))
            except Exception:  # metrics must never fail the requests in the batch
                log.exception("decode step callback failed")
