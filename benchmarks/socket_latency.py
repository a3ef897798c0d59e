"""First-sentence latency: the text-streaming socket vs one HTTP request per sentence, same server.

A voice agent streams an LLM's reply. Over `WS /v1/audio/speech/stream` it sends the text in small
pieces as they come; the first sentence is complete when the piece carrying its end (". ") is sent,
and the clock runs from that send to the first audio frame. The alternative is to wait for the sentence
and post it alone to /v1/audio/speech (PCM, streamed body): request sent -> first audio byte. Both run
alternately in one process against one server (started here, as in http_e2e.py), same seeds.

    .venv/bin/python benchmarks/socket_latency.py [--model random:full] [--dtype bfloat16] [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

import httpx
from http_e2e import start_server
from websockets.asyncio.client import connect

FIRST_SENTENCE = "The quick brown fox jumps over the lazy dog."
REST = "It was not amused, and said so at length."
# An LLM's tokens: the first sentence arrives in pieces, its end (with the space that completes it) last.
PIECES = ["The quick", " brown fox", " jumps over", " the lazy", " dog. "]


async def socket_first_audio(url: str, seed: int) -> float:
    """Seconds from sending the first sentence's last piece to its first audio frame."""
    async with connect(url.replace("http://", "ws://") + "/v1/audio/speech/stream") as socket:
        session = {"voice": "alloy", "seed": seed, "response_format": "pcm"}
        await socket.send(json.dumps({"type": "session.update", "session": session}))
        for piece in PIECES:
            await socket.send(json.dumps({"type": "input.append", "text": piece}))
            sentence_complete = time.perf_counter()
        while not isinstance(await socket.recv(), bytes):
            pass
        first_audio = time.perf_counter() - sentence_complete
        await socket.send(json.dumps({"type": "input.append", "text": REST}))
        await socket.send(json.dumps({"type": "input.done"}))
        async for _ in socket:  # the rest, until the server closes
            pass
    return first_audio


async def http_first_audio(url: str, seed: int) -> float:
    """Seconds from posting the first sentence alone to its first audio byte."""
    body = {"input": FIRST_SENTENCE, "voice": "alloy", "seed": seed, "response_format": "pcm"}
    async with httpx.AsyncClient(base_url=url, timeout=900) as http:
        started = time.perf_counter()
        async with http.stream("POST", "/v1/audio/speech", json=body) as response:
            response.raise_for_status()
            async for data in response.aiter_bytes():
                if data:
                    return time.perf_counter() - started
    raise RuntimeError("no audio")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="random:full")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        process, url = start_server(args.model, args.dtype, 2, False, Path(tmp))
        try:
            sides: dict[str, list[float]] = {"socket": [], "http": []}
            for run in range(args.runs):
                # Alternate which goes first, so a load spike does not always hit the same side.
                order = ("socket", "http") if run % 2 == 0 else ("http", "socket")
                for side in order:
                    measure = socket_first_audio if side == "socket" else http_first_audio
                    sides[side].append(asyncio.run(measure(url, seed=run)))
                print(
                    f"run {run}: socket {sides['socket'][-1]:.3f} s, http {sides['http'][-1]:.3f} s",
                    flush=True,
                )
            socket_median, http_median = (statistics.median(sides[side]) for side in ("socket", "http"))
            print(
                f"{args.model} {args.dtype}, first sentence ({len(FIRST_SENTENCE)} chars), {args.runs} runs each: "
                f"socket median {socket_median:.3f} s (min {min(sides['socket']):.3f}), "
                f"http median {http_median:.3f} s (min {min(sides['http']):.3f}), "
                f"socket/http {socket_median / http_median:.2f}x"
            )
        finally:
            process.terminate()
            process.wait(timeout=60)


if __name__ == "__main__":
    main()
