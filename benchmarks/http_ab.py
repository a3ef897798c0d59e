"""HTTP time to first audio, this tree against a base commit, alternating on one machine.

The base commit's `inference_image` is extracted with `git archive`; one `chatterbox-server` runs from it and
one from this tree (each first on PYTHONPATH, same model, settings and venv; `http_e2e.start_server`). Rounds
alternate: one streamed (SSE) request to the base, then to this tree, then `--concurrency` requests at once
to each. Only one server is busy at a time, so both see the same machine; on a shared, noisy CPU the medians
and the per-round ratios are what to read. Two servers hold two models: mind the memory with random:full.

    .venv/bin/python benchmarks/http_ab.py [--base main] [--model random:full] [--rounds 3] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import statistics
import subprocess
import tarfile
import tempfile
from pathlib import Path

import httpx
from http_e2e import one_request, start_server

THIS_TREE = Path(__file__).resolve().parent.parent


def extract(commit: str, into: Path) -> Path:
    """`inference_image` as of commit, under into; returns the folder to put first on PYTHONPATH."""
    archive = subprocess.run(
        ["git", "-C", str(THIS_TREE), "archive", "--format=tar", commit, "inference_image"],
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into / "inference_image"


async def first_audio(url: str, concurrent: int, seed: int) -> list[float]:
    """TTFA (s) of `concurrent` streamed requests sent at once."""
    async with httpx.AsyncClient(base_url=url, timeout=900) as http:
        results = await asyncio.gather(*(one_request(http, True, seed + i) for i in range(concurrent)))
    return [ttfa for ttfa, _, _ in results]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--base", default="main", help="commit to compare against (default: main)")
    parser.add_argument("--model", default="random:full")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    servers = {}
    pythonpath = os.environ.get("PYTHONPATH", "")
    with tempfile.TemporaryDirectory() as tmp:
        sources = {"before": extract(args.base, Path(tmp) / "base"), "after": THIS_TREE / "inference_image"}
        try:
            for side, source in sources.items():
                os.environ["PYTHONPATH"] = f"{source}:{pythonpath}"
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
            print(
                f"HTTP streamed TTFA, {args.model} {args.dtype}, before = {args.base}, after = this tree, "
                f"medians over {args.rounds} rounds:"
            )
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
