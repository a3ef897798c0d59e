"""Aggregate T3 decode speed with continuous batching: 1, 2, 4, 8 concurrent requests vs upstream single-stream.

Each concurrent request (a CFG pair of rows, its own seed) decodes the same number of tokens through the
engine's loop (`EngineCore`, T3 alone: speech-token jobs); all are submitted at once, and aggregate tokens/s = all requests' tokens / wall time from
the first submit to the last token, prefills included. Upstream 0.1.7 `T3.inference` runs one stream at a
time on the same full-size random weights (fp32, its only precision), measured before and after ours in
the same process.

Ours runs twice per concurrency, alternating: the requests admitted together prefilled in one padded pass
(the default), and each prefilled in its own pass (`SchedulerConfig(batched_prefill=False)`). "steps" is the
share of the wall time spent in batched decode steps; the rest is mostly prefill. With --varied-text
request i drops 4*i text tokens, so prefill lengths differ and the batched pass carries padding.

    .venv/bin/python benchmarks/t3_batching.py [--tokens 60] [--concurrency 1 2 4 8] [--dtype bfloat16]
        [--varied-text] [--prefill-length-slack N]
"""

from __future__ import annotations

import argparse
import time

import torch
from chatterbox_engine.decoding import StepStats
from chatterbox_engine.engine_core import PREFILL_LENGTH_SLACK, EngineCore, Job, SchedulerConfig
from chatterbox_engine.request import GenerationRequest
from chatterbox_engine.sampling import SamplingParams
from chatterbox_engine.voice import Voice
from t3_decode import (
    TEXT_TOKENS,
    best_rate,
    build_ours,
    build_upstream,
    conditioning,
    in_dtype,
    run_upstream,
    sync,
)


def text_for(index: int, varied: bool) -> torch.Tensor:
    if not varied:
        return TEXT_TOKENS
    keep = TEXT_TOKENS.shape[1] - 1 - 4 * index  # always keeps the start token and at least a few words
    return torch.cat((TEXT_TOKENS[:, :keep], TEXT_TOKENS[:, -1:]), dim=1)


class Run:
    """One engine loop over T3 alone, and the seconds its decode steps took."""

    def __init__(self, t3, max_requests: int, batched_prefill: bool, slack: int | None = None) -> None:
        self.step_seconds = 0.0
        device = t3.speech_head.weight.device.type
        self.config = SchedulerConfig(
            max_requests=max_requests,
            batched_prefill=batched_prefill,
            prefill_length_slack=PREFILL_LENGTH_SLACK[device] if slack is None else slack,
        )
        # T3 alone: speech-token jobs never reach S3Gen.
        self.core = EngineCore(
            t3,
            None,
            finish_audio=lambda audio: audio,
            tail_tokens=[],
            config=self.config,
            on_step=self._count,
        )

    def _count(self, stats: StepStats) -> None:
        self.step_seconds += stats.seconds

    def aggregate(
        self, voice: Voice, device: str, requests: int, tokens: int, varied: bool
    ) -> tuple[float, float]:
        """Aggregate tokens/s of `requests` streams submitted at once, and the decode steps' time share."""
        self.step_seconds = 0.0
        started = time.perf_counter()
        rate = run_batched(self.core, voice, device, requests, tokens, varied)
        return rate, self.step_seconds / (time.perf_counter() - started)


def benchmark_voice(device: str) -> Voice:
    """The conditioning `our_cond` embeds, as a voice (no S3Gen reference: T3 alone)."""
    speaker, prompt = conditioning(device)
    return Voice(speaker, prompt, None)


def run_batched(
    core: EngineCore, voice: Voice, device: str, requests: int, tokens: int, varied: bool = False
) -> float:
    """Aggregate tokens/s of `requests` streams submitted at once through the engine loop `core`."""
    started = time.perf_counter()
    # Submitted back to back, so they arrive together; tokens queue up in each stream until read.
    streams = []
    for index in range(requests):
        generator = torch.Generator(device).manual_seed(index)
        text = text_for(index, varied).to(device)
        request = GenerationRequest("", (text,), voice, "en", SamplingParams(), 0.5, index, tokens)
        job = Job(None, generator, generation=request, t3_generator=generator, speech_tokens_only=True)
        streams.append(core.outputs(job))
    count = sum(len(list(stream)) for stream in streams)
    sync(device)
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tokens", type=int, default=60, help="new speech tokens per request")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--varied-text", action="store_true", help="different text lengths per request")
    parser.add_argument(
        "--prefill-length-slack", type=int, default=None, help="positions (default: the device's)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    ours = build_ours(args.device)
    upstream = build_upstream(ours, args.device)
    ours = in_dtype(ours, getattr(torch, args.dtype))
    voice = benchmark_voice(args.device)
    runs = {
        "batched prefill": Run(
            ours, max(args.concurrency), batched_prefill=True, slack=args.prefill_length_slack
        ),
        "lone prefills": Run(ours, max(args.concurrency), batched_prefill=False),
    }
    run_upstream(upstream, args.device, 3)  # warm-up
    for run in runs.values():
        run.aggregate(voice, args.device, 2, 3, args.varied_text)
    upstream_runs = [run_upstream(upstream, args.device, args.tokens)]
    rates = {
        (n, name): run.aggregate(voice, args.device, n, args.tokens, args.varied_text)
        for n in args.concurrency
        for name, run in runs.items()
    }
    upstream_runs.append(run_upstream(upstream, args.device, args.tokens))
    baseline = best_rate(upstream_runs)
    texts = "text lengths varied" if args.varied_text else "same text"
    print(
        f"T3 aggregate decode with continuous batching, full-size random weights, device={args.device}, "
        f"threads={args.threads}, ours {args.dtype}, {args.tokens} tokens per request, {texts}, "
        f"prefill length slack {runs['batched prefill'].config.prefill_length_slack}"
    )
    print(f"  upstream fp32, 1 stream            : {baseline:7.2f} tokens/s   1.00x")
    for (requests, name), (rate, step_share) in rates.items():
        print(
            f"  ours, {requests} concurrent, {name:15s}: {rate:7.2f} tokens/s   {rate / baseline:5.2f}x upstream"
            f"   (steps {step_share:4.0%} of wall time)"
        )


if __name__ == "__main__":
    main()
