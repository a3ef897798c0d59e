"""The one T3 decode loop: a batch of requests sharing a static KV cache, a lone request being a batch of one.

Every variant decodes here (English and multilingual Llama T3 with a CFG pair of rows per request, Turbo's
GPT-2 T3 with one row), on CPU and GPU. A step of the loop is

    prefill(group)  new requests' rows: one right-padded forward over their prompts
    sample()        each request's next token from its logits, with its own generator; stop or budget
                    ends a request, whose rows leave the cache (the others move down to stay contiguous)
    decode()        one forward of every remaining row at its own position (replayed from CUDA graphs on GPU)

Per request the work is what it would be alone: the same prefill, the same sampling code in the same order
with the same generator, so a seed gives the same tokens batched or alone; only the backbone's matrix
products see more rows at once. One step reads the weights once for all rows, which is where batching
wins on a memory-bound CPU or GPU.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .cuda_graphs import make_step_runner
from .sampling import SamplingParams

LENGTH_QUANTUM = 256  # the shared cache grows in these steps (fewer regrowths, fewer CUDA-graph captures)


@dataclass(eq=False)  # requests are told apart by identity
class DecodeRequest:
    """One request's speech-token decoding: its prompt, knobs and generator, then its state in the batch."""

    prompt: Tensor  # (rows, prefill_len, C) from the T3's `prefill_embeds`: a CFG pair, or one row
    params: SamplingParams
    generator: torch.Generator
    max_new_tokens: int
    # Keys and values (layers, rows, H, P, D) of the prompt's first P positions, already computed (Turbo/Nano:
    # its voice's conditioning); prefill copies them into the cache and runs the rest of the prompt only.
    prefix: tuple[Tensor, Tensor] | None = None
    cancelled: bool = False  # set from any thread; the request leaves the batch at its next step
    first_row: int = 0  # of its rows in the shared cache
    position: int = 0  # cache position of the next token fed in
    sampled: int = 0  # tokens sampled so far
    history: Tensor | None = None  # (1, max_new_tokens + 1): the speech BOS, then every sampled token
    logits: Tensor | None = None  # (rows, V), to sample the next token from

    @property
    def rows(self) -> int:
        return self.prompt.shape[0]

    @property
    def prefill_len(self) -> int:
        return self.prompt.shape[1]

    @property
    def prefix_len(self) -> int:
        return 0 if self.prefix is None else self.prefix[0].shape[3]

    @property
    def needed_len(self) -> int:
        return self.prefill_len + self.max_new_tokens


@torch.inference_mode()
def new_request(
    t3,
    cond: Tensor,
    text_tokens: Tensor,
    params: SamplingParams,
    generator: torch.Generator,
    max_new_tokens: int,
) -> DecodeRequest:
    """cond (1, cond_len, C) from the T3's `embed_conditioning`, text_tokens (1, L) in its format. With
    cfg_weight > 0 the Llama T3 decodes a conditional and an unconditional row (CFG); Turbo always one."""
    prompt = t3.prefill_embeds(cond, text_tokens, cfg_rows=params.cfg_weight > 0)
    # Turbo's learned positions end at max_positions; the budget stops short of them, as upstream's.
    max_new_tokens = min(max_new_tokens, t3.max_positions - prompt.shape[1])
    # A T3 whose conditioning positions do not depend on the text (Turbo/Nano) keeps their keys and values.
    conditioning_kv = getattr(t3, "conditioning_kv", None)
    prefix = conditioning_kv(cond) if conditioning_kv is not None else None
    return DecodeRequest(prompt, params, generator, max_new_tokens, prefix=prefix)


@dataclass(frozen=True)
class Sampled:
    """What one request's sampling gave at a step: a token to emit (None: the stop token), and whether the
    request is finished (stop token, budget spent, or `error`: its sampling failed, e.g. on NaN logits)."""

    request: DecodeRequest
    token: int | None
    finished: bool
    error: Exception | None = None


