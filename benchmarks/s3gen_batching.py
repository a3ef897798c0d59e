"""S3Gen work of concurrent streams, batched vs one window at a time (full-size random weights).

A streamed request re-renders a window of tokens (left context + new tokens) through the flow (Conformer,
10-step CFM over reference prompt + window) and HiFT for every chunk. Concurrent streams in step (the
T3 batcher makes their chunks fall due together) hand equal-shape windows to `S3Gen.synthesize`, which
runs them as one batch. This prints windows/s for B windows rendered one by one and as one batch, in
the same process, and the largest difference between the two audios (same generators).

    .venv/bin/python benchmarks/s3gen_batching.py [--batches 1,2,4] [--window 50] [--prompt-seconds 10]
"""

from __future__ import annotations

import argparse
import time

import torch
from chatterbox_engine.engine import synthetic_reference
from chatterbox_engine.s3gen import S3Gen, S3GenConfig, S3GenReference, SynthesisWindow


def windows(ref: S3GenReference, count: int, window: int) -> list[SynthesisWindow]:
    tokens = torch.randint(0, 6561, (count, window), generator=torch.Generator().manual_seed(0))
    return [
        SynthesisWindow(tokens[i : i + 1], ref, torch.Generator().manual_seed(100 + i)) for i in range(count)
    ]


def timed(run) -> tuple[float, list]:
    started = time.perf_counter()
    out = run()
    return time.perf_counter() - started, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="1,2,4", help="comma-separated window counts")
    parser.add_argument("--window", type=int, default=50, help="tokens per window (25 context + 25 new)")
    parser.add_argument("--prompt-seconds", type=float, default=10.0, help="reference prompt length")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--steps", type=int, default=10, help="CFM steps (the model's default is 10)")
    args = parser.parse_args()
    torch.manual_seed(0)
    s3gen = S3Gen(S3GenConfig.full()).to(getattr(torch, args.dtype))
    print(
        f"S3Gen full-size random weights, {args.dtype}, {torch.get_num_threads()} threads, "
        f"window {args.window} tokens, prompt {args.prompt_seconds:g} s, {args.steps} CFM steps"
    )
    ref = s3gen.embed_ref(torch.from_numpy(synthetic_reference(args.prompt_seconds)[0])[None])
    s3gen.synthesize(windows(ref, 1, args.window), args.steps)  # warm-up
    print(f"{'windows':>8} {'one by one':>14} {'batched':>14} {'speed-up':>9} {'max |diff|':>11}")
    for count in (int(b) for b in args.batches.split(",")):
        jobs = windows(ref, count, args.window)
        alone_s, alone = timed(lambda j=jobs: [s3gen.synthesize([w], args.steps)[0] for w in j])
        jobs = windows(ref, count, args.window)  # fresh generators: the same draws again
        batch_s, batched = timed(lambda j=jobs: s3gen.synthesize(j, args.steps))
        diff = max(float((a[0] - b[0]).abs().max()) for a, b in zip(alone, batched, strict=True))
        print(
            f"{count:>8} {count / alone_s:>10.3f} w/s {count / batch_s:>10.3f} w/s "
            f"{alone_s / batch_s:>8.2f}x {diff:>11.2e}"
        )


if __name__ == "__main__":
    main()
