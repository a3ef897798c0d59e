"""Chatterbox-Nano end to end on CPU: ours (float32, bfloat16) vs upstream main's `ChatterboxTurboTTS(nano=True)`.

Every side loads the same full-size random Nano checkpoint (`random:full-nano` in the official layout, the
stop token's logit pushed down so every side speaks exactly `--tokens` speech tokens), speaks the same text
with the built-in voice, watermarks (upstream always does), and runs in this process, alternating, so load
from other processes on a shared machine skews no side more than another.

- RTF: wall time / audio seconds for a one-shot synthesis (lower is better; < 1 is faster than real time).
- Time to first audio: ours, the first chunk of `generate_stream`; upstream has no streaming, so its first
  audio is its whole synthesis.
- Ours reuses the voice's conditioning keys and values (computed at the warm-up call, as a server computes
  them at a voice's first request); the one-off cost of computing them is printed apart.

Upstream main (5de7a54) comes from `../shared/upstream` beside the repository (or $CHATTERBOX_UPSTREAM_MAIN),
imported under another package name: its metadata says chatterbox-tts 0.1.7 like the PyPI release.
Its generate has no token budget (1000), so its T3 call is given `max_gen_len` for the same token count.

    .venv/bin/python benchmarks/nano_cpu.py [--tokens 150] [--rounds 1] [--threads 2] [--baseline]

`--baseline` adds a side "ours bf16 baseline": the same bf16 engine with the conditioning prefix cache and
the prepacked bf16 weights turned off (as at 1fdcf2d), to measure what they bring in the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

import chatterbox_engine as ce
import torch
from chatterbox_engine import runtime
from chatterbox_engine.loading import random_models
from e2e import machine  # benchmarks/e2e.py, beside this script

TEXT = "Oh, that's hilarious! [chuckle] Um anyway, we do have a new model in store. It's got basically everything."
UPSTREAM_MAIN_SRC = Path(
    os.environ.get(
        "CHATTERBOX_UPSTREAM_MAIN",
        Path(__file__).resolve().parents[1].parent / "shared/upstream/chatterbox-5de7a54/src/chatterbox",
    )
)


def import_upstream_main():
    """Upstream main's `chatterbox` package, imported from its source as `chatterbox_upstream_main`."""
    name = "chatterbox_upstream_main"
    spec = importlib.util.spec_from_file_location(
        name, UPSTREAM_MAIN_SRC / "__init__.py", submodule_search_locations=[str(UPSTREAM_MAIN_SRC)]
    )
    package = importlib.util.module_from_spec(spec)
    sys.modules[name] = package
    spec.loader.exec_module(package)
    return importlib.import_module(f"{name}.tts_turbo")


def write_checkpoint(folder: Path) -> None:
    models = random_models("random:full-nano")
    stop = models.t3.cfg.stop_speech_token
    with torch.no_grad():  # never sample the stop token: every side speaks the full budget
        models.t3.speech_head.weight[stop] = 0.0
        models.t3.speech_head.bias[stop] = -1e4
    engine = ce.Engine(models, source="random:full-nano", device="cpu", dtype=torch.float32, watermark=False)
    engine.save_checkpoint(folder)


@torch.inference_mode()
def prefix_seconds(engine: ce.Engine) -> float:
    """Seconds to compute the default voice's conditioning keys and values (uncached)."""
    voice, t3 = engine.default_voice, engine.t3
    cond = t3.embed_conditioning(voice.speaker_emb.to(t3.speech_head.weight.dtype), voice.prompt_tokens, None)
    started = time.perf_counter()
    t3._compute_conditioning_kv(cond)
    return time.perf_counter() - started


