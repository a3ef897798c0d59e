"""Streamed vs whole utterance: what the chunk plan costs, window by window (issue 15's streaming goal).

A streamed utterance decodes the same T3 tokens as a whole one (same seed, same sampling); only S3Gen
differs: the whole path renders prompt + all tokens once, a stream renders one window per chunk, each
re-running the voice's reference prompt (attended bidirectionally, so never reusable exactly). This
script therefore times, in one process and alternating:

- T3 alone for N tokens (the engine loop's speech-tokens-only job; random weights with the stop token
  zeroed decode exactly N),
- the whole path's S3Gen (`S3Gen.inference` + one watermark), and
- each chunk plan's windows through the engine loop (a `Job` of given source tokens, which falls due
  and renders exactly as a stream's chunks do, per-chunk watermark included), per window timed,

and reports streamed / whole = (T3 + streamed S3Gen) / (T3 + whole S3Gen) per plan, with each window's
frames and the share of them that is reference prompt. A plan named `throughput+p75` renders windows after the
first on the prompt's last 75 tokens (opt-in, changes the audio): its drift against the same plan with the
whole prompt is given next to the drift another S3Gen seed causes. First audio = T3 time of the first chunk's
tokens + its window.

    .venv/bin/python benchmarks/stream_plan.py --dtype bfloat16 --tokens 50,100,250 --prompt-seconds 4,10
    .venv/bin/python benchmarks/stream_plan.py --plans realtime,throughput,50 --tokens 50   # quick look
"""

from __future__ import annotations

import argparse
import os
import subprocess
import time

import chatterbox_engine as ce
import numpy as np
import torch
from chatterbox_engine.engine_core import Job
from chatterbox_engine.loading import random_models
from chatterbox_engine.streaming import CHUNK_PLANS, ChunkPlan
from chatterbox_engine.voice import synthetic_reference

TEXT = "The quick brown fox jumps over the lazy dog while the band plays on. " * 6
SEED = 1


def plan_named(name: str) -> ChunkPlan:
    """realtime, throughput, a fixed chunk size, or any of them + pK: continuation windows on K prompt tokens."""
    base, _, prompt = name.partition("+p")
    plan = CHUNK_PLANS[base] if base in CHUNK_PLANS else ChunkPlan.fixed(int(base))
    return plan.with_continuation_prompt(int(prompt)) if prompt else plan


def drift(audio: np.ndarray, reference: np.ndarray) -> float:
    """RMS of the difference relative to the reference's RMS."""
    n = min(audio.size, reference.size)
    return float(np.sqrt(np.mean((audio[:n] - reference[:n]) ** 2) / np.mean(reference[:n] ** 2)))


class WindowLog:
    """Wraps `S3Gen.synthesize` to time each call and keep its window shapes."""

    def __init__(self, s3gen) -> None:
        self.s3gen, self.forward = s3gen, s3gen.synthesize
        self.calls: list[tuple[float, int, int]] = []  # seconds, window tokens, prompt tokens
        s3gen.synthesize = self

    def __call__(self, windows, *args, **kwargs):
        started = time.perf_counter()
        try:
            return self.forward(windows, *args, **kwargs)
        finally:
            window = windows[0]
            self.calls.append(
                (time.perf_counter() - started, window.tokens.size(-1), window.ref.prompt_token.size(-1))
            )


def t3_seconds(engine: ce.Engine, tokens: int, voice) -> tuple[float, list[float]]:
    """T3 alone: total seconds for `tokens` speech tokens and the time each token arrived."""
    request = engine.request(TEXT, voice, seed=SEED, max_new_tokens=tokens)
    t3_generator, s3gen_generator = engine._generators(SEED)
    ref = voice.s3gen_ref.to(engine.device, engine.s3gen.dtype)
    job = Job(
        ref, s3gen_generator, None, generation=request, t3_generator=t3_generator, speech_tokens_only=True
    )
    started = time.perf_counter()
    arrivals = [time.perf_counter() - started for _ in engine._core.outputs(job)]
    return time.perf_counter() - started, arrivals


def whole_s3gen(engine: ce.Engine, speech: list[int], ref) -> float:
    started = time.perf_counter()
    generator = torch.Generator().manual_seed(SEED)
    wav = engine.s3gen.inference(torch.tensor([speech]), ref, generator)
    engine._finish(wav[0].float().numpy())
    return time.perf_counter() - started


