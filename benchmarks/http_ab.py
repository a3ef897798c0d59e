"""HTTP time to first audio of two source trees, before and after a change, alternating on one machine.

Starts one `chatterbox-server` per tree (each tree's `inference_image` first on PYTHONPATH, same model,
settings and venv; `http_e2e.start_server`), then alternates rounds: one streamed (SSE) request to A, then
to B, then `--concurrency` requests at once to A, then to B. Only one server is busy at a time, so both see
the same machine; on a shared, noisy CPU the medians and the B/A ratio of each round are what to read.

    .venv/bin/python benchmarks/http_ab.py --before ../main-at-X --after . [--rounds 3] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
from pathlib import Path

import httpx
from http_e2e import one_request, start_server


async def first_audio(url: str, concurrent: int, seed: int) -> list[float]:
    """TTFA (s) of `concurrent` streamed requests sent at once."""
    async with httpx.AsyncClient(base_url=url, timeout=900) as http:
        results = await asyncio.gather(*(one_request(http, True, seed + i) for i in range(concurrent)))
    return [ttfa for ttfa, _, _ in results]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--before", type=Path, required=True, help="source tree A (a checkout)")
    parser.add_argument("--after", type=Path, required=True, help="source tree B")
    parser.add_argument("--model", default="random:full")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    servers = {}
    pythonpath = os.environ.get("PYTHONPATH", "")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            for side, tree in trees.items():
                os.environ["PYTHONPATH"] = f"{tree / 'inference_image'}:{pythonpath}"
                workdir = Path(tmp) / side
                workdir.mkdir()
                servers[side] = start_server(args.model, args.dtype, args.concurrency, False, workdir)
            os.environ["PYTHONPATH"] = pythonpath
            for _, url in servers.values():  # warm-up: first-call allocations
                asyncio.run(first_audio(url, 1, 100))
            ttfa: dict[tuple[str, int], list[float]] = {}
            for round_ in range(args.rounds):
                for concurrent in (1, args.concurrency):
                    for side, (_, url) in servers.items():
                        times = asyncio.run(first_audio(url, concurrent, seed=round_))
                        ttfa.setdefault((side, concurrent), []).append(statistics.median(times))
                        print(
                            f"round {round_ + 1} {side:6s} x{concurrent}: TTFA median "
                            f"{statistics.median(times):6.2f} s (max {max(times):6.2f}), "
                            f"load {os.getloadavg()[0]:.1f}",
                            flush=True,
                        )
            print(f"HTTP streamed TTFA, {args.model} {args.dtype}, medians over {args.rounds} rounds:")
            for concurrent in (1, args.concurrency):
                before = statistics.median(ttfa[("before", concurrent)])
                after = statistics.median(ttfa[("after", concurrent)])
                ratios = [
                    b / a
                    for a, b in zip(ttfa[("before", concurrent)], ttfa[("after", concurrent)], strict=True)
                ]
                print(
                    f"  x{concurrent}: before {before:6.2f} s, after {after:6.2f} s, after/before "
                    f"{after / before:4.2f} (per round {', '.join(f'{r:.2f}' for r in ratios)})"
                )
        finally:
            for process, _ in servers.values():
                process.terminate()
                process.wait(timeout=60)


if __name__ == "__main__":
    main()
