"""T3 decode speed: our static-KV-cache loop vs upstream chatterbox-tts 0.1.7 `T3.inference`.

Both run the same full-size random weights (official shapes), the same conditioning and text, the same
thread count and the same number of new tokens, in one process. The stop-token row of the speech head
is zeroed for the run so neither side stops early; tokens/s counts prefill plus all decode steps.

    .venv/bin/python benchmarks/t3_decode.py [--tokens 50] [--threads N] [--device cpu|cuda] [--repeats 2]
"""

from __future__ import annotations

import argparse
import time

import torch
from chatterbox_engine.decoding import decode_speech_tokens
from chatterbox_engine.loading import randomize_t3_
from chatterbox_engine.sampling import SamplingParams
from chatterbox_engine.t3 import T3, T3Config

TEXT_TOKENS = torch.tensor([[255, *range(14, 40), 2, *range(14, 30), 9, 0]])  # ~45 text tokens


def build_models(device: str) -> tuple[T3, torch.nn.Module]:
    from chatterbox.models.t3 import T3 as UpstreamT3

    ours = T3(T3Config.full())
    with torch.no_grad():
        randomize_t3_(ours, torch.Generator().manual_seed(0))
        ours.speech_head.weight[ours.cfg.stop_speech_token] = 0.0  # run to the token budget
    upstream = UpstreamT3()
    upstream.load_state_dict(ours.state_dict(), strict=True)
    return ours.to(device).eval(), upstream.to(device).eval()


def conditioning(device: str) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    speaker = torch.nn.functional.normalize(torch.randn(1, 256, generator=g), dim=-1).to(device)
    prompt = torch.randint(0, 6561, (1, 150), generator=g).to(device)
    return speaker, prompt


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


@torch.inference_mode()
def run_ours(t3: T3, device: str, tokens: int) -> tuple[int, float]:
    speaker, prompt = conditioning(device)
    started = time.perf_counter()
    cond = t3.embed_conditioning(speaker, prompt, torch.tensor([0.5], device=device))
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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tokens", type=int, default=50, help="new speech tokens per run")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch intra-op threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--repeats", type=int, default=2, help="alternating timed runs per side; best is kept"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    ours, upstream = build_models(args.device)
    run_ours(ours, args.device, 3)  # warm-up
    run_upstream(upstream, args.device, 3)
    # Alternate the two sides and keep each one's best run, so load from other processes on a shared
    # machine skews neither side more than the other.
    our_runs, their_runs = [], []
    for _ in range(args.repeats):
        our_runs.append(run_ours(ours, args.device, args.tokens))
        their_runs.append(run_upstream(upstream, args.device, args.tokens))
    our_tokens, our_seconds = min(our_runs, key=lambda run: run[1] / run[0])
    their_tokens, their_seconds = min(their_runs, key=lambda run: run[1] / run[0])
    our_rate, their_rate = our_tokens / our_seconds, their_tokens / their_seconds
    print(
        f"T3 decode, full-size random weights, device={args.device}, threads={args.threads}, CFG batch 2, "
        f"best of {args.repeats}"
    )
    print(f"  ours     : {our_tokens} tokens in {our_seconds:.2f} s = {our_rate:.2f} tokens/s")
    print(f"  upstream : {their_tokens} tokens in {their_seconds:.2f} s = {their_rate:.2f} tokens/s")
    print(f"  ratio    : {our_rate / their_rate:.2f}x (ours / upstream)")


if __name__ == "__main__":
    main()