def streamed_s3gen(
    engine: ce.Engine, speech: list[int], ref, plan: ChunkPlan, log: WindowLog, seed: int = SEED
):
    log.calls.clear()
    generator = torch.Generator().manual_seed(seed)
    started = time.perf_counter()
    job = Job(ref, generator, plan, source_tokens=tuple(speech))
    audio = np.concatenate([chunk.audio for chunk in engine._core.outputs(job)])
    return time.perf_counter() - started, list(log.calls), audio


def machine() -> str:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout
    load = os.getloadavg()
    return f"commit {commit.strip()}, torch {torch.__version__}, load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--tokens", default="50,100,250")
    parser.add_argument("--prompt-seconds", default="4,10", help="reference lengths (synthetic voices)")
    parser.add_argument(
        "--plans", default="realtime,throughput", help=f"named {sorted(CHUNK_PLANS)} or a fixed size"
    )
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", default="random:full", help="random:tiny for a smoke test")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    models = random_models(args.model)
    with torch.no_grad():
        models.t3.speech_head.weight[models.t3.cfg.stop_speech_token] = 0.0
    engine = ce.Engine(models, source=args.model, device="cpu", dtype=dtype, watermark=True)
    log = WindowLog(engine.s3gen)
    print(
        f"{args.dtype}, {args.threads} threads, {machine()}, stages {engine.info['stage_dtypes']}", flush=True
    )
    voices = {
        float(s): engine.embed_voice(*synthetic_reference(float(s))) for s in args.prompt_seconds.split(",")
    }
    plans = {name: plan_named(name) for name in args.plans.split(",")}
    engine.generate("Hello.", seed=SEED, max_new_tokens=5)  # warm-up
    rng = np.random.default_rng(0)
    for n in [int(t) for t in args.tokens.split(",")]:
        voice = next(iter(voices.values()))
        t3, arrivals = t3_seconds(engine, n, voice)
        speech = rng.integers(0, 6561, n).tolist()
        print(f"\n{n} tokens: T3 {t3:.2f} s ({t3 / n:.3f} s/token)", flush=True)
        for seconds, voice in voices.items():
            ref = voice.s3gen_ref.to(engine.device, engine.s3gen.dtype)
            prompt = ref.prompt_token.size(-1)
            best: dict[str, tuple] = {}
            for _ in range(args.repeats):
                whole = whole_s3gen(engine, speech, ref)
                if "whole" not in best or whole < best["whole"][0]:
                    best["whole"] = (whole,)
                for name, plan in plans.items():
                    total, calls, audio = streamed_s3gen(engine, speech, ref, plan, log)
                    if name not in best or total < best[name][0]:
                        best[name] = (total, calls, audio)
            whole = best["whole"][0]
            print(
                f"  prompt {seconds:g} s ({prompt} tokens): whole S3Gen {whole:.2f} s, whole total {t3 + whole:.2f} s"
            )
            for name in plans:
                total, calls, audio = best[name]
                first_tokens = plans[name].chunk_size(0)
                first = arrivals[min(first_tokens, n) - 1] + calls[0][0]
                shares = ", ".join(f"{w}+{p}p {s:.2f}s" for s, w, p in calls)
                print(
                    f"    {name:10s} {len(calls)} windows, S3Gen {total:.2f} s ({total / whole:.2f}x whole), "
                    f"streamed/whole {(t3 + total) / (t3 + whole):.2f}, first audio ~{first:.2f} s | {shares}",
                    flush=True,
                )
                base = name.partition("+p")[0]
                if base != name and base in best:
                    # Scale: the same plan's audio under another S3Gen seed (different noise, same tokens).
                    other_seed = streamed_s3gen(engine, speech, ref, plans[base], log, SEED + 1)[2]
                    print(
                        f"      drift vs {base} (whole prompt): {drift(audio, best[base][2]):.3f} relative RMS; "
                        f"{base} under another seed: {drift(other_seed, best[base][2]):.3f}",
                        flush=True,
                    )
    print(f"\nat the end: {machine()}")


if __name__ == "__main__":
    main()
