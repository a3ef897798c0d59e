"""End to end through HTTP: time to first audio (TTFA) and real-time factor (RTF), single and concurrent.

Starts a real `chatterbox-server` (default CHATTERBOX_MODEL=random:full, watermark off, continuous batching
of up to MAX_CONCURRENT requests in the engine's loop) and posts one sentence to /v1/audio/speech as raw PCM, streamed (SSE events) and
not streamed (one body, still sent as it is made), first alone and then 8 at once. TTFA is measured at
the client (request sent -> first audio byte); RTF = request wall time / audio seconds.

    .venv/bin/python benchmarks/http_e2e.py [--model random:full] [--dtype bfloat16] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

SENTENCE = "The quick brown fox jumps over the lazy dog."
SAMPLE_RATE = 24_000


def start_server(
    model: str, dtype: str, max_concurrent: int, batch_s3gen: bool, workdir: Path
) -> tuple[subprocess.Popen, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **os.environ,
        "CHATTERBOX_MODEL": model,
        "DTYPE": dtype,
        "WATERMARK": "false",
        "MAX_CONCURRENT": str(max_concurrent),
        "MAX_QUEUE": str(4 * max_concurrent),
        "BATCH_S3GEN": str(batch_s3gen).lower(),
        "API_HOST": "127.0.0.1",
        "API_PORT": str(port),
        "VOICE_LIBRARY_DIR": str(workdir / "voices"),
        "WEBUI_DIR": str(workdir / "no-webui"),
        "LOG_LEVEL": "warning",
    }
    script = Path(sys.executable).parent / "chatterbox-server"
    log = (workdir / "server.log").open("wb")
    process = subprocess.Popen([str(script)], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited: {(workdir / 'server.log').read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    process.kill()
    raise SystemExit("server not ready in 600 s")


async def one_request(http: httpx.AsyncClient, stream: bool, seed: int) -> tuple[float, float, float]:
    """(TTFA s, wall s, audio s) of one request."""
    body = {"model": "tts-1", "input": SENTENCE, "voice": "alloy", "response_format": "pcm", "seed": seed}
    if stream:
        body["stream_format"] = "sse"
    started = time.perf_counter()
    first = None
    audio_bytes = 0
    async with http.stream("POST", "/v1/audio/speech", json=body) as response:
        response.raise_for_status()
        if stream:
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    event = json.loads(line[6:])
                    if event.get("type") == "speech.audio.delta":
                        first = first or time.perf_counter()
                        audio_bytes += len(base64.b64decode(event["audio"]))
        else:
            async for data in response.aiter_bytes():
                if data:
                    first = first or time.perf_counter()
                    audio_bytes += len(data)
    wall = time.perf_counter() - started
    return (first or time.perf_counter()) - started, wall, audio_bytes / 2 / SAMPLE_RATE


async def scenario(url: str, stream: bool, concurrent: int) -> str:
    async with httpx.AsyncClient(base_url=url, timeout=900) as http:
        results = await asyncio.gather(*(one_request(http, stream, seed) for seed in range(concurrent)))
    ttfa = [r[0] for r in results]
    rtf = [r[1] / r[2] for r in results if r[2] > 0]
    audio = sum(r[2] for r in results)
    wall = max(r[1] for r in results)
    return (
        f"  {'stream' if stream else 'whole '} x{concurrent}: TTFA median {statistics.median(ttfa):6.2f} s "
        f"(max {max(ttfa):6.2f}), RTF median {statistics.median(rtf):5.2f}, "
        f"aggregate {audio / wall:5.2f} audio s per wall s, {audio / concurrent:4.2f} audio s per request"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="random:full")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--batch-s3gen", action="store_true", help="share S3Gen calls between streams (a GPU's default)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        process, url = start_server(args.model, args.dtype, args.concurrency, args.batch_s3gen, Path(tmp))
        try:
            print(
                f"HTTP end to end, {args.model} {args.dtype}, one sentence ({len(SENTENCE)} chars), PCM, "
                f"up to {args.concurrency} requests sharing one continuous T3 batch, "
                f"S3Gen calls {'shared' if args.batch_s3gen else 'per request'}"
            )
            for concurrent in (1, args.concurrency):
                for stream in (True, False):
                    print(asyncio.run(scenario(url, stream, concurrent)), flush=True)
        finally:
            process.terminate()
            process.wait(timeout=60)


if __name__ == "__main__":
    main()
