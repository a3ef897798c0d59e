"""Whole utterances end to end: upstream chatterbox-tts 0.1.7 vs our engine in float32 and bfloat16.

All sides load the same full-size random weights, written once in the official layout by
`Engine.save_checkpoint` (built-in voice included), and speak the same one-sentence text with the same
thread count, alternating in one process so that load from other processes skews no side more than another.
Upstream runs `ChatterboxTTS.from_local(folder).generate(text)`, ours `Engine.generate(text)` and
`Engine.generate_stream(text)` (first chunk and all chunks). Random weights rarely sample the stop token, so
every side decodes exactly `--tokens` speech tokens (upstream's hard-coded 1000 is replaced); the special
codes (>= 6561) it samples are filtered out on both sides alike (upstream's cut at a sampled start-of-speech
code is bypassed), so audio lengths differ a little and real-time factors (seconds per second of audio)
are compared. Each side's T3 and S3Gen times are split out (upstream's by
timing its `t3.inference` and `s3gen.inference`); "other" is the rest: text front end and watermark.

`--overlap on,off` runs our sides both with S3Gen rendering on its own thread while T3 decodes (the default
on a CPU with two or more cores) and serially (`SchedulerConfig.overlap_s3gen`), alternating in the rounds.

`--profile` also times S3Gen by stage (Conformer encoder, each CFM estimator step, HiFT source and decoder,
watermark) for our float32 and bfloat16 engines.

    .venv/bin/python benchmarks/e2e.py [--tokens 100] [--repeats 2] [--threads 2] [--profile]
    .venv/bin/python benchmarks/e2e.py --tokens 25 --repeats 1 --sides fp32,bf16   # quick look
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import gc
import os
import platform
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import chatterbox_engine as ce
import numpy as np
import torch
from chatterbox_engine.loading import random_models
from chatterbox_engine.streaming import CHUNK_PLANS

TEXT = "The quick brown fox jumps over the lazy dog while the band plays on."
SEED = 1
SAMPLE_RATE = ce.SAMPLE_RATE


@dataclass
class Run:
    audio_s: float
    total_s: float
    t3_s: float
    s3gen_s: float
    first_chunk_s: float | None = None

    @property
    def rtf(self) -> float:
        return self.total_s / max(self.audio_s, 1e-9)


@dataclass
class Side:
    name: str
    run: Callable[[], Run]
    runs: list[Run] = field(default_factory=list)

    def best(self) -> Run:
        return min(self.runs, key=lambda r: r.rtf)


def write_checkpoint(folder: Path) -> None:
    """`random:full` in the official layout, its stop token never sampled (every run decodes --tokens)."""
    models = random_models("random:full")
    with torch.no_grad():
        models.t3.speech_head.weight[models.t3.cfg.stop_speech_token] = 0.0
    engine = ce.Engine(models, source="random:full", device="cpu", dtype=torch.float32, watermark=False)
    engine.save_checkpoint(folder)
    del engine, models
    gc.collect()


def timed(fn, seconds: list[float]):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            seconds.append(time.perf_counter() - started)

    return wrapper


def upstream_side(folder: Path, tokens: int, text: str) -> Side:
    import chatterbox.tts
    from chatterbox.tts import ChatterboxTTS

    # Random weights sample the start-of-speech code now and then, and upstream's drop_invalid_tokens then
    # drops everything before it (trained weights never emit it mid-utterance): keep the tokens, as ours
    # does; `generate` still filters every code >= 6561 out afterwards.
    chatterbox.tts.drop_invalid_tokens = lambda tokens: tokens
    tts = ChatterboxTTS.from_local(folder, "cpu")
    t3_times: list[float] = []
    s3gen_times: list[float] = []
    t3_inference = tts.t3.inference

    def fixed_length(*args, **kwargs):
        kwargs["max_new_tokens"] = tokens
        return t3_inference(*args, **kwargs)

    tts.t3.inference = timed(fixed_length, t3_times)
    tts.s3gen.inference = timed(tts.s3gen.inference, s3gen_times)

    def run() -> Run:
        t3_times.clear()
        s3gen_times.clear()
        torch.manual_seed(SEED)
        started = time.perf_counter()
        wav = tts.generate(text)
        total = time.perf_counter() - started
        return Run(wav.shape[-1] / SAMPLE_RATE, total, sum(t3_times), sum(s3gen_times))

    return Side("upstream fp32", run)


def our_sides(
    engine: ce.Engine, label: str, tokens: int, text: str, plans: list[str], core=None
) -> list[Side]:
    """The engine's whole and streamed runs, on `core` (an `EngineCore` of other settings) where given."""
    own_core = engine._core

    def on_core(run: Callable[[], Run]) -> Callable[[], Run]:
        @functools.wraps(run)
        def wrapper(*args) -> Run:
            engine._core = core or own_core
            return run(*args)

        return wrapper

    @on_core
    def whole() -> Run:
        started = time.perf_counter()
        out = engine.generate(text, seed=SEED, max_new_tokens=tokens)
        total = time.perf_counter() - started
        return Run(out.audio.size / SAMPLE_RATE, total, out.t3_seconds, out.s3gen_seconds)

    @on_core
    def streamed(plan: str) -> Run:
        name, _, prompt = plan.partition(
            "+p"
        )  # e.g. throughput+p25: continuation windows on 25 prompt tokens
        named = name in CHUNK_PLANS
        options = {} if named or name == "default" else {"chunk_tokens": int(name)}
        engine.use_chunk_plan(name if named else "auto", int(prompt) if prompt else None)
        started = time.perf_counter()
        first, samples = None, 0
        for chunk in engine.generate_stream(text, seed=SEED, max_new_tokens=tokens, **options):
            if first is None and chunk.audio.size:
                first = time.perf_counter() - started
            samples += chunk.audio.size
        total = time.perf_counter() - started
        return Run(samples / SAMPLE_RATE, total, float("nan"), float("nan"), first)

    sides = [Side(f"ours {label}", whole)]
    for plan in plans:
        suffix = "" if plan == "default" else f" {plan}"
        sides.append(Side(f"ours {label} streamed{suffix}", functools.partial(streamed, plan)))
    return sides


