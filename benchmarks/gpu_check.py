"""GPU figures (when a CUDA device is present): T3 it/s with CUDA graphs vs eager at batch 1 and 8, S3Gen
stream windows one by one vs batched, and end-to-end TTFA / RTF of the engine (random:full) for 1 and 8 concurrent streams. Prints a notice and exits
0 on a machine without CUDA, so `make bench` runs everywhere.

    .venv/bin/python benchmarks/gpu_check.py [--dtype bfloat16] [--tokens 200]
"""

from __future__ import annotations

import argparse
import threading
import time

import numpy as np
import torch

SENTENCE = "The quick brown fox jumps over the lazy dog, and then it runs back home again."


def decode_rates(dtype: torch.dtype, tokens: int) -> None:
    """T3 tokens/s per stream (= it/s) through the engine loop, CUDA graphs vs eager, batch 1 and 8."""
    from chatterbox_engine.cuda_graphs import CudaGraphStep
    from chatterbox_engine.engine_core import EngineCore, SchedulerConfig
    from t3_batching import benchmark_voice, run_batched
    from t3_decode import build_ours, build_upstream, in_dtype, run_upstream

    fp32 = build_ours("cuda")
    t3 = in_dtype(fp32, dtype)
    voice = benchmark_voice("cuda")

    # The graph replays the same forward the eager path runs: check once before timing.
    cache = t3.new_cache(16, 512)
    with torch.inference_mode():
        embeds = t3.embed_speech_rows(
            torch.full((3, 1), 100, device="cuda"), torch.tensor([1, 2, 3], device="cuda")
        )
        input_pos = torch.tensor([[5], [9], [7]], device="cuda")
        eager = t3(embeds, input_pos, cache, 10).float()
        graphed = CudaGraphStep(t3)(embeds, input_pos, cache, 10).float()
    print(f"  CUDA graph vs eager step, max |diff| of logits: {float((eager - graphed).abs().max()):.2e}")

    for graphs in (True, False):
        core = EngineCore(
            t3, None, finish_audio=lambda audio: audio, tail_tokens=[],
            config=SchedulerConfig(max_requests=8), use_cuda_graphs=graphs,
        )  # fmt: skip
        for requests in (1, 8):
            run_batched(core, voice, "cuda", requests, 5)  # captures this bucket's graph
            rate = run_batched(core, voice, "cuda", requests, tokens)
            label = "CUDA graphs" if graphs else "eager      "
            print(
                f"  T3 {label} batch {requests}: {rate / requests:7.1f} it/s per stream, "
                f"{rate:8.1f} tokens/s aggregate"
            )
    upstream_tokens = min(tokens, 200)
    upstream = build_upstream(fp32, "cuda")
    run_upstream(upstream, "cuda", 5)
    count, seconds = run_upstream(upstream, "cuda", upstream_tokens)
    print(f"  upstream T3.inference fp32 batch 1: {count / seconds:7.1f} it/s")
    del upstream, fp32, t3
    torch.cuda.empty_cache()


def s3gen_batch_rates(dtype: torch.dtype) -> None:
    """Stream chunk windows (50 tokens over a 10 s prompt) through S3Gen one by one vs batched."""
    from chatterbox_engine.s3gen import S3Gen, S3GenConfig
    from chatterbox_engine.voice import synthetic_reference
    from s3gen_batching import print_comparison, windows

    s3gen = S3Gen(S3GenConfig.full()).to("cuda", dtype)
    ref = s3gen.embed_ref(torch.from_numpy(synthetic_reference(10.0)[0])[None])
    s3gen.synthesize(windows(ref, 8, 50))  # warm-up at both sizes
    s3gen.synthesize(windows(ref, 1, 50))
    print("  S3Gen stream windows (50 tokens, 10 s prompt, 10 CFM steps):")
    print_comparison(s3gen, ref, [1, 8], 50, 10)
    del s3gen
    torch.cuda.empty_cache()


def engine_latency(dtype: str) -> None:
    import chatterbox_engine as ce

    engine = ce.load("random:full", device="cuda", dtype=dtype, watermark=False)
    engine.enable_batching(8)
    for _ in engine.generate_stream("Warm up.", seed=0):
        pass

    def one(seed: int, out: list) -> None:
        started = time.perf_counter()
        first, samples = None, 0
        for chunk in engine.generate_stream(SENTENCE, seed=seed):
            first = first or time.perf_counter() - started
            samples += chunk.audio.size
        out.append((first, (time.perf_counter() - started) / (samples / ce.SAMPLE_RATE)))

    for concurrent in (1, 8):
        results: list = []
        threads = [threading.Thread(target=one, args=(seed, results)) for seed in range(concurrent)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        ttfa, rtf = np.median([r[0] for r in results]), np.median([r[1] for r in results])
        print(f"  engine streaming x{concurrent}: TTFA median {ttfa:.3f} s, RTF median {rtf:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--tokens", type=int, default=200, help="tokens per stream for the it/s figures")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print(
            "gpu_check: no CUDA device here; GPU figures are pending (run benchmarks/gpu_check.sh on a GPU)"
        )
        return
    print(f"GPU check on {torch.cuda.get_device_name()}, {args.dtype}, full-size random weights")
    decode_rates(getattr(torch, args.dtype), args.tokens)
    s3gen_batch_rates(getattr(torch, args.dtype))
    engine_latency(args.dtype)


if __name__ == "__main__":
    main()
