"""S3Gen on CPU, this tree against a base commit, stage by stage, in one process (same weights, same inputs).

The base commit's `chatterbox_engine/s3gen` package (self-contained: relative imports only) is extracted with
`git archive` and imported under another name, so both sides run in the same process, alternating round by
round; each stage reports the best process CPU time (steadier than wall time on a shared machine: other
processes' load inflates wall time, much less CPU time) and the best wall time per side, their ratio, and the
largest difference between the two sides' outputs.

Stages, full-size random weights (`S3GenConfig.full()`), a prompt of `--prompt` tokens plus `--tokens` new ones
(2 mel frames per token): one CFM estimator call (CFG batch 2), the Conformer encoder, HiFT decode of the new
frames (fixed excitation) and the whole `S3Gen.inference` (encoder, `--steps` estimator calls, HiFT).

    .venv/bin/python benchmarks/s3gen_cpu.py [--base main] [--dtype bfloat16] [--threads 1] [--rounds 3]
"""

from __future__ import annotations

import argparse
import importlib
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import chatterbox_engine.runtime  # noqa: F401  (OpenMP wait policy, before torch starts its threads)
import torch
from chatterbox_engine import s3gen as current

PACKAGE = "inference_image/chatterbox_engine/s3gen"


def import_base(commit: str, into: Path, package: str = PACKAGE, name: str = "s3gen_base"):
    """A package of this repository (self-contained: relative imports only) as of `commit`, imported as
    `name` (`t3_utterance.py` imports chatterbox_engine's this way)."""
    repo = Path(__file__).resolve().parents[1]
    archive = subprocess.run(
        ["git", "-C", str(repo), "archive", "--format=tar", commit, package], check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    (into / package).rename(into / name)
    sys.path.insert(0, str(into))
    return importlib.import_module(name)


def models(base_pkg, dtype: torch.dtype) -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    ours = current.S3Gen(current.S3GenConfig.full()).eval()
    base = base_pkg.S3Gen(base_pkg.S3GenConfig.full()).eval()
    base.load_state_dict(ours.state_dict(), strict=True)
    return base.to(dtype), ours.to(dtype)


def estimator_inputs(frames: int, dtype: torch.dtype, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """Random (x, mask, mu, t, spks, cond) for one CFM estimator call of `frames` mel frames, CFG batch 2."""
    x, mu, cond = (torch.randn(2, 80, frames, generator=generator).to(dtype) for _ in range(3))
    mask, t, spks = torch.ones(2, 1, frames, dtype=dtype), torch.full((2,), 0.3, dtype=dtype), mu[:, :, 0]
    return x, mask, mu, t, spks, cond


def measure(name: str, sides: dict[str, Callable[[], torch.Tensor]], rounds: int) -> None:
    cpu = {side: [] for side in sides}
    wall = {side: [] for side in sides}
    outputs = {}
    for _ in range(rounds):
        for side, run in sides.items():
            started_cpu, started = time.process_time(), time.perf_counter()
            outputs[side] = run()
            cpu[side].append(time.process_time() - started_cpu)
            wall[side].append(time.perf_counter() - started)
    base, ours = (outputs[side].float() for side in sides)
    diff = (ours - base).abs().max().item()
    rel = ((ours - base).norm() / base.norm()).item()
    (b_cpu, o_cpu), (b_wall, o_wall) = ([min(v[s]) for s in sides] for v in (cpu, wall))
    print(
        f"{name:28s} cpu {b_cpu:7.3f} -> {o_cpu:7.3f} s ({b_cpu / o_cpu:4.2f}x) | "
        f"wall {b_wall:7.3f} -> {o_wall:7.3f} s ({b_wall / o_wall:4.2f}x) | "
        f"max diff {diff:.1e} (scale {base.abs().max().item():.1e}), rel {rel:.1e}",
        flush=True,
    )


@torch.inference_mode()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", default="main", help="commit to compare against (default: main)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--prompt", type=int, default=250, help="prompt tokens (250 = 10 s reference)")
    parser.add_argument("--tokens", type=int, default=50, help="new speech tokens")
    parser.add_argument("--steps", type=int, default=10, help="CFM steps of the whole inference")
    parser.add_argument("--stages", default="estimator,encoder,hift,inference")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout
    print(
        f"S3Gen {args.dtype}, {args.threads} thread(s), base {args.base} vs this tree ({commit.strip()}), "
        f"{args.prompt} prompt + {args.tokens} tokens, best of {args.rounds} (load {' '.join(map(str, os.getloadavg()))})"
    )
    with tempfile.TemporaryDirectory() as tmp:
        base_pkg = import_base(args.base, Path(tmp))
        base, ours = models(base_pkg, dtype)
    g = torch.Generator().manual_seed(0)
    frames = 2 * (args.prompt + args.tokens)
    prompt = torch.randint(0, current.config.SPEECH_VOCAB_SIZE, (1, args.prompt), generator=g)
    tokens = torch.randint(0, current.config.SPEECH_VOCAB_SIZE, (1, args.tokens), generator=g)
    stages = args.stages.split(",")

    if "estimator" in stages:
        inputs = estimator_inputs(frames, dtype, g)
        measure(
            f"estimator step ({frames} fr)",
            {
                side: (lambda m=m: m.flow.decoder.estimator(*inputs))
                for side, m in (("base", base), ("ours", ours))
            },
            args.rounds,
        )
    if "encoder" in stages:
        both = torch.cat([prompt, tokens], dim=1)
        measure(
            f"encoder ({frames} fr)",
            {
                side: (lambda m=m: m.flow.encode(both, True)[0])
                for side, m in (("base", base), ("ours", ours))
            },
            args.rounds,
        )
    if "hift" in stages:
        mel = torch.randn(1, 80, 2 * args.tokens, generator=g) - 5
        source = ours.mel2wav.source(mel, torch.Generator().manual_seed(1))
        measure(
            f"HiFT decode ({2 * args.tokens} fr)",
            {
                side: (lambda m=m: m.mel2wav.decode(mel, source))
                for side, m in (("base", base), ("ours", ours))
            },
            args.rounds,
        )
    if "inference" in stages:
        ref_tensors = {
            "prompt_token": prompt,
            "prompt_feat": torch.randn(1, 2 * args.prompt, 80, generator=g) - 5,
            "embedding": torch.randn(1, 192, generator=g),
        }
        refs = {"base": base_pkg.S3GenReference.from_tensors(ref_tensors)}
        refs["ours"] = current.S3GenReference.from_tensors(ref_tensors)
        measure(
            f"S3Gen.inference ({args.steps} steps)",
            {
                side: (
                    lambda m=m, side=side: m.inference(
                        tokens, refs[side], torch.Generator().manual_seed(2), args.steps
                    )
                )
                for side, m in (("base", base), ("ours", ours))
            },
            args.rounds,
        )


if __name__ == "__main__":
    main()