def print_table(sides: list[Side], repeats: int) -> None:
    baseline = next((s.best() for s in sides if s.name.startswith("upstream")), None)
    print(
        f"{'side':24s} {'audio s':>8s} {'total s':>8s} {'RTF':>6s} {'T3 s':>7s} {'S3Gen s':>8s} "
        f"{'other s':>8s} {'first s':>8s} {'vs upstream':>11s}"
    )
    for side in sides:
        best = side.best()
        other = best.total_s - best.t3_s - best.s3gen_s
        first = f"{best.first_chunk_s:8.2f}" if best.first_chunk_s is not None else f"{'':8s}"
        ratio = f"{baseline.rtf / best.rtf:10.2f}x" if baseline else ""
        print(
            f"{side.name:24s} {best.audio_s:8.2f} {best.total_s:8.2f} {best.rtf:6.2f} {best.t3_s:7.2f} "
            f"{best.s3gen_s:8.2f} {other:8.2f} {first} {ratio}"
        )
    by_name = {s.name: s.best() for s in sides}
    for name, best in by_name.items():
        if " streamed" in name:
            whole = by_name[name.split(" streamed")[0]]
            print(f"  {name}: streamed total / whole = {best.total_s / whole.total_s:.2f}")
    print(f"(best of {repeats} by real-time factor; RTF = seconds of compute per second of audio)")