@dataclass(frozen=True)
class StepStats:
    """What one decode step did, for metrics."""

    requests: int
    rows: int
    seconds: float


class DecodeBatch:
    """The decode state of every active request; rows 0..N of the cache are theirs, in order.

    Not thread-safe: one thread drives it (the engine's loop, or `decode_speech_tokens` for a lone
    request); other threads only set `DecodeRequest.cancelled`."""

    def __init__(self, t3, *, max_rows: int, use_cuda_graphs: bool = True) -> None:
        self.t3 = t3
        self.max_rows = max_rows
        weight = t3.speech_head.weight
        self.device = weight.device
        self._run_step = make_step_runner(t3, weight.device, use_cuda_graphs=use_cuda_graphs)
        self._cache = None  # allocated at the first prefill, grown when requests need more rows or positions
        self._graphs = weight.device.type == "cuda" and use_cuda_graphs
        self.requests: list[DecodeRequest] = []

    @property
    def rows(self) -> int:
        return sum(request.rows for request in self.requests)

    def prefill(self, group: list[DecodeRequest]) -> None:
        """Prefill the group's rows, right after the active ones, in one right-padded forward pass: each
        request's rows hold what its own prefill would write (plus masked padding garbage)."""
        self._compact([request for request in self.requests if not request.cancelled])  # free their rows
        first_row = row = self.rows
        for request in group:
            request.first_row, row = row, row + request.rows
        if row > self.max_rows:
            raise ValueError(f"{row} rows exceed the batch's {self.max_rows}")
        # Each request's forward starts after its cached prefix, at its own position; padding goes past its end.
        longest = max(request.prefill_len - request.prefix_len for request in group)
        reach = max(r.prefix_len for r in group) + longest
        budget = max(request.needed_len for request in group)
        self._reserve(row, max(reach, budget) if self._graphs else reach)
        for request in group:
            if request.prefix is not None:
                rows = slice(request.first_row, request.first_row + request.rows)
                keys, values = request.prefix
                self._cache.keys[:, rows, :, : request.prefix_len] = keys
                self._cache.values[:, rows, :, : request.prefix_len] = values
        rest = [request.prompt[:, request.prefix_len :] for request in group]
        embeds = torch.cat([F.pad(prompt, (0, 0, 0, longest - prompt.shape[1])) for prompt in rest])
        lengths = torch.tensor(
            [prompt.shape[1] for prompt in rest for _ in range(prompt.shape[0])], device=self.device
        )
        starts = torch.tensor([r.prefix_len for r in group for _ in range(r.rows)], device=self.device)
        input_pos = starts[:, None] + torch.arange(longest, device=self.device)  # (rows, longest)
        kv_len = max(request.prefix_len for request in group) + longest
        logits = self.t3(embeds, input_pos, self._cache.rows(first_row, row), kv_len, logits_at=lengths - 1)
        start_token = self.t3.cfg.start_speech_token
        for request in group:
            offset = request.first_row - first_row
            request.logits = logits[offset : offset + request.rows]  # (rows, V)
            request.position = request.prefill_len
            request.history = torch.full(
                (1, request.max_new_tokens + 1), start_token, dtype=torch.long, device=self.device
            )
            self.requests.append(request)

    def _reserve(self, rows: int, length: int) -> None:
        """Make the shared cache hold at least `rows` rows and `length` positions. Without CUDA graphs it grows
        only as far as the requests have got (rows to a power of two, positions in LENGTH_QUANTUM steps):
        reserving each request's budget (1000 tokens by default) for every row would take 5 GB for 8 float32
        CFG pairs, mostly never reached, and zeroing it stalls the first request. Graphs are captured
        against the cache, so with them it takes every row and each request's whole budget at once."""
        cache = self._cache
        if cache is not None and rows <= cache.kv.shape[1] and length <= cache.max_len:
            return
        rows = self.max_rows if self._graphs else min(self.max_rows, 1 << (rows - 1).bit_length())
        length = -(-length // LENGTH_QUANTUM) * LENGTH_QUANTUM
        if cache is None:
            self._cache = self.t3.new_cache(rows, length)
        else:
            self._cache = cache.grown(max(rows, cache.kv.shape[1]), max(length, cache.max_len))

    def sample(self) -> list[Sampled]:
        """Sample every live request's next token; retire the finished and the cancelled."""
        stop = self.t3.cfg.stop_speech_token
        live, tokens, outcomes = [], [], []
        for request in self.requests:
            if request.cancelled:
                continue
            try:
                token = self.t3.sample(
                    request.logits, request.history, request.sampled, request.params, request.generator
                )
            except Exception as error:  # this request's logits (e.g. NaN from its voice): it alone fails
                outcomes.append(Sampled(request, None, True, error))
                continue
            request.sampled += 1
            request.history[:, request.sampled] = token[0]
            live.append(request)
            tokens.append(token.view(1))
        # One device-to-host read for the whole batch, not one per request.
        token_ids = torch.cat(tokens).tolist() if tokens else []
        for request, token_id in zip(live, token_ids, strict=True):
            finished = token_id == stop or request.sampled == request.max_new_tokens
            outcomes.append(Sampled(request, None if token_id == stop else token_id, finished))
        for request in self.requests:
            request.logits = None  # consumed; the next step sets the staying requests' anew
        self._compact([outcome.request for outcome in outcomes if not outcome.finished])
        return outcomes

    def _compact(self, staying: list[DecodeRequest]) -> None:
        """Move the staying requests' rows down so rows 0..N stay the active ones, in order."""
        row = 0
        for request in staying:
            if request.first_row != row:
                self._cache.move_rows(request.first_row, request.first_row + request.rows, row)
                request.first_row = row
            row += request.rows
        self.requests = staying

    def decode(self) -> StepStats | None:
        """Feed every active request's last sampled token through one forward pass at its own position."""
        if not self.requests:
            return None
        started = time.perf_counter()
        tokens, speech_positions, positions = [], [], []
        for request in self.requests:
            # The k-th sampled token sits at learned speech position k (the BOS took position 0).
            tokens += [request.history[0, request.sampled]] * request.rows
            speech_positions += [request.sampled] * request.rows
            positions += [request.position] * request.rows
        embeds = self.t3.embed_speech_rows(
            torch.stack(tokens)[:, None], torch.tensor(speech_positions, device=self.device)
        )  # (B, 1, C)
        input_pos = torch.tensor(positions, device=self.device)[:, None]  # (B, 1)
        kv_len = max(positions) + 1
        self._reserve(len(positions), kv_len)
        logits = self._run_step(embeds, input_pos, self._cache, kv_len)[:, 0]  # (B, V)
        for request in self.requests:
            request.logits = logits[request.first_row : request.first_row + request.rows]
            request.position += 1
        return StepStats(len(self.requests), embeds.shape[0], time.perf_counter() - started)


@torch.inference_mode()
def decode_speech_tokens(
    t3,
    cond: Tensor,
    text_tokens: Tensor,
    params: SamplingParams,
    generator: torch.Generator,
    max_new_tokens: int,
    *,
    use_cuda_graphs: bool = True,
) -> Iterator[int]:
    """One request alone, a batch of one: yield its sampled speech token ids until the stop token (not
    yielded) or max_new_tokens. Closing the iterator stops decoding."""
    request = new_request(t3, cond, text_tokens, params, generator, max_new_tokens)
    batch = DecodeBatch(t3, max_rows=request.rows, use_cuda_graphs=use_cuda_graphs)
    batch.prefill([request])
    while True:
        (outcome,) = batch.sample()
        if outcome.error is not None:
            raise outcome.error
        if outcome.token is not None:
            yield outcome.token
        if outcome.finished:
            return
        batch.decode()
