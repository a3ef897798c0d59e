"""T3 single-stream decode speed: ours in float32 and bfloat16 vs upstream chatterbox-tts 0.1.7 `T3.inference`.

All sides run the same full-size random weights (official shapes), the same conditioning and text, the same
thread count and the same number of new tokens, in one process, alternating so that load from other
processes on a shared machine skews no side more than another. The stop-token row of the speech head is
zeroed so nobody stops early; tokens/s counts conditioning, prefill and all decode steps. Other benchmark
scripts import the model builders from here.

    .venv/bin/python benchmarks/t3_decode.py [--tokens 40] [--threads N] [--device cpu|cuda] [--repeats 2]
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from chatterbox_engine import decoding
from chatterbox_engine.decoding import decode_speech_tokens
from chatterbox_engine.loading import randomize_t3_
from chatterbox_engine.sampling import SamplingParams
from chatterbox_engine.t3 import T3, T3Config

TEXT_TOKENS = torch.tensor([[255, *range(14, 40), 2, *range(14, 30), 9, 0]])  # ~45 text tokens


def build_ours(device: str) -> T3:
    """Full-size T3 with seeded random weights that never sample the stop token."""
    ours = T3(T3Config.full())
    with torch.no_grad():
        randomize_t3_(ours, torch.Generator().manual_seed(0))
        ours.speech_head.weight[ours.cfg.stop_speech_token] = 0.0  # run to the token budget
    return ours.to(device).eval()


def build_upstream(ours: T3, device: str) -> torch.nn.Module:
    from chatterbox.models.t3 import T3 as UpstreamT3

    upstream = UpstreamT3()
    upstream.load_state_dict({k: v.float().cpu() for k, v in ours.state_dict().items()}, strict=True)
    return upstream.to(device).eval()


def in_dtype(t3: T3, dtype: torch.dtype) -> T3:
    return copy.deepcopy(t3).to(dtype)


def conditioning(device: str) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    speaker = torch.nn.functional.normalize(torch.randn(1, 256, generator=g), dim=-1).to(device)
    prompt = torch.randint(0, 6561, (1, 150), generator=g).to(device)
    return speaker, prompt


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


@torch.inference_mode()
def our_cond(t3: T3, device: str) -> torch.Tensor:
    speaker, prompt = conditioning(device)
    dtype = t3.speech_head.weight.dtype
    return t3.embed_conditioning(speaker.to(dtype), prompt, torch.tensor([0.5], device=device, dtype=dtype))


@torch.inference_mode()
def prefilled(t3: T3, max_new_tokens: int) -> tuple[decoding.DecodeRequest, decoding.DecodeBatch]:
    """One CFG pair on CPU, seed 0, prefilled and ready to sample: for benchmarks that step decoding by hand."""
    request = decoding.new_request(
        t3,
        our_cond(t3, "cpu"),
        TEXT_TOKENS,
        SamplingParams(),
        torch.Generator().manual_seed(0),
        max_new_tokens,
    )
    batch = decoding.DecodeBatch(t3, max_rows=request.rows)
    batch.prefill([request])
    return request, batch


@torch.inference_mode()
def run_ours(t3: T3, device: str, tokens: int) -> tuple[int, float]:
    started = time.perf_counter()
    cond = our_cond(t3, device)
    generator = torch.Generator(device).manual_seed(0)
    out = list(decode_speech_tokens(t3, cond, TEXT_TOKENS.to(device), SamplingParams(), generator, tokens))
    sync(device)
    return len(out), time.perf_counter() - started


@torch.inference_mode()
def run_upstream(t3, device: str, tokens: int) -> tuple[int, float]:
    from chatterbox.models.t3.modules.cond_enc import T3Cond

    speaker, prompt = conditioning(device)
    torch.manual_seed(0)
    started = time.perf_counter()
    cond = T3Cond(
        speaker_emb=speaker, cond_prompt_speech_tokens=prompt, emotion_adv=0.5 * torch.ones(1, 1, 1)
    )
    out = t3.inference(
        t3_cond=cond.to(device=device),
        text_tokens=torch.cat([TEXT_TOKENS, TEXT_TOKENS]).to(device),
        max_new_tokens=tokens,
        temperature=0.8,
        cfg_weight=0.5,
        repetition_penalty=1.2,
        min_p=0.05,
        top_p=1.0,
    )
    sync(device)
    return out.shape[1], time.perf_counter() - started


def best_rate(runs: list[tuple[int, float]]) -> float:
    return max(tokens / seconds for tokens, seconds in runs)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tokens", type=int, default=40, help="new speech tokens per run")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch intra-op threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--repeats", type=int, default=2, help="alternating timed runs per side; best is kept"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    ours = build_ours(args.device)
    upstream = build_upstream(ours, args.device)
    ours_bf16 = in_dtype(ours, torch.bfloat16)
    sides = {
        "ours fp32": lambda n: run_ours(ours, args.device, n),
        "ours bf16": lambda n: run_ours(ours_bf16, args.device, n),
        "upstream fp32": lambda n: run_upstream(upstream, args.device, n),
    }
    for run in sides.values():
        run(3)  # warm-up
    runs: dict[str, list[tuple[int, float]]] = {name: [] for name in sides}
    for _ in range(args.repeats):
        for name, run in sides.items():
            runs[name].append(run(args.tokens))
    baseline = best_rate(runs["upstream fp32"])
    print(
        f"T3 single-stream decode, full-size random weights, device={args.device}, threads={args.threads}, "
        f"CFG batch 2, {args.tokens} tokens, best of {args.repeats} alternating runs"
    )
    for name, side_runs in runs.items():
        rate = best_rate(side_runs)
        print(f"  {name:14s}: {rate:7.2f} tokens/s   {rate / baseline:5.2f}x upstream")


if __name__ == "__main__":
    main()