@torch.inference_mode()
def profile_s3gen(engine: ce.Engine, label: str, tokens: int) -> None:
    """Time S3Gen's stages on `tokens` random speech tokens with the engine's built-in voice."""
    s3gen = engine.s3gen
    ref = engine.default_voice.s3gen_ref.to(s3gen.device, s3gen.dtype)
    speech = torch.randint(0, 6561, (1, tokens), generator=torch.Generator().manual_seed(0))
    steps: list[float] = []
    estimator = s3gen.flow.decoder.estimator
    forward = estimator.forward
    estimator.forward = timed(forward, steps)
    try:
        started = time.perf_counter()
        s3gen.flow.encode(torch.cat([ref.prompt_token, speech], dim=1), True)
        encoder = time.perf_counter() - started
        started = time.perf_counter()
        mel = s3gen.flow_inference(speech, ref, torch.Generator().manual_seed(0))
        flow = time.perf_counter() - started
    finally:
        del estimator.forward
    started = time.perf_counter()
    source = s3gen.mel2wav.source(mel, torch.Generator().manual_seed(0))
    hift_source = time.perf_counter() - started
    started = time.perf_counter()
    wav = s3gen.mel2wav.decode(mel, source)
    hift_decode = time.perf_counter() - started
    watermark = float("nan")
    if engine.watermarker is not None:
        audio = wav[0].float().numpy()
        engine.watermarker.apply(audio)  # builds Perth once
        started = time.perf_counter()
        engine.watermarker.apply(audio)
        watermark = time.perf_counter() - started
    frames = ref.prompt_feat.size(1) + mel.size(-1)
    print(
        f"  {label}: {tokens} tokens + {ref.prompt_token.size(-1)} prompt tokens = {frames} frames, "
        f"CFG batch 2 | encoder {encoder:.2f} s | estimator {len(steps)} steps: mean {np.mean(steps):.2f} s, "
        f"min {min(steps):.2f} s, sum {sum(steps):.2f} s | flow total {flow:.2f} s (encoder again + steps) | "
        f"HiFT source {hift_source:.2f} s, decode {hift_decode:.2f} s | watermark {watermark:.2f} s "
        f"({wav.size(-1) / SAMPLE_RATE:.2f} s audio)"
    )


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    features = "AMX" if torch.cpu._is_amx_tile_supported() else "no AMX"
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout
    load = os.getloadavg()
    return (
        f"{os.cpu_count()} CPUs ({cpu}, {features}), torch {torch.__version__}, commit {commit.strip()}, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, load average {load[0]:.1f} {load[1]:.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tokens", type=int, default=100, help="speech tokens per utterance (25 = 1 s)")
    parser.add_argument("--text", default=TEXT, help="one sentence (ours would split several)")
    parser.add_argument("--repeats", type=int, default=2, help="alternating rounds; the best is kept")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sides", default="upstream,fp32,bf16", help="any of upstream, fp32, bf16")
    parser.add_argument(
        "--stream-plans",
        default="default",
        help="our streamed runs: comma-separated chunk plans, 'default' (the engine's for this device), "
        f"a named plan ({', '.join(CHUNK_PLANS)}) or a fixed chunk_tokens count, each optionally +pK "
        "(opt-in: windows after the first on the voice prompt's last K tokens); empty for none",
    )
    parser.add_argument(
        "--overlap",
        default="default",
        help="our sides with S3Gen overlapping T3: 'default' (the engine's choice), 'on', 'off' or 'on,off'",
    )
    parser.add_argument("--profile", action="store_true", help="also time S3Gen by stage")
    parser.add_argument("--checkpoint", type=Path, help="reuse a folder written by an earlier run")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    wanted = set(args.sides.split(","))
    plans = [plan for plan in args.stream_plans.split(",") if plan]

    with tempfile.TemporaryDirectory(prefix="e2e_") as scratch:
        folder = args.checkpoint or Path(scratch)
        if not (folder / "t3_cfg.safetensors").exists():
            write_checkpoint(folder)
        sides: list[Side] = []
        if "upstream" in wanted:
            sides.append(upstream_side(folder, args.tokens, args.text))
        engines = {}
        for label in ("fp32", "bf16"):
            if label in wanted:
                dtype = "float32" if label == "fp32" else "bfloat16"
                engine = engines[label] = ce.load(str(folder), dtype=dtype, watermark=True)
                for mode in args.overlap.split(","):
                    if mode == "default":
                        sides += our_sides(engine, label, args.tokens, args.text, plans)
                        continue
                    config = dataclasses.replace(engine._core.config, overlap_s3gen=mode == "on")
                    core = engine._new_core(config)
                    name = f"{label} {'overlap' if mode == 'on' else 'serial'}"
                    sides += our_sides(engine, name, args.tokens, args.text, plans, core)
        for engine in engines.values():
            engine.generate(args.text, seed=SEED, max_new_tokens=5)  # warm-up (Perth, first-call allocations)
        print(f"machine: {machine()}")
        print(
            f"full-size random weights, {args.threads} threads, {args.tokens} speech tokens, "
            f"text {args.text!r}; stage dtypes: "
            + ", ".join(f"{label} {e.info['stage_dtypes']}" for label, e in engines.items())
        )
        for round_ in range(args.repeats):
            for side in sides:
                side.runs.append(side.run())
                last = side.runs[-1]
                print(
                    f"  round {round_ + 1} {side.name}: {last.total_s:.2f} s, RTF {last.rtf:.2f}", flush=True
                )
        print_table(sides, args.repeats)
        if args.profile:
            print("S3Gen by stage (one pass each, after the rounds above):")
            for label, engine in engines.items():
                profile_s3gen(engine, f"ours {label}", args.tokens)
        print(f"machine at the end: {machine()}")


if __name__ == "__main__":
    main()
