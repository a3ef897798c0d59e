"""OpenMP runtime on CPU: torch's GNU libgomp with passive waits vs Intel's libiomp5 (LD_PRELOAD) with a block time
set per thread, one fresh process per configuration, configurations alternating round by round.

With `OMP_WAIT_POLICY=PASSIVE` (the engine's default) every parallel region wakes a sleeping worker; on a VM
whose idle vCPUs halt that costs ~85 us per region, and a Llama T3 decode step has ~150 regions. libgomp's
spin is process-wide and fixed at start-up; libiomp5 (PyPI `intel-openmp`, which also implements the GOMP_*
entry points torch calls) has `kmp_set_blocktime(ms)` for the calling thread's team, so a decode thread could
spin between its regions while other threads' workers sleep at once.

Each process builds the full-size random Llama T3 (`t3_decode.build_ours`, float32 and a bfloat16 copy) and
S3Gen, the way the engine runs them: the main thread builds, T3 decodes in a fresh thread (the engine loop's),
S3Gen runs in another (its worker). It measures, on `--threads` intra-op threads:
  - decode ms/token (median of the steps) of one CFG pair after a ~230-position prefill, float32 and bfloat16,
    with the config's block time set in the decode thread; process CPU per token (spinning workers burn CPU);
  - one S3Gen CFM estimator call (CFG batch 2, `--frames` frames), float32 and bfloat16, with the same block
    time set in its thread;
  - bfloat16 decode while the S3Gen thread (block time 0) runs estimator calls back to back: the engine's
    overlap of S3Gen with T3 (ms/token, and seconds per estimator call meanwhile);
  - a digest of every decode step's logits, to check that the runtimes compute the same bits.

    .venv/bin/python benchmarks/omp_runtime.py [--rounds 2] [--load 0] [--blocktimes 0,1] [--tokens 40]

`--load N` keeps N busy Python processes (`while True: pass`) running for the whole run (the machine shared);
`--iomp-env KMP_USE_YIELD=0` adds environment settings to the libiomp5 processes.
libiomp5 is not a project dependency: `pip install intel-openmp==2025.3.2` for this comparison (without it, the
script measures libgomp only). Results and the verdict: benchmarks/RESULTS.md, "Intel's OpenMP runtime".
"""

from __future__ import annotations

import argparse
import copy
import ctypes
import hashlib
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
LIBIOMP5 = Path(sys.prefix) / "lib" / "libiomp5.so"  # where PyPI intel-openmp installs it


def in_thread(fn, threads: int, blocktime_ms: int | None):
    """Run fn in a fresh thread with its own OpenMP team (as the engine's loop and S3Gen worker do)."""
    import torch

    result = {}

    def body():
        torch.set_num_threads(threads)
        if blocktime_ms is not None:
            ctypes.CDLL(None).kmp_set_blocktime(blocktime_ms)
        result["value"] = fn()

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    return result["value"]


def worker(blocktime_ms: int | None, threads: int, tokens: int, frames: int) -> dict:
    import chatterbox_engine.runtime  # noqa: F401  (OMP_WAIT_POLICY=PASSIVE before torch loads)
    import torch
    from chatterbox_engine.s3gen import S3Gen, S3GenConfig

    sys.path.insert(0, str(HERE))
    from s3gen_cpu import estimator_inputs
    from t3_decode import build_ours, in_dtype, prefilled

    libc = ctypes.CDLL(None)
    runtime = "libiomp5" if hasattr(libc, "kmp_set_blocktime") else "libgomp"
    torch.set_num_threads(threads)
    models = {"float32": build_ours("cpu")}
    models["bfloat16"] = in_dtype(models["float32"], torch.bfloat16)
    torch.manual_seed(0)
    s3gen = S3Gen(S3GenConfig.full()).eval()
    estimator = s3gen.flow.decoder.estimator
    estimators = {"float32": estimator, "bfloat16": copy.deepcopy(estimator).to(torch.bfloat16)}

    inputs = {
        dtype: estimator_inputs(frames, getattr(torch, dtype), torch.Generator().manual_seed(0))
        for dtype in estimators
    }

    @torch.inference_mode()
    def estimate(dtype: str):
        return estimators[dtype](*inputs[dtype])

    @torch.inference_mode()
    def decode(dtype: str, steps: int, while_busy: threading.Event | None = None) -> dict:
        model = models[dtype]
        request, batch = prefilled(model, steps + 1)
        digest, walls, cpus = hashlib.sha1(), [], []
        for _ in range(steps):
            digest.update(request.logits.float().numpy().tobytes())
            started, started_cpu = time.perf_counter(), time.process_time()
            batch.sample()
            batch.decode()
            walls.append(time.perf_counter() - started)
            cpus.append(time.process_time() - started_cpu)
        if while_busy is not None:
            while_busy.set()
        skip = min(3, steps - 1)  # the first steps grow the cache
        return {
            "ms_per_token": 1000 * statistics.median(walls[skip:]),
            "cpu_ms_per_token": 1000 * statistics.median(cpus[skip:]),
            "digest": digest.hexdigest()[:12],
        }

    def timed_estimate(dtype: str, calls: int = 2) -> float:
        estimate(dtype)  # warm-up
        best = float("inf")
        for _ in range(calls):
            started = time.perf_counter()
            estimate(dtype)
            best = min(best, time.perf_counter() - started)
        return best

    result = {"runtime": runtime, "blocktime_ms": blocktime_ms, "load_before": os.getloadavg()[0]}
    for dtype in ("float32", "bfloat16"):
        in_thread(lambda d=dtype: decode(d, 3), threads, blocktime_ms)  # warm-up (prepacked bf16 weights)
        result[f"t3 {dtype}"] = in_thread(lambda d=dtype: decode(d, tokens), threads, blocktime_ms)
        result[f"estimator {dtype} s"] = in_thread(lambda d=dtype: timed_estimate(d), threads, blocktime_ms)

    # The engine's overlap: S3Gen (passive, block time 0 where settable) renders while T3 decodes.
    done, calls = threading.Event(), []

    def render():
        torch.set_num_threads(threads)
        if runtime == "libiomp5":
            libc.kmp_set_blocktime(0)
        while not done.is_set():
            started = time.perf_counter()
            estimate("bfloat16")
            calls.append(time.perf_counter() - started)

    renderer = threading.Thread(target=render)
    renderer.start()
    try:
        overlap = in_thread(lambda: decode("bfloat16", tokens, done), threads, blocktime_ms)
    finally:
        done.set()
        renderer.join()
    overlap["estimator_s"] = statistics.median(calls) if calls else None
    result["overlap bfloat16"] = overlap
    return result


