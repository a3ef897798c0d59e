"""The engine's loop: one thread runs every request's model work, one step at a time (vLLM v1's
`EngineCore.step`: schedule -> execute -> update).

    server, on its event loop                       (a plain caller: generate / generate_stream, any thread)
      Engine.request(text, voice, knobs)   a validated GenerationRequest: bad input is a 400 here
      AdmissionControl.admit()             429 when the queue is full, else wait for one of N slots
      Engine.start(job, sink) ──► inbox                  cancel ──► request.cancelled (client gone, closed)
                                    │
    loop thread, each step:         ▼
    ┌─ intake     new jobs become requests: conditioning and first piece's prompt embedded
    ├─ schedule() pure, plain values only (`StepPlan`):
    │               retire   cancelled or done requests leave
    │               render   one S3Gen window per request whose chunk (or piece) is due; equal
    │                        shapes share a call when S3Gen batching is on
    │               prefill  waiting pieces while the T3 batch has room, grouped by prefill length
    │               decode   every request in the T3 batch
    ├─ execute()  S3Gen renders; T3 prefill groups, sample, one decode forward (`decoding.DecodeBatch`)
    │             (overlap: a render goes to the S3Gen worker thread, which renders while the loop
    │              thread decodes on, step after step)
    └─ update()   renders the worker finished (at the next step's start), tokens to their pieces, due
                  windows marked, audio chunks handed to each request's sink, pieces advance (overlap:
                  the next piece decodes as soon as the last one's tokens are in, while its audio renders)
                                    │
                                    ▼
    sink(AudioChunk) ... sink(Finished)  or  sink(exception)   onto the request's own queue: an asyncio
    queue the server awaits (call_soon_threadsafe), or a thread's queue (`Outputs`)

A window holds exactly the tokens up to where its chunk fell due, fixed on the loop thread when it starts
to render (serial: at the next step, before the next token is sampled; overlapped: handed to the worker
while decoding goes on), and a request's windows render one at a time, in order, each after the previous
one's audio was taken. A request's S3Gen draws come from its own generator in the same order, and T3 never
reads audio. So a seed gives the same tokens batched or alone, overlapped or serial, and the same audio (up
to float rounding where S3Gen calls were shared). The time spent in the current step or S3Gen call,
whichever started first (`busy_s`), is the loop's heartbeat: the server's liveness probe fails when one
outlasts any request's time limit.
"""

from __future__ import annotations

import atexit
import dataclasses
import enum
import functools
import logging
import queue
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from .decoding import DecodeBatch, DecodeRequest, StepStats, new_request
from .errors import EngineStopped, InvalidParameterError
from .request import GenerationRequest
from .runtime import cpu_budget, decode_threads, intra_op_threads, use_threads
from .s3gen import S3Gen, S3GenReference, SynthesisWindow
from .streaming import SAMPLES_PER_TOKEN, ChunkPlan, ChunkRenderer, fade_out

log = logging.getLogger(__name__)

# Requests whose prefill lengths differ by more than this many positions get separate passes. On CPU a
# prefill is compute-bound: padding costs as much as real positions and sharing a pass saves little
# (8 full-size bf16 requests: one pass 1.1x faster than 8 at equal lengths with CFG, 1.3x without; 0.9x
# and 1.05x when lengths spread over 28 positions), so only near-equal lengths share. On GPU a prefill of
# a few hundred positions is launch-bound, padding nearly free and one pass replaces several (not yet
# measured there).
PREFILL_LENGTH_SLACK = {"cpu": 8, "cuda": 128}
# Most windows one S3Gen call takes: beyond this a batch mostly adds memory (and what one failure touches).
MAX_WINDOWS = 16


class Phase(enum.Enum):
    PREFILL = "prefill"  # its next text piece waits for room in the T3 batch
    DECODE = "decode"  # in the T3 batch
    RENDER = "render"  # piece decoded; its last audio is still to render
    DONE = "done"


@dataclass(frozen=True)
class Render:
    """A piece's tokens up to `end` to turn into audio: one S3Gen window (streaming) or the whole piece."""

    end: int
    final: bool
    key: Hashable | None = None  # equal keys share an S3Gen call when batching is on; None: alone
    piece: PieceAudio | None = None  # an earlier piece's (its successor already decodes); None: the current


@dataclass(frozen=True, eq=False)
class PieceAudio:
    """What a piece's renders read: its tokens (`tail` of them appended silence) and its renderer (None:
    rendered whole). The request's own fields hold the current piece's; a render keeps an earlier one's."""

    tokens: list[int]
    tail: int
    renderer: ChunkRenderer | None


