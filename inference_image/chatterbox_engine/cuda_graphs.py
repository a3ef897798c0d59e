"""Running the batched T3 decode step: the T3's own forward, eagerly or replayed from CUDA graphs on GPU.

On CPU the step runner is the model itself (`T3.forward` with one token per row), attending only up to the
furthest row's position. On GPU `CudaGraphStep` captures that very forward once per batch-size bucket (rows
padded up to a power of two) over the static shared KV cache, with attention over the cache's whole length
(static shapes), and replays it. So the CPU tests exercise the exact step logic the GPU replays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from .t3 import KVCache


class StepRunner(Protocol):
    def __call__(self, embeds: Tensor, input_pos: Tensor, cache: KVCache, kv_len: int) -> Tensor:
        """embeds (B, 1, C) for cache rows 0..B at positions input_pos (B, 1), attending to cache positions
        below kv_len -> logits (B, 1, V): the T3 forward's signature."""


@dataclass
class _Captured:
    graph: torch.cuda.CUDAGraph
    embeds: Tensor  # static inputs, (bucket, 1, C) and (bucket, 1)
    input_pos: Tensor
    logits: Tensor  # static output (bucket, 1, V)


def bucket_for(rows: int, capacity: int) -> int:
    """The smallest power of two holding rows, capped at the cache's row capacity."""
    bucket = 1
    while bucket < rows:
        bucket *= 2
    return min(bucket, capacity)


class CudaGraphStep:
    """Replays the T3 forward's decode step from a CUDA graph per row bucket; eager when rows overflow."""

    def __init__(self, t3) -> None:
        self.t3 = t3
        self._graphs: dict[int, _Captured] = {}
        self._cache_identity: tuple[int, int, int] | None = None
        self._pool = torch.cuda.graph_pool_handle()

    def __call__(self, embeds: Tensor, input_pos: Tensor, cache: KVCache, kv_len: int) -> Tensor:
        rows = embeds.shape[0]
        capacity = cache.kv.shape[1]
        if rows > capacity:
            return self.t3(embeds, input_pos, cache, kv_len)
        identity = (cache.kv.data_ptr(), cache.max_len, capacity)
        if identity != self._cache_identity:  # the cache was regrown: graphs point at the old one
            self._graphs.clear()
            self._cache_identity = identity
        bucket = bucket_for(rows, capacity)
        captured = self._graphs.get(bucket)
        if captured is None:
            captured = self._graphs[bucket] = self._capture(bucket, cache)
        captured.embeds[:rows].copy_(embeds)
        captured.input_pos[:rows].copy_(input_pos)
        # Padding rows are free cache rows: they write at position 0, which a new request's prefill overwrites.
        captured.embeds[rows:].zero_()
        captured.input_pos[rows:].zero_()
        captured.graph.replay()
        return captured.logits[:rows]

    def _capture(self, bucket: int, cache: KVCache) -> _Captured:
        weight = self.t3.speech_head.weight
        embeds = torch.zeros(bucket, 1, self.t3.cfg.hidden_size, device=weight.device, dtype=weight.dtype)
        # Warm-up really runs, so it writes at the last cache position of rows 0..bucket; keep that column.
        last = cache.max_len - 1
        input_pos = torch.full((bucket, 1), last, device=weight.device, dtype=torch.long)
        saved = cache.kv[:, :bucket, :, last].clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):
                self.t3(embeds, input_pos, cache, cache.max_len)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # thread_local: other threads keep running S3Gen on the device while this one captures.
        with torch.cuda.graph(graph, pool=self._pool, capture_error_mode="thread_local"):
            logits = self.t3(embeds, input_pos, cache, cache.max_len)
        cache.kv[:, :bucket, :, last] = saved
        return _Captured(graph, embeds, input_pos, logits)


def make_step_runner(t3, device: torch.device, *, use_cuda_graphs: bool = True) -> StepRunner:
    """The T3 itself on CPU (or without graphs); its forward replayed from CUDA graphs on GPU."""
    if device.type == "cuda" and use_cuda_graphs:
        return CudaGraphStep(t3)
    return t3