CONFIGS = {  # name -> (preload libiomp5, block time in ms for the measured threads; None: not settable)
    "libgomp passive": (False, None),
}


def run_config(name: str, preload: bool, blocktime: int | None, args) -> dict:
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    if preload:
        env["LD_PRELOAD"] = str(args.libiomp5)
        env.update(setting.split("=", 1) for setting in args.iomp_env)
    command = [sys.executable, __file__, "--worker", json.dumps(blocktime), "--threads", str(args.threads)]
    command += ["--tokens", str(args.tokens), "--frames", str(args.frames)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{name}: worker failed\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    expected = "libiomp5" if preload else "libgomp"
    if result["runtime"] != expected:
        raise SystemExit(f"{name}: ran on {result['runtime']}, not {expected}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--load", type=int, default=0, help="busy processes kept running meanwhile")
    parser.add_argument("--blocktimes", default="0,1", help="libiomp5 block times (ms) to compare")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=40, help="decode steps per measurement")
    parser.add_argument("--frames", type=int, default=300, help="mel frames of the estimator call")
    parser.add_argument("--libiomp5", type=Path, default=LIBIOMP5)
    parser.add_argument(
        "--iomp-env",
        nargs="*",
        default=[],
        help="KEY=VALUE settings for the libiomp5 processes (KMP_USE_YIELD=0)",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        print(json.dumps(worker(json.loads(args.worker), args.threads, args.tokens, args.frames)), flush=True)
        return
    configs = dict(CONFIGS)
    if args.libiomp5.exists():
        extra = "".join(f" {setting}" for setting in args.iomp_env)
        configs.update({f"libiomp5 {ms} ms{extra}": (True, int(ms)) for ms in args.blocktimes.split(",")})
    else:
        print(f"{args.libiomp5} missing (pip install intel-openmp): libgomp only")
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    print(
        f"commit {commit}, {args.threads} threads, {args.tokens} decode steps, estimator {args.frames} frames, "
        f"{args.load} busy process(es), {args.rounds} rounds, load {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.load)]
    results: dict[str, list[dict]] = {name: [] for name in configs}
    try:
        for round_ in range(args.rounds):
            for name, (preload, blocktime) in configs.items():
                result = run_config(name, preload, blocktime, args)
                results[name].append(result)
                print(f"round {round_ + 1} {name}: {json.dumps(result)}", flush=True)
    finally:
        for process in busy:
            process.kill()
            process.wait()
    print_table(results)


def print_table(results: dict[str, list[dict]]) -> None:
    def median(name: str, key: str, field: str | None) -> float:
        return statistics.median(r[key][field] if field else r[key] for r in results[name])

    def best(name: str, key: str, field: str | None) -> float:
        return min(r[key][field] if field else r[key] for r in results[name])

    base = next(iter(results))
    rows = [
        ("T3 float32 ms/token", "t3 float32", "ms_per_token"),
        ("T3 float32 CPU ms/token", "t3 float32", "cpu_ms_per_token"),
        ("T3 bfloat16 ms/token", "t3 bfloat16", "ms_per_token"),
        ("T3 bfloat16 CPU ms/token", "t3 bfloat16", "cpu_ms_per_token"),
        ("estimator float32 s", "estimator float32 s", None),
        ("estimator bfloat16 s", "estimator bfloat16 s", None),
        ("overlap: T3 bf16 ms/token", "overlap bfloat16", "ms_per_token"),
        ("overlap: estimator bf16 s", "overlap bfloat16", "estimator_s"),
    ]
    print("\nmedian over rounds (best) and the first config's median / this one's (> 1 = this one faster)")
    print(f"{'':28s}" + "".join(f"{name:>28s}" for name in results))
    for label, key, field in rows:
        cells = []
        for name in results:
            value = median(name, key, field)
            ratio = median(base, key, field) / value
            cells.append(f"{value:8.3f} ({best(name, key, field):8.3f}) {ratio:4.2f}x")
        print(f"{label:28s}" + "".join(f"{c:>28s}" for c in cells))
    print(
        "load average before each process:",
        {n: [round(r["load_before"], 1) for r in rs] for n, rs in results.items()},
    )
    for dtype in ("float32", "bfloat16"):
        digests = {name: {r[f"t3 {dtype}"]["digest"] for r in runs} for name, runs in results.items()}
        same = len(set().union(*digests.values())) == 1
        print(f"{dtype} logits of every step identical across configs and rounds: {same} {digests}")


if __name__ == "__main__":
    main()