@dataclass(frozen=True)
class Job:
    """What one request asks of the loop, validated by the engine: speech from text (`generation`: T3, then
    S3Gen), or S3Gen alone rendering given speech tokens (`source_tokens`: voice conversion)."""

    ref: S3GenReference  # the voice's S3Gen reference, on the S3Gen device and dtype
    s3gen_generator: torch.Generator
    chunk_plan: ChunkPlan | None = None  # None: one chunk per text piece, rendered whole
    watermark_chunks: bool = True  # streamed chunks; one-shot callers watermark the joined audio
    generation: GenerationRequest | None = None
    t3_generator: torch.Generator | None = None
    speech_tokens_only: bool = False  # T3 alone: the sink gets each speech token id (benchmarks, tests)
    source_tokens: tuple[int, ...] = ()


@dataclass(frozen=True)
class AudioChunk:
    audio: np.ndarray  # float32, 1-D, at 24 kHz
    num_tokens: int  # speech tokens covered so far
    is_last: bool


@dataclass(frozen=True)
class Finished:
    """A request's last output: what it cost."""

    num_tokens: int
    t3_seconds: float
    s3gen_seconds: float


@dataclass(eq=False)  # requests are told apart by identity
class CoreRequest:
    """One request in the loop. The scheduler reads only the plain fields at the top."""

    phase: Phase = Phase.PREFILL
    prefill_len: int = 0  # of the piece to prefill next
    cancelled: bool = False  # set from any thread
    renders: deque[Render] = field(default_factory=deque)  # due, oldest first
    # While decoding a stream: tokens until its next window falls due, and that window's S3Gen shape.
    next_window_in: int | None = None
    next_window_key: Hashable | None = None
    held_steps: int = 0  # steps its due window has waited for peers
    rendering: bool = False  # its first render is on the S3Gen worker (overlap): the next waits for it
    # -- execution state (loop thread only) --
    job: Job | None = None
    sink: Callable[[object], None] = lambda item: None
    piece: int = 0
    tokens: list[int] = field(default_factory=list)  # audio tokens of the current piece
    tail: int = 0  # of those, silence appended after the spoken ones
    covered: int = 0  # tokens of finished pieces
    decode: DecodeRequest | None = None
    cond: Tensor | None = None
    renderer: ChunkRenderer | None = None  # streaming only
    ended: bool = False  # its last item went to the sink
    t3_seconds: float = 0.0
    s3gen_seconds: float = 0.0


@dataclass(frozen=True)
class SchedulerConfig:
    max_requests: int = 8  # in the T3 batch at once
    prefill_length_slack: int = PREFILL_LENGTH_SLACK["cpu"]
    batched_prefill: bool = True  # False: one prefill pass per request (benchmarks compare)
    batch_s3gen: bool = False
    max_windows: int = 8
    # With S3Gen batching, a due window waits for peers whose equal-shape window falls due within this many
    # steps (streams admitted a few steps apart): one S3Gen call instead of several, the same audio.
    gather_steps: int = 4
    # S3Gen on its own thread while T3 decodes (CPU only); None: where it wins (`overlap_wins`).
    overlap_s3gen: bool | None = None

    @classmethod
    def batching(
        cls,
        max_requests: int,
        batch_s3gen: bool,
        prefill_length_slack: int,
        overlap_s3gen: bool | None = None,
    ) -> SchedulerConfig:
        """A T3 batch of up to max_requests (>= 1), S3Gen calls of up to as many windows (at most MAX_WINDOWS)."""
        if isinstance(max_requests, bool) or not isinstance(max_requests, int) or max_requests < 1:
            raise InvalidParameterError(
                f"max_requests must be at least 1, got {max_requests!r}", "max_requests"
            )
        return cls(
            max_requests=max_requests,
            prefill_length_slack=prefill_length_slack,
            batch_s3gen=batch_s3gen,
            max_windows=min(max_requests, MAX_WINDOWS),
            overlap_s3gen=overlap_s3gen,
        )


@dataclass(frozen=True)
class StepPlan:
    retire: list[CoreRequest]
    render: list[list[CoreRequest]]  # each group: its requests' first due renders, in one S3Gen call
    prefill: list[list[CoreRequest]]  # each group: one right-padded forward pass
    decode: list[CoreRequest]  # the T3 batch after this step's prefills: sampled, then stepped

    @property
    def idle(self) -> bool:
        return not (self.retire or self.render or self.prefill or self.decode)


def schedule(requests: list[CoreRequest], config: SchedulerConfig) -> StepPlan:
    """Plan one step from the requests' plain state (oldest first); touches nothing."""
    retire = [r for r in requests if r.cancelled or r.phase is Phase.DONE]
    live = [r for r in requests if not (r.cancelled or r.phase is Phase.DONE)]
    decoding = [r for r in live if r.phase is Phase.DECODE]
    free = config.max_requests - len(decoding)
    admitted = [r for r in live if r.phase is Phase.PREFILL][: max(free, 0)]
    due = [r for r in live if r.renders and not r.rendering]
    waiting_for_peers = _peers_soon(due, live, config)
    return StepPlan(
        retire=retire,
        render=_render_groups([r for r in due if r.renders[0].key not in waiting_for_peers], config),
        prefill=_prefill_groups(admitted, config),
        decode=decoding + admitted,
    )


