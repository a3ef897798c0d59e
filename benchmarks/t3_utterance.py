"""Whole-utterance T3 decode on CPU: this tree against a base commit (and upstream 0.1.7), in one process.

One utterance is what `Engine.generate` asks of the Llama T3: conditioning from a 150-token voice prompt,
the prefill of conditioning + a sentence's text (CFG pair of rows) and `--tokens` decode steps with
sampling (`t3_decode.py`'s inputs and upstream call). The base
commit's `chatterbox_engine` package (relative imports only) is extracted with `git archive` and imported
under another name, so both trees run in the same process on the same weights (full-size random, the
stop-token row zeroed so every side decodes exactly `--tokens` tokens), alternating round by round. Each side
reports the best process CPU time (steadier than wall time on a shared machine: other processes' load
inflates wall time far more) and the best wall time as tokens/s, its ratio to the base and to upstream, and
whether its tokens equal the base's for the same seed.

    .venv/bin/python benchmarks/t3_utterance.py [--base main] [--tokens 200] [--dtypes float32,bfloat16]
        [--rounds 3] [--threads 2] [--no-upstream]
    .venv/bin/python benchmarks/t3_utterance.py --breakdown 300   # where a step's CPU time goes
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import chatterbox_engine.runtime  # noqa: F401  (OpenMP wait policy, before torch starts its threads)
import torch
from chatterbox_engine import decoding, t3
from chatterbox_engine.sampling import SamplingParams
from s3gen_cpu import import_base
from t3_decode import TEXT_TOKENS, build_ours, our_cond, prefilled, run_upstream

PACKAGE = "inference_image/chatterbox_engine"


@dataclass
class Side:
    name: str
    run: Callable[[], list[int]]
    cpu: list[float] = field(default_factory=list)
    wall: list[float] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)


def ours_runner(model, decode_speech_tokens, tokens: int) -> Callable[[], list[int]]:
    @torch.inference_mode()
    def run() -> list[int]:
        cond = our_cond(model, "cpu")
        generator = torch.Generator().manual_seed(0)
        return list(decode_speech_tokens(model, cond, TEXT_TOKENS, SamplingParams(), generator, tokens))

    return run


def upstream_runner(model, tokens: int) -> Callable[[], list[int]]:
    return lambda: [0] * run_upstream(model, "cpu", tokens)[0]  # its token count: parity tests compare ids


def build_models(base_pkg, dtypes: list[torch.dtype], upstream: bool, tokens: int) -> list[Side]:
    """Every side on one set of weights: the base and upstream models share this tree's tensors."""
    ours = build_ours("cpu")
    sides = []
    for dtype in dtypes:
        model = ours if dtype == torch.float32 else t3.T3(ours.cfg).eval()
        if model is not ours:
            model.load_state_dict({k: v.to(dtype) for k, v in ours.state_dict().items()}, assign=True)
        run = ours_runner(model, decoding.decode_speech_tokens, tokens)
        run_short = ours_runner(model, decoding.decode_speech_tokens, 2)
        run_short()  # lay the weights out as this tree runs them, before the base shares them
        base = base_pkg.t3.T3(base_pkg.t3.T3Config.full()).eval()
        base.load_state_dict(model.state_dict(), assign=True)
        name = str(dtype).removeprefix("torch.")
        sides.append(Side(f"base {name}", ours_runner(base, base_pkg.decoding.decode_speech_tokens, tokens)))
        sides.append(Side(f"ours {name}", run))
    if upstream:
        from chatterbox.models.t3 import T3 as UpstreamT3

        model = UpstreamT3().eval()
        model.load_state_dict(dict(ours.state_dict()), assign=True)
        sides.insert(0, Side("upstream float32", upstream_runner(model, tokens)))
    return sides


@torch.inference_mode()
def breakdown(model, position: int, steps: int = 5, rounds: int = 3) -> dict[str, float]:
    """CPU ms per thread of one decode step at `position`: whole, and with the linear layers (then also the
    attention) replaced by free stand-ins of the same shapes; the differences are their shares."""
    request, batch = prefilled(model, position)
    while request.position < position - steps * rounds * 3:
        batch.sample()
        batch.decode()
    real_linear, real_attention = t3.Projection.forward, t3.F.scaled_dot_product_attention

    def free_linear(self, x):
        return x.new_zeros(*x.shape[:-1], sum(linear.weight.shape[0] for linear in self._linears))

    modes = {"whole step": (real_linear, real_attention), "no linear layers": (free_linear, real_attention)}
    modes["no linear, no attention"] = (free_linear, lambda q, k, v, attn_mask=None: q)
    best = dict.fromkeys(modes, float("inf"))
    try:
        for _ in range(rounds):
            for mode, (linear, attention) in modes.items():
                t3.Projection.forward, t3.F.scaled_dot_product_attention = linear, attention
                started = time.process_time()
                for _ in range(steps):
                    batch.sample()
                    batch.decode()
                per_step = (time.process_time() - started) / steps / torch.get_num_threads()
                best[mode] = min(best[mode], 1000 * per_step)
    finally:
        t3.Projection.forward, t3.F.scaled_dot_product_attention = real_linear, real_attention
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", default="main", help="commit to compare against (default: main)")
    parser.add_argument("--tokens", type=int, default=200, help="speech tokens per utterance")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-upstream", action="store_true", help="leave upstream 0.1.7 out")
    parser.add_argument(
        "--breakdown",
        type=int,
        metavar="POSITION",
        help="instead: where this tree's step time goes at POSITION",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.breakdown:
        ours = build_ours("cpu")
        for name in args.dtypes.split(","):
            model = ours.to(getattr(torch, name))
            parts = breakdown(model, args.breakdown)
            print(
                f"{name} step at position {args.breakdown}, CPU ms per thread: "
                + ", ".join(f"{mode} {ms:.1f}" for mode, ms in parts.items()),
                flush=True,
            )
        return
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout
    print(
        f"T3 whole utterance, {args.tokens} tokens + prefill of {34 + TEXT_TOKENS.shape[1] + 2} positions (CFG "
        f"pair), {args.threads} thread(s), base {args.base} vs this tree ({commit.strip()}), best of "
        f"{args.rounds} alternating rounds (load {' '.join(f'{x:.1f}' for x in os.getloadavg())})",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        base_pkg = import_base(args.base, Path(tmp), PACKAGE, "chatterbox_engine_base")
        dtypes = [getattr(torch, name) for name in args.dtypes.split(",")]
        sides = build_models(base_pkg, dtypes, not args.no_upstream, args.tokens)
    for _ in range(args.rounds):
        for side in sides:
            started_cpu, started = time.process_time(), time.perf_counter()
            side.tokens = side.run()
            side.cpu.append(time.process_time() - started_cpu)
            side.wall.append(time.perf_counter() - started)
        print(f"  round done (load {os.getloadavg()[0]:.1f})", flush=True)
    reference = {s.name: s for s in sides}
    upstream = reference.get("upstream float32")
    for side in sides:
        cpu_rate, wall_rate = args.tokens * args.threads / min(side.cpu), args.tokens / min(side.wall)
        line = f"  {side.name:17s} cpu {cpu_rate:6.2f} tok/s  wall {wall_rate:6.2f} tok/s"
        for other in (reference.get(side.name.replace("ours", "base")), upstream):
            if other is not None and other is not side:
                line += (
                    f" | vs {other.name}: cpu {min(other.cpu) / min(side.cpu):4.2f}x"
                    f" wall {min(other.wall) / min(side.wall):4.2f}x"
                )
                if other is not upstream:
                    line += f" same tokens: {side.tokens == other.tokens}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
