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
from chatterbox_engine.s3gen import S3Gen, S3GenConfig, S3GenReference, SynthesisWindow
from chatterbox_engine.voice import synthetic_reference


def windows(ref: S3GenReference, count: int, window: int) -> list[SynthesisWindow]:
    device = ref.prompt_token.device
    tokens = torch.randint(0, 6561, (count, window), generator=torch.Generator().manual_seed(0)).to(device)
    return [
        SynthesisWindow(tokens[i : i + 1], ref, torch.Generator(device).manual_seed(100 + i))
        for i in range(count)
    ]


def synchronize(s3gen: S3Gen) -> None:
    if s3gen.device.type == "cuda":
        torch.cuda.synchronize()


def compare(
    s3gen: S3Gen, ref: S3GenReference, count: int, window: int, steps: int
) -> tuple[float, float, float]:
    """Seconds for `count` windows one by one, then as one batch (same generators), and max |wav diff|."""
    synchronize(s3gen)
    started = time.perf_counter()
    alone = [s3gen.synthesize([w], steps)[0] for w in windows(ref, count, window)]
    synchronize(s3gen)
    alone_s = time.perf_counter() - started
    started = time.perf_counter()
    batched = s3gen.synthesize(windows(ref, count, window), steps)  # fresh generators: the same draws
    synchronize(s3gen)
    batch_s = time.perf_counter() - started
    diff = max(float((a[0] - b[0]).abs().max()) for a, b in zip(alone, batched, strict=True))
    return alone_s, batch_s, diff


def print_comparison(s3gen: S3Gen, ref: S3GenReference, counts, window: int, steps: int) -> None:
    print(f"{'windows':>8} {'one by one':>14} {'batched':>14} {'speed-up':>9} {'max |diff|':>11}")
    for count in counts:
        alone_s, batch_s, diff = compare(s3gen, ref, count, window, steps)
        print(
            f"{count:>8} {count / alone_s:>10.3f} w/s {count / batch_s:>10.3f} w/s "
            f"{alone_s / batch_s:>8.2f}x {diff:>11.2e}"
        )


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
    print_comparison(s3gen, ref, [int(b) for b in args.batches.split(",")], args.window, args.steps)


if __name__ == "__main__":
    main()