def overlap_wins(device: torch.device) -> bool:
    """Whether S3Gen rendering on its own thread while T3 decodes is faster here: on a CPU with two or more
    cores in its budget (a one-row decode leaves the second mostly idle; benchmarks/RESULTS.md). On CUDA
    both would queue on one device, so the loop stays serial there (not measured)."""
    return torch.device(device).type == "cpu" and cpu_budget() >= 2


def _prefill_groups(admitted: list[CoreRequest], config: SchedulerConfig) -> list[list[CoreRequest]]:
    """Requests admitted at one step, in passes of similar prefill length."""
    waiting = sorted(admitted, key=lambda r: r.prefill_len)
    if not config.batched_prefill:
        return [[request] for request in waiting]
    groups: list[list[CoreRequest]] = []
    for request in waiting:
        if groups and request.prefill_len - groups[-1][0].prefill_len <= config.prefill_length_slack:
            groups[-1].append(request)
        else:
            groups.append([request])
    return groups


def _render_groups(due: list[CoreRequest], config: SchedulerConfig) -> list[list[CoreRequest]]:
    """One group per S3Gen call: equal window shapes together (with S3Gen batching), else one each."""
    groups: dict[Hashable, list[list[CoreRequest]]] = {}
    alone: list[list[CoreRequest]] = []
    for request in due:
        key = request.renders[0].key
        if not config.batch_s3gen or key is None:
            alone.append([request])
            continue
        chunks = groups.setdefault(key, [[]])
        if len(chunks[-1]) == config.max_windows:
            chunks.append([])
        chunks[-1].append(request)
    return [group for chunks in groups.values() for group in chunks] + alone


def _peers_soon(due: list[CoreRequest], live: list[CoreRequest], config: SchedulerConfig) -> set[Hashable]:
    """Window shapes to hold back a step: another decoding stream's equal window falls due within
    `gather_steps` (each step brings it one token closer, so the wait ends by itself)."""
    if not config.batch_s3gen:
        return set()
    # A window waits at most gather_steps (a peer may stall, sampling tokens that are not audio).
    due_keys = {request.renders[0].key for request in due if request.held_steps < config.gather_steps} - {
        None
    }
    return {
        request.next_window_key
        for request in live
        if request.phase is Phase.DECODE
        and request.next_window_key in due_keys
        and request.next_window_in is not None
        and request.next_window_in <= config.gather_steps
    }


class Outputs:
    """A submitted job's outputs as they come: `AudioChunk`s (or speech token ids), ending where the job
    finished (`finished` then holds its `Finished`); the job's exception is raised. close() cancels the
    rest of its work at the next step."""

    def __init__(self, core: EngineCore, job: Job) -> None:
        self._core = core
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._request = core.submit(job, self._queue.put)
        self._closed = False
        self.finished: Finished | None = None

    def __iter__(self) -> Outputs:
        return self

    def __next__(self):
        if self._closed:
            raise StopIteration
        item = self._queue.get()
        if isinstance(item, Finished):
            self.finished = item
            self._closed = True
            raise StopIteration
        if isinstance(item, BaseException):
            self.close()
            raise item
        return item

    def close(self) -> None:
        self._closed = True
        self._core.cancel(self._request)


@dataclass(frozen=True)
class WindowBatchStats:
    """What one batched S3Gen call did, for metrics."""

    windows: int
    seconds: float


@dataclass(frozen=True)
class _RenderCall:
    """One S3Gen call's inputs, fixed on the loop thread, so it can run while decoding appends tokens: per
    request a streamed window, or a whole piece's tokens (None: a piece without any)."""

    group: list[CoreRequest]
    inputs: list[SynthesisWindow | Tensor | None]


@dataclass(frozen=True)
class _Rendered:
    """What a call made: per request its output (see `_synthesize`) or the exception it failed with; the
    call's seconds, None where the shared call failed and its windows went one by one."""

    outputs: list
    seconds: float | None


class _S3GenWorker:
    """The loop's second thread (overlap): runs S3Gen calls one at a time, in the order given; a call's result
    (or a bug's exception) comes back in its Future.

    It runs as many intra-op threads as the loop thread, whether or not the loop decodes meanwhile: a model's
    float results depend on its thread count (S3Gen's audio by ~1e-8, float32 T3 logits by ~1e-6 between 1
    and 2 threads), so fixed counts keep the audio and tokens exactly the serial loop's. Measured on 2 cores
    (a window and T3 decode at once, benchmarks/RESULTS.md), 2 + 2 threads ran as fast as 1 + 1 in float32
    and ~5% slower in bfloat16; the OS shares the cores."""

    def __init__(self, on_done: Callable[[], None], threads: int) -> None:
        self._calls: queue.SimpleQueue = queue.SimpleQueue()
        self._on_done, self._threads = on_done, threads
        self.busy_since: float | None = None  # monotonic start of the current call
        self._thread = threading.Thread(target=self._serve, name="engine-s3gen", daemon=True)
        self._thread.start()

    def submit(self, call: Callable[[], object]) -> Future:
        future: Future = Future()
        self._calls.put((call, future))
        return future

    def close(self) -> None:
        """Finish the calls given, end the thread and join it."""
        self._calls.put(None)
        self._thread.join()

    def _serve(self) -> None:
        use_threads(self._threads)
        with torch.inference_mode():
            while (item := self._calls.get()) is not None:
                call, future = item
                self.busy_since = time.monotonic()
                try:
                    future.set_result(call())
                except BaseException as error:  # raised again on the loop thread
                    future.set_exception(error)
                finally:
                    self.busy_since = None
                self._on_done()


