"""Aggregate T3 decode speed with continuous batching: 1, 2, 4, 8 concurrent requests vs upstream single-stream.

Each concurrent request (a CFG pair of rows, its own seed) decodes the same number of tokens through our
`DecodeBatcher`; aggregate tokens/s = all requests' tokens / wall time from the first submit to the last
token, prefills included. Upstream 0.1.7 `T3.inference` runs one stream at a time on the same full-size
random weights (fp32, its only precision), measured before and after ours in the same process.

    .venv/bin/python benchmarks/t3_batching.py [--tokens 60] [--concurrency 1 2 4 8] [--dtype bfloat16]
"""

from __future__ import annotations

import argparse
import threading
import time

import torch
from chatterbox_engine.batching import DecodeBatcher
from chatterbox_engine.sampling import SamplingParams
from t3_decode import (
    TEXT_TOKENS,
    best_rate,
    build_ours,
    build_upstream,
    in_dtype,
    our_cond,
    run_upstream,
    sync,
)


def run_batched(batcher: DecodeBatcher, cond: torch.Tensor, device: str, requests: int, tokens: int) -> float:
    """Aggregate tokens/s of `requests` concurrent streams."""
    counts = [0] * requests

    def consume(index: int) -> None:
        generator = torch.Generator(device).manual_seed(index)
        stream = batcher.submit(cond, TEXT_TOKENS.to(device), SamplingParams(), generator, tokens)
        counts[index] = sum(1 for _ in stream)

    started = time.perf_counter()
    threads = [threading.Thread(target=consume, args=(i,)) for i in range(requests)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    sync(device)
    return sum(counts) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tokens", type=int, default=60, help="new speech tokens per request")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    ours = build_ours(args.device)
    upstream = build_upstream(ours, args.device)
    ours = in_dtype(ours, getattr(torch, args.dtype))
    cond = our_cond(ours, args.device)
    batcher = DecodeBatcher(ours, max_requests=max(args.concurrency))
    run_upstream(upstream, args.device, 3)  # warm-up
    run_batched(batcher, cond, args.device, 1, 3)
    upstream_runs = [run_upstream(upstream, args.device, args.tokens)]
    rates = {n: run_batched(batcher, cond, args.device, n, args.tokens) for n in args.concurrency}
    upstream_runs.append(run_upstream(upstream, args.device, args.tokens))
    baseline = best_rate(upstream_runs)
    print(
        f"T3 aggregate decode with continuous batching, full-size random weights, device={args.device}, "
        f"threads={args.threads}, ours {args.dtype}, {args.tokens} tokens per request"
    )
    print(f"  upstream fp32, 1 stream : {baseline:7.2f} tokens/s   1.00x")
    for requests, rate in rates.items():
        print(f"  ours, {requests} concurrent      : {rate:7.2f} tokens/s   {rate / baseline:5.2f}x upstream")


if __name__ == "__main__":
    main()
