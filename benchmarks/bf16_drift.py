"""How far bfloat16 drifts from float32 on full-size random weights (accuracy, not speed).

T3: relative error of the speech logits (prefill, then teacher-forced decode steps along the fp32 tokens)
and how often both precisions pick the same most likely token. S3Gen: relative error of the mel (flow
matching, same noise) and of the waveform (HiFT from the same mel). Relative error = ||bf16 - fp32|| / ||fp32||.

    .venv/bin/python benchmarks/bf16_drift.py [--steps 40] [--tokens 50]
"""

from __future__ import annotations

import argparse
import copy

import torch
from chatterbox_engine.loading import random_models
from chatterbox_engine.voice import synthetic_reference
from t3_decode import TEXT_TOKENS, our_cond


def relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    return float((value.float() - reference.float()).norm() / reference.float().norm())


@torch.inference_mode()
def t3_drift(t3, steps: int) -> tuple[list[float], float]:
    """Per-position logit errors (prefill first) and top-1 agreement along the fp32 model's greedy tokens."""
    low = copy.deepcopy(t3).to(torch.bfloat16)
    runs = []
    for model in (t3, low):
        cond = our_cond(model, "cpu")
        embeds = model.prefill_embeds(cond, TEXT_TOKENS, cfg_rows=True)
        length = embeds.shape[1]
        cache = model.new_cache(2, length + steps)
        runs.append(
            (model, cache, model(embeds, torch.arange(length).expand(2, -1), cache, length)[:, -1], length)
        )
    errors, agree = [], 0
    (ref_model, ref_cache, ref_logits, position), (low_model, low_cache, low_logits, _) = runs
    for step in range(steps):
        errors.append(relative_error(low_logits, ref_logits))
        token = ref_logits[0:1].argmax(-1, keepdim=True)  # (1, 1): both follow the fp32 choice
        agree += int(low_logits[0].argmax() == token[0, 0])
        input_pos = torch.full((2, 1), position)
        ref_logits = ref_model(
            ref_model.embed_speech(token, step + 1).expand(2, -1, -1), input_pos, ref_cache, position + 1
        )[:, -1]
        low_logits = low_model(
            low_model.embed_speech(token, step + 1).expand(2, -1, -1), input_pos, low_cache, position + 1
        )[:, -1]
        position += 1
    return errors, agree / steps


@torch.inference_mode()
def s3gen_drift(s3gen, tokens: int) -> tuple[float, float]:
    low = copy.deepcopy(s3gen).to(torch.bfloat16)
    reference, rate = synthetic_reference()
    ref = s3gen.embed_ref(torch.from_numpy(reference)[None])
    codes = torch.randint(0, 6561, (1, tokens), generator=torch.Generator().manual_seed(0))
    mels = [m.flow_inference(codes, ref, torch.Generator().manual_seed(1)) for m in (s3gen, low)]
    wavs = [m.hift_inference(mels[0], torch.Generator().manual_seed(2))[0] for m in (s3gen, low)]
    return relative_error(mels[1], mels[0]), relative_error(wavs[1], wavs[0])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=40, help="teacher-forced T3 decode steps")
    parser.add_argument("--tokens", type=int, default=50, help="speech tokens rendered by S3Gen")
    args = parser.parse_args()
    models = random_models("random:full")
    errors, agreement = t3_drift(models.t3, args.steps)
    mel_error, wav_error = s3gen_drift(models.s3gen, args.tokens)
    print("bf16 vs fp32 drift, full-size random weights (relative error ||bf16 - fp32|| / ||fp32||)")
    print(f"  T3 prefill logits            : {errors[0]:.4f}")
    print(
        f"  T3 decode logits, {args.steps} steps   : mean {sum(errors[1:]) / max(1, len(errors) - 1):.4f}, max {max(errors):.4f}"
    )
    print(f"  T3 top-1 token agreement     : {agreement:.1%}")
    print(f"  S3Gen mel ({args.tokens} tokens)        : {mel_error:.4f}")
    print(f"  HiFT waveform (same mel)     : {wav_error:.4f}")


if __name__ == "__main__":
    main()