@dataclass(frozen=True)
class _InFlight:
    call: _RenderCall
    future: Future  # of a `_Rendered`


class EngineCore:
    """Owns the models' execution: a daemon thread steps every submitted request (see the module doc)."""

    def __init__(
        self,
        t3,
        s3gen: S3Gen,
        *,
        finish_audio: Callable[[np.ndarray], np.ndarray],
        tail_tokens: list[int],
        drop_last_token_audio: bool = False,
        config: SchedulerConfig | None = None,
        on_step: Callable[[StepStats], None] | None = None,
        on_s3gen_batch: Callable[[WindowBatchStats], None] | None = None,
        use_cuda_graphs: bool = True,
    ) -> None:
        self.t3, self.s3gen = t3, s3gen
        self.device = t3.speech_head.weight.device
        self.audio_vocab_size = t3.cfg.start_speech_token  # codes 0..6560; BOS/EOS and above are not audio
        self.finish_audio = finish_audio  # watermarking, per streamed chunk
        self.tail_tokens = tail_tokens  # appended after each piece before vocoding (Turbo: silence)
        # Multilingual v3: a piece's audio ends one token early (its last token decodes to noise).
        self.drop_last_token_audio = drop_last_token_audio
        self.config = config or SchedulerConfig(
            prefill_length_slack=PREFILL_LENGTH_SLACK.get(self.device.type, PREFILL_LENGTH_SLACK["cpu"])
        )
        overlap = self.config.overlap_s3gen
        if overlap and self.device.type != "cpu":
            raise InvalidParameterError(
                f"overlap_s3gen is supported on CPU only, not on {self.device.type} (S3Gen and T3 would queue "
                "on one device; never tested there): leave it unset (auto) or off",
                "overlap_s3gen",
            )
        self.overlap_s3gen = overlap_wins(self.device) if overlap is None else overlap
        self.on_step, self.on_s3gen_batch = on_step, on_s3gen_batch
        self.batch = DecodeBatch(t3, max_rows=2 * self.config.max_requests, use_cuda_graphs=use_cuda_graphs)
        self.requests: list[CoreRequest] = []  # loop thread only, oldest first
        self._inbox: list[CoreRequest] = []
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None  # the loop taking requests; None: a submit starts one
        self._loop_threads: list[threading.Thread] = []  # loop threads started, until joined (stop())
        self.closed = False  # replaced by another loop (enable_batching): submit answers EngineStopped
        self._stopping = False  # stop(): end every request and let the thread exit
        self._died: BaseException | None = None  # what killed the loop thread (a bug): no more requests
        self._busy_since: float | None = None  # monotonic start of the loop's current step; None: waiting
        # The loop thread's intra-op threads, fixed where the engine is built (the process's choice within its
        # CPU budget) and set in the loop thread itself: under OpenMP a new thread would otherwise start with
        # whatever count some other thread set last. Its S3Gen worker (overlap) runs as many.
        self.threads = intra_op_threads()
        # T3's decode steps may run on fewer (Nano, `runtime.decode_threads`), fixed per engine as well.
        self.decode_threads = decode_threads(self.device, self.threads, t3.cfg.hidden_size)
        self._worker: _S3GenWorker | None = None  # the loop thread's (overlap): renders while it decodes
        self._in_flight: deque[_InFlight] = deque()  # calls given to the worker, oldest first

    # -- any thread ----------------------------------------------------------------------------------------

    def submit(self, job: Job, sink: Callable[[object], None]) -> CoreRequest:
        """Queue a job; its outputs go to sink from the loop thread: `AudioChunk`s, then `Finished` (or an
        exception). sink must not block; one that raises ends its own request (`_send`)."""
        request = CoreRequest(job=job, sink=sink)
        with self._wake:
            if self._died is not None:
                self._end(
                    request,
                    EngineStopped(f"the engine's loop died ({self._died!r}); the server must restart"),
                )
                return request
            if self.closed:  # replaced (enable_batching): a call that read the old loop must not restart it
                self._end(request, EngineStopped("this engine loop was replaced; call again"))
                return request
            self._inbox.append(request)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="engine-loop", daemon=True)
                self._loop_threads.append(self._thread)
                self._thread.start()
                _running_cores.add(self)
            self._wake.notify()
        return request

    def outputs(self, job: Job) -> Outputs:
        """Submit job now; read its outputs from the returned iterator (any thread)."""
        return Outputs(self, job)

    def cancel(self, request: CoreRequest) -> None:
        """Stop a request at the next step (a no-op once it ended)."""
        request.cancelled = True
        with self._wake:
            self._wake.notify()

    def stop(self, timeout_s: float | None = None) -> None:
        """End every request (their sinks get `EngineStopped` after the current step) and join the loop
        thread and its S3Gen worker (within timeout_s in all); a later submit starts a new one (unless
        `closed`). A loop thread outlives its worker, which finishes the call it is in, so joining every
        loop thread still running (one that ended its requests may still wait for its worker's torch call)
        joins both: nothing is left inside torch at interpreter exit (see `_stop_running_cores`)."""
        with self._wake:
            if self._thread is not None:
                self._stopping = True
                self._wake.notify()
            self._loop_threads = [t for t in self._loop_threads if t.is_alive()]
            threads = list(self._loop_threads)
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        for thread in threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))

    @property
    def alive(self) -> bool:
        """False once the loop thread died of an error (liveness): its requests failed, new ones would too."""
        return self._died is None

    @property
    def active_requests(self) -> int:
        """Requests submitted and still running (not ended, not cancelled)."""
        return sum(not (r.ended or r.cancelled) for r in [*self.requests, *self._inbox])

    @property
    def busy_s(self) -> float:
        """The loop's heartbeat: seconds it has spent in its current step (intake included) or its S3Gen
        worker in its current call, whichever started first; 0 while both wait for work. A step or call
        never lasts long (one token, one window), so a large value means a model call hung (liveness)."""
        worker = self._worker
        started = [self._busy_since, worker.busy_since if worker is not None else None]
        started = [t for t in started if t is not None]
        return time.monotonic() - min(started) if started else 0.0

    # -- the loop thread -----------------------------------------------------------------------------------

    def _loop(self) -> None:
        self._in_flight = deque()
        worker = self._worker = _S3GenWorker(self._notify, self.threads) if self.overlap_s3gen else None
        try:
            self._run()
        except (
            BaseException
        ) as error:  # only a bug gets here: fail every request rather than leave it waiting
            log.critical("the engine's loop died", exc_info=True)
            with self._wake:
                self._died = error
                self._end_all(EngineStopped(f"the engine's loop died ({error!r}); the server must restart"))
                self._thread, self._busy_since = None, None
        finally:
            if worker is not None:  # never outlives its loop (stop() joins the loop, so both)
                worker.close()

    def _notify(self) -> None:
        with self._wake:
            self._wake.notify()

    def _has_work(self) -> bool:
        """Whether a step would do anything: a render came back, or a request does not just wait for one."""
        if self._in_flight and self._in_flight[0].future.done():
            return True
        return any(r.cancelled or not (r.rendering and r.phase is Phase.RENDER) for r in self.requests)

    def _end_all(self, error: Exception) -> None:
        """Every request, waiting or running, ends with error (under the lock)."""
        for request in [*self.requests, *self._inbox]:
            self._end(request, error)
        self.requests, self._inbox, self.batch.requests = [], [], []

    def _run(self) -> None:
        use_threads(self.threads)
        with torch.inference_mode():
            while True:
                with self._wake:
                    while not self._inbox and not self._stopping and not self._has_work():
                        self._busy_since = None
                        self._wake.wait()
                    if self._stopping:
                        self._end_all(EngineStopped("the engine is shutting down"))
                        self._thread, self._stopping, self._busy_since = None, False, None
                        return
                    arrived, self._inbox = self._inbox, []
                self._busy_since = time.monotonic()
                for request in arrived:
                    self._intake(request)
                try:
                    self.step()
                except Exception as error:  # a bug here must fail the requests, never stall them
                    log.exception("engine step failed")
                    for request in self.requests:
                        self._end(request, error)
                    self.requests, self.batch.requests = [], []

    def step(self) -> StepPlan:
        """One step: the worker's finished renders taken, then schedule, execute, update."""
        self._take_rendered()
        plan = schedule(self.requests, self.config)
        rendering = {id(request) for group in plan.render for request in group}
        for request in self.requests:
            waiting = request.renders and not request.rendering and id(request) not in rendering
            request.held_steps = request.held_steps + 1 if waiting else 0
        self._retire(plan.retire)
        self._render(plan.render)
        self._decode(plan)
        return plan

    def _intake(self, request: CoreRequest) -> None:
        job = request.job
        try:
            if job.source_tokens:
                self._start_rendering_source(request)
            else:
                generation, dtype = job.generation, self.t3.speech_head.weight.dtype
                request.cond = self.t3.embed_conditioning(  # Turbo has no emotion input: exaggeration unused
                    generation.voice.speaker_emb.to(self.device, dtype),
                    generation.voice.prompt_tokens.to(self.device),
                    torch.tensor([generation.exaggeration], device=self.device, dtype=dtype),
                )
                self._start_piece(request)
        except Exception as error:
            self._end(request, error)
        self.requests.append(request)

    def _start_piece(self, request: CoreRequest) -> None:
        job, generation = request.job, request.job.generation
        text = generation.text_pieces[request.piece].to(self.device)
        request.decode = new_request(
            self.t3, request.cond, text, generation.sampling, job.t3_generator, generation.max_new_tokens
        )
        request.tokens, request.tail = [], 0
        if job.chunk_plan is not None:
            plan = job.chunk_plan.for_piece(request.piece)
            request.renderer = ChunkRenderer(
                self.s3gen, job.ref, job.s3gen_generator, plan, self.drop_last_token_audio
            )
            request.renderer.tokens = request.tokens
        request.prefill_len = request.decode.prefill_len
        request.phase = Phase.PREFILL

    def _start_rendering_source(self, request: CoreRequest) -> None:
        """Given tokens render as they would arrive from T3: each window falls due at the same count, the
        last token always in the final window."""
        job = request.job
        request.renderer = ChunkRenderer(self.s3gen, job.ref, job.s3gen_generator, job.chunk_plan)
        request.renderer.tokens = request.tokens
        request.phase = Phase.RENDER
        for token in job.source_tokens[:-1]:
            request.tokens.append(token)
            self._plan_next_window(request)
        request.tokens.append(job.source_tokens[-1])
        self._queue_render(request, final=True)
        request.next_window_in = request.next_window_key = None

    def _send(self, request: CoreRequest, item: object) -> bool:
        """Hand an output to the request's sink. A sink that raises (its reader is gone) ends its own
        request: logged, told nothing more, retired at the next step; the loop and the others go on."""
        try:
            request.sink(item)
        except Exception:
            log.exception("a request's output sink failed: that request ends")
            request.cancelled = True  # retired at the next step, whatever phase its caller leaves it in
            self._end(request, None)
            return False
        return True

    def _end(self, request: CoreRequest, item: object | None) -> None:
        """The request's last output (None: none, its sink failed) goes to its sink; its work stops."""
        if not request.ended:
            request.ended = True
            if item is not None:
                self._send(request, item)
        request.phase = Phase.DONE
        if request.decode is not None:
            request.decode.cancelled = True  # leaves the T3 batch at its next sample

    def _retire(self, retired: list[CoreRequest]) -> None:
        for request in retired:
            self._end(request, Finished(request.covered, request.t3_seconds, request.s3gen_seconds))
        self.requests = [r for r in self.requests if r not in retired]

    # -- S3Gen --

    def _render(self, groups: list[list[CoreRequest]]) -> None:
        """Each group's S3Gen call: on the worker while T3 decodes on (overlap), else here and now, taken
        before the next token is sampled. A stream's first window renders here, decoding waiting for it
        (first audio as early as serial), as do all calls without a worker."""
        for group in groups:
            built, inputs = [], []
            for request in group:  # one request's window that fails to build fails only that request
                try:
                    inputs.append(self._render_inputs(request, request.renders[0]))
                    built.append(request)
                except Exception as error:
                    self._end(request, error)
            if not built:
                continue
            group = built
            call = _RenderCall(group, inputs)
            if self._worker is None or any(self._first_audio(r, r.renders[0]) for r in group):
                self._take_group(call, self._compute(call))
                continue
            for request in group:
                request.rendering = True
            future = self._worker.submit(functools.partial(self._compute, call))
            self._in_flight.append(_InFlight(call, future))

    def _render_inputs(self, request: CoreRequest, render: Render) -> SynthesisWindow | Tensor | None:
        """What S3Gen renders for a due render, fixed now: its window, or the whole piece's tokens."""
        piece = self._audio_of(request, render)
        if render.end == 0:
            return None
        if piece.renderer is None:
            return torch.tensor([piece.tokens[: render.end]])
        return piece.renderer.window(render.end)

    @staticmethod
    def _audio_of(request: CoreRequest, render: Render) -> PieceAudio:
        return render.piece or PieceAudio(request.tokens, request.tail, request.renderer)

    def _first_audio(self, request: CoreRequest, render: Render) -> bool:
        """Whether the render is a stream's first window: nothing was heard yet."""
        renderer = self._audio_of(request, render).renderer
        return renderer is not None and request.covered + renderer.rendered_tokens == 0

    def _take_rendered(self) -> None:
        """The worker's finished calls, in the order they were given (a bug there is raised here)."""
        while self._in_flight and self._in_flight[0].future.done():
            flight = self._in_flight.popleft()
            self._take_group(flight.call, flight.future.result())

    def _compute(self, call: _RenderCall) -> _Rendered:
        """S3Gen for one call, nothing else touched (on the worker, overlapped). One window's trouble (or
        memory for the whole batch) must not fail the others: a failed batch goes one by one, from the
        generator states it started with. A call whose requests all ended (stopped, cancelled, client gone)
        is skipped: nobody would hear it, and a stop need not wait for it."""
        if all(request.ended or request.cancelled for request in call.group):
            return _Rendered([None] * len(call.group), None)
        started = time.perf_counter()
        try:
            outputs = self._synthesize(call.group, call.inputs)
            return _Rendered(outputs, time.perf_counter() - started)
        except Exception as error:
            if len(call.group) == 1:
                return _Rendered([error], None)
            log.warning("batched S3Gen call of %d windows failed (%r); one by one", len(call.group), error)
        outputs = []
        for request, inputs in zip(call.group, call.inputs, strict=True):
            try:
                outputs.append(self._synthesize([request], [inputs])[0])
            except Exception as single_error:
                outputs.append(single_error)
        return _Rendered(outputs, None)

    def _take_group(self, call: _RenderCall, rendered: _Rendered) -> None:
        """A call's audio to its requests (loop thread); a request whose window failed ends with the error."""
        for request, output in zip(call.group, rendered.outputs, strict=True):
            request.rendering = False
            render = request.renders.popleft()
            if request.phase is Phase.DONE or request.cancelled:  # ended while it rendered
                continue
            if isinstance(output, Exception):
                self._end(request, output)
                continue
            if rendered.seconds is not None:
                request.s3gen_seconds += rendered.seconds
            try:
                self._take(request, render, output)
            except Exception as error:
                self._end(request, error)
        if rendered.seconds is not None and self.config.batch_s3gen and self.on_s3gen_batch is not None:
            _report(self.on_s3gen_batch, WindowBatchStats(len(call.group), rendered.seconds))

    def _synthesize(self, group: list[CoreRequest], inputs: list[SynthesisWindow | Tensor | None]) -> list:
        """S3Gen's output per request: (wav, excitation) for a streamed window, a waveform for a whole piece,
        None for a piece without tokens."""
        if not isinstance(inputs[0], SynthesisWindow):  # a whole piece (or none), alone
            (request,), (tokens,) = group, inputs
            if tokens is None:
                return [None]
            return [self.s3gen.inference(tokens, request.job.ref, request.job.s3gen_generator)]
        generators = [request.job.s3gen_generator for request in group]
        states = [generator.get_state() for generator in generators]
        try:
            for window in inputs:
                self.s3gen.check_tokens(window.tokens)
            return self.s3gen.synthesize(inputs)
        except Exception:
            for generator, state in zip(generators, states, strict=True):
                generator.set_state(state)
            raise

    def _take(self, request: CoreRequest, render: Render, result) -> None:
        """A rendered window's (or piece's) audio to the request's sink; a finished piece moves it on."""
        piece = self._audio_of(request, render)
        job, renderer = request.job, piece.renderer
        finish = self.finish_audio if job.watermark_chunks else _unchanged
        last_piece = render.piece is None and self._on_last_piece(request)
        spoken = len(piece.tokens) - piece.tail
        if renderer is None:  # one-shot: the whole piece, watermarked by the engine once all are joined
            if result is not None:
                audio = result[0].float().cpu().numpy()
                if self.drop_last_token_audio:
                    audio = audio[: max(1, render.end - 1) * SAMPLES_PER_TOKEN]
                audio = fade_out(audio)
                if not self._send(request, AudioChunk(audio, request.covered + spoken, last_piece)):
                    return
        else:
            audio = np.zeros(0, np.float32)
            if result is not None:
                audio = renderer.take(render.end, render.final, *result)
            if not render.final:
                # All of it may be held back for the cross-fade (tiny chunks): nothing to send then.
                covered = request.covered + render.end
                if audio.size and not self._send(request, AudioChunk(finish(audio), covered, False)):
                    return
                self._shape_next_window(request)
                return
            chunk_due = audio.size or last_piece
            covered = request.covered + spoken
            if chunk_due and not self._send(request, AudioChunk(finish(audio), covered, last_piece)):
                return
        request.covered += spoken
        if render.piece is None:
            self._next_piece(request)
        else:  # its successor already decodes
            self._shape_next_window(request)

    def _shape_next_window(self, request: CoreRequest) -> None:
        """The next window starts where the one just taken ended: its S3Gen shape is known now."""
        if request.renders:
            head = request.renders.popleft()
            renderer = self._audio_of(request, head).renderer
            key = renderer.window_key(head.end) if renderer is not None and head.end else None
            request.renders.appendleft(dataclasses.replace(head, key=key))
        elif (
            request.phase is Phase.DECODE
            and request.renderer is not None
            and request.next_window_in is not None
        ):
            request.next_window_key = request.renderer.window_key(
                len(request.tokens) + request.next_window_in
            )

    def _on_last_piece(self, request: CoreRequest) -> bool:
        generation = request.job.generation
        return generation is None or request.piece == len(generation.text_pieces) - 1

    def _next_piece(self, request: CoreRequest) -> None:
        if self._on_last_piece(request):
            self._end(request, Finished(request.covered, request.t3_seconds, request.s3gen_seconds))
        else:
            request.piece += 1
            self._start_piece(request)

    # -- T3 --

    def _decode(self, plan: StepPlan) -> None:
        if not plan.decode:
            return
        started = time.perf_counter()
        by_decode = {id(request.decode): request for request in plan.decode if request.decode is not None}
        for group in plan.prefill:
            self._prefill(group)
        use_threads(self.decode_threads)
        try:
            outcomes = self.batch.sample()  # a request whose sampling fails gets its error as outcome
            stats = self.batch.decode()
        except Exception as error:  # the shared forward failed (e.g. out of memory): so did its requests
            log.exception("decode step failed")
            for request in plan.decode:
                self._end(request, error)
            self.batch.requests = []
            return
        finally:
            use_threads(self.threads)
        seconds = time.perf_counter() - started
        for request in plan.decode:
            request.t3_seconds += seconds
        for outcome in outcomes:
            request = by_decode.get(id(outcome.request))
            if request is None:
                continue
            if outcome.error is not None:
                log.warning("sampling a request's next speech token failed: %r", outcome.error)
                self._end(request, outcome.error)
            else:
                self._sampled(request, outcome.token, outcome.finished)
        if stats is not None and self.on_step is not None:
            _report(self.on_step, stats)

    def _prefill(self, group: list[CoreRequest]) -> None:
        """One prefill pass for the group; when it fails, each request alone, so only a request that fails
        by itself (e.g. its prompt) fails. A failed pass leaves the batch's other rows as they were."""
        try:
            self.batch.prefill([request.decode for request in group])
        except Exception as error:
            if len(group) == 1:
                log.warning("prefill failed: %r", error)
                self._end(group[0], error)
                return
            for request in group:
                self._prefill([request])
            return
        for request in group:
            request.phase = Phase.DECODE

    def _sampled(self, request: CoreRequest, token: int | None, finished: bool) -> None:
        if request.phase is Phase.DONE:
            return
        if request.job.speech_tokens_only:
            if token is not None:
                if not self._send(request, token):
                    return
                request.covered += 1
            if finished:
                request.decode = None
                self._next_piece(request)
            return
        if token is not None and token < self.audio_vocab_size:
            request.tokens.append(token)
        if request.renderer is not None:
            self._plan_next_window(request)
        if finished:
            request.decode = None
            request.phase = Phase.RENDER
            request.next_window_in = request.next_window_key = None
            if request.tokens:
                request.tokens.extend(self.tail_tokens)
                request.tail = len(self.tail_tokens)
            self._queue_render(request, final=True)
            if self._worker is not None and not self._on_last_piece(request):
                try:
                    self._decode_next_piece_now(request)
                except Exception as error:
                    self._end(request, error)

    def _decode_next_piece_now(self, request: CoreRequest) -> None:
        """Overlap: the next piece's T3 starts while this one's audio renders. Its renders keep this piece's
        tokens and renderer, and go first (a request's renders run one at a time, in order)."""
        piece = PieceAudio(request.tokens, request.tail, request.renderer)
        request.renders = deque(dataclasses.replace(r, piece=r.piece or piece) for r in request.renders)
        request.piece += 1
        self._start_piece(request)

    def _plan_next_window(self, request: CoreRequest) -> None:
        """A chunk falls due at exactly the token count it would alone (one token arrives per step), so its
        window holds the same tokens however long it then waits to render."""
        renderer, renders = request.renderer, request.renders
        own = [render for render in renders if render.piece is None]  # not an earlier piece's
        planned_end = own[-1].end if own else renderer.rendered_tokens
        next_end = planned_end + renderer.plan.chunk_size(renderer.chunks_rendered + len(own))
        if len(request.tokens) >= next_end:
            self._queue_render(request, final=False)
            next_end += renderer.plan.chunk_size(renderer.chunks_rendered + len(own) + 1)
        request.next_window_in = next_end - len(request.tokens)
        # The shape is known while no earlier window waits (its start depends on where they end).
        request.next_window_key = None if renders else renderer.window_key(next_end)

    def _queue_render(self, request: CoreRequest, final: bool) -> None:
        """Queue the render of the tokens so far; its S3Gen shape is known once the renders before it ran."""
        end = len(request.tokens)
        known = request.renderer is not None and end > 0 and not request.renders
        request.renders.append(Render(end, final, request.renderer.window_key(end) if known else None))


def _unchanged(audio: np.ndarray) -> np.ndarray:
    return audio


def _report(callback: Callable, stats: object) -> None:
    try:
        callback(stats)
    except Exception:  # metrics must never fail the requests
        log.exception("engine metrics callback failed")


# Loops still running when the interpreter exits are stopped first: a daemon thread caught inside a torch
# call at finalization is killed by pthread_exit, whose unwinding through C++ aborts the process
# ("terminate called without an active exception", exit code 134) in any script that exits mid-request.
_running_cores: weakref.WeakSet[EngineCore] = weakref.WeakSet()


@atexit.register
def _stop_running_cores() -> None:
    for core in list(_running_cores):
        core.stop(timeout_s=30.0)