@contextlib.contextmanager
def without_reuse(engine: ce.Engine):
    """The engine with its T3 prefilling every prompt whole and multiplying plain bf16 weights."""
    engine.t3.conditioning_kv = None  # hides the method: `decoding.new_request` then attaches no prefix
    prepacks = runtime.prepacks_linear
    runtime.prepacks_linear = lambda weight: False
    try:
        yield
    finally:
        del engine.t3.conditioning_kv
        runtime.prepacks_linear = prepacks


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.1f}/{five:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tokens", type=int, default=150, help="speech tokens per synthesis (25 per second)")
    parser.add_argument("--rounds", type=int, default=1, help="alternating rounds over all sides")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads, every side")
    parser.add_argument(
        "--baseline", action="store_true", help="add ours bf16 without prefix cache/prepacking"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tts_turbo = import_upstream_main()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_checkpoint(folder)
        upstream = tts_turbo.ChatterboxTurboTTS.from_local(folder, "cpu", nano=True)
        upstream.t3.inference_turbo = functools.partial(
            upstream.t3.inference_turbo, max_gen_len=args.tokens - 1
        )
        ours = {dtype: ce.load(str(folder), dtype=dtype, watermark=True) for dtype in ("float32", "bfloat16")}
        print(f"machine: {machine()}; {torch.get_num_threads()} threads, {args.tokens} tokens")
        print("ours bf16 stages:", ours["bfloat16"].info.get("stage_dtypes"))

        def run_upstream() -> tuple[float, float, float, float, str]:
            started, cpu = time.perf_counter(), time.process_time()
            with torch.inference_mode():
                wav = upstream.generate(TEXT)
            wall, cpu = time.perf_counter() - started, time.process_time() - cpu
            return wall, cpu, wav.shape[-1] / upstream.sr, wall, ""

        def run_ours(engine: ce.Engine, reuse: bool = True) -> tuple[float, float, float, float, str]:
            with contextlib.nullcontext() if reuse else without_reuse(engine):
                return run_engine(engine)

        def run_engine(engine: ce.Engine) -> tuple[float, float, float, float, str]:
            request = engine.request(TEXT, seed=0, max_new_tokens=args.tokens)
            started, cpu = time.perf_counter(), time.process_time()
            result = engine.generate(request)
            wall, cpu = time.perf_counter() - started, time.process_time() - cpu
            started = time.perf_counter()
            stream = engine.generate_stream(request)
            next(stream)
            first_audio = time.perf_counter() - started
            stream.close()
            split = (
                f", T3 {result.t3_seconds:.1f} s ({1e3 * result.t3_seconds / result.num_tokens:.0f} ms/token)"
                f" + S3Gen {result.s3gen_seconds:.1f} s"
            )
            return wall, cpu, result.audio.size / engine.sample_rate, first_audio, split

        sides = {
            "upstream main fp32": run_upstream,
            "ours fp32": functools.partial(run_ours, ours["float32"]),
            "ours bf16": functools.partial(run_ours, ours["bfloat16"]),
        }
        if args.baseline:
            sides["ours bf16 baseline"] = functools.partial(run_ours, ours["bfloat16"], reuse=False)
        for label, engine in ours.items():  # first-call allocations, prepacked weights, the voice's prefix
            print(f"ours {label}: the voice's conditioning prefix takes {prefix_seconds(engine):.2f} s once")
            engine.generate("Warm up.", seed=0, max_new_tokens=5)
        results: dict[str, list[tuple[float, float, float, float]]] = {name: [] for name in sides}
        for round_index in range(args.rounds):
            for name, run in sides.items():
                before = load()
                wall, cpu, audio_s, first, split = run()
                results[name].append((wall / audio_s, cpu / audio_s, first, cpu))
                print(
                    f"round {round_index + 1} {name:18s}: {audio_s:5.2f} s audio in {wall:6.2f} s, RTF {wall / audio_s:5.2f}, "
                    f"CPU {cpu:6.2f} s, first audio {first:6.2f} s ({before} -> {load()}){split}"
                )
        # CPU seconds per audio second are steadier than wall time on a shared machine (less scheduling).
        best = {name: [min(column) for column in zip(*runs, strict=True)] for name, runs in results.items()}
        upstream_rtf, upstream_cpu = best["upstream main fp32"][:2]
        print("best of rounds (RTF; CPU s per audio s):")
        for name, (rtf, cpu_rate, first, _) in best.items():
            print(
                f"  {name:18s}: RTF {rtf:5.2f} ({upstream_rtf / rtf:4.2f}x upstream), CPU {cpu_rate:5.2f} "
                f"({upstream_cpu / cpu_rate:4.2f}x), first audio {first:6.2f} s"
            )


if __name__ == "__main__":
    main()
