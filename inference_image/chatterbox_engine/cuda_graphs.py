"""Running the batched T3 decode step (`T3.step`): eagerly, or replayed from CUDA graphs on GPU.

Both runners call the very same `T3.step`; the CUDA runner only captures it once per batch-size bucket
(rows padded up to a power of two) over the static shared KV cache, with attention over the cache's whole
length (static shapes), and replays it. The eager runner, used on CPU, attends only up to the furthest
row's position. So the CPU tests exercise the exact step logic the GPU replays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from .t3 import T3, KVCache


class StepRunner(Protocol):
    def __call__(self, embeds: Tensor, cache: KVCache, positions: Tensor, max_position: int) -> Tensor:
        """embeds (B, 1, C) for cache rows 0..B at positions (B,) (max_position their largest) -> logits (B, V)."""


class EagerStep:
    def __init__(self, t3: T3) -> None:
        self.t3 = t3

    def __call__(self, embeds: Tensor, cache: KVCache, positions: Tensor, max_position: int) -> Tensor:
        return self.t3.step(embeds, cache, positions, kv_len=max_position + 1)


@dataclass
class _Captured:
    graph: torch.cuda.CUDAGraph
    embeds: Tensor  # static inputs, (bucket, 1, C) and (bucket,)
    positions: Tensor
    logits: Tensor  # static output (bucket, V)


def bucket_for(rows: int, capacity: int) -> int:
    """The smallest power of two holding rows, capped at the cache's row capacity."""
    bucket = 1
    while bucket < rows:
        bucket *= 2
    return min(bucket, capacity)


class CudaGraphStep:
    """Replays `T3.step` from a CUDA graph per row bucket; falls back to eager for anything unusual."""

    def __init__(self, t3: T3) -> None:
        self.t3 = t3
        self._eager = EagerStep(t3)
        self._graphs: dict[int, _Captured] = {}
        self._cache_identity: tuple[int, int, int, int] | None = None
        self._pool = torch.cuda.graph_pool_handle()

    def __call__(self, embeds: Tensor, cache: KVCache, positions: Tensor, max_position: int) -> Tensor:
        rows = embeds.shape[0]
        capacity = cache.keys.shape[1]
        if rows > capacity:
            return self._eager(embeds, cache, positions, max_position)
        identity = (cache.keys.data_ptr(), cache.values.data_ptr(), cache.max_len, capacity)
        if identity != self._cache_identity:  # the cache was regrown: graphs point at the old one
            self._graphs.clear()
            self._cache_identity = identity
        bucket = bucket_for(rows, capacity)
        captured = self._graphs.get(bucket)
        if captured is None:
            captured = self._graphs[bucket] = self._capture(bucket, cache)
        captured.embeds[:rows].copy_(embeds)
        captured.positions[:rows].copy_(positions)
        # Padding rows are free cache rows: they write at position 0, which a new request's prefill overwrites.
        captured.embeds[rows:].zero_()
        captured.positions[rows:].zero_()
        captured.graph.replay()
        return captured.logits[:rows]

    def _capture(self, bucket: int, cache: KVCache) -> _Captured:
        weight = self.t3.speech_head.weight
        embeds = torch.zeros(bucket, 1, self.t3.cfg.hidden_size, device=weight.device, dtype=weight.dtype)
        # Warm-up really runs, so it writes at the last cache position of rows 0..bucket; keep that column.
        last = cache.max_len - 1
        positions = torch.full((bucket,), last, device=weight.device, dtype=torch.long)
        saved = [t[:, :bucket, :, last].clone() for t in (cache.keys, cache.values)]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):
                self.t3.step(embeds, cache, positions, cache.max_len)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # thread_local: worker threads keep running S3Gen on the device while the batcher captures.
        with torch.cuda.graph(graph, pool=self._pool, capture_error_mode="thread_local"):
            logits = self.t3.step(embeds, cache, positions, cache.max_len)
        for tensor, column in zip((cache.keys, cache.values), saved, strict=True):
            tensor[:, :bucket, :, last] = column
        return _Captured(graph, embeds, positions, logits)


def make_step_runner(t3: T3, device: torch.device, *, use_cuda_graphs: bool = True) -> StepRunner:
    if device.type == "cuda" and use_cuda_graphs:
        return CudaGraphStep(t3)
    return EagerStep(t3)
