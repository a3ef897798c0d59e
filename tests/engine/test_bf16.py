"""bfloat16 engines: how far their outputs may drift from float32 (dtype rounding only).

Stated tolerances are relative errors ||bf16 - fp32|| / ||fp32|| on the same weights and inputs. The
full-size figures are measured by `benchmarks/bf16_drift.py` and recorded in `benchmarks/RESULTS.md`.
"""

from __future__ import annotations

import chatterbox_engine as ce
import numpy as np
import torch

T3_LOGITS_TOLERANCE = 0.02
S3GEN_MEL_TOLERANCE = 0.10  # ten ODE steps compound the rounding
HIFT_WAV_TOLERANCE = 0.02
TEXT_TOKENS = torch.tensor([[255, *range(20, 40), 0]])


def relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    return float((value.float() - reference.float()).norm() / reference.float().norm())


def prefill(engine: ce.Engine):
    t3, voice = engine.t3, engine.default_voice
    dtype = t3.speech_head.weight.dtype
    cond = t3.embed_conditioning(
        voice.speaker_emb.to(dtype), voice.prompt_tokens, torch.tensor([0.5], dtype=dtype)
    )
    embeds = t3.prefill_embeds(cond, TEXT_TOKENS, cfg_rows=True)
    length = embeds.shape[1]
    cache = t3.new_cache(2, length + 8)
    return t3(embeds, torch.arange(length).expand(2, -1), cache, length), cache, length


@torch.inference_mode()
def test_t3_logits_drift_within_tolerance(tiny_engine, bf16_engine):
    reference, _, _ = prefill(tiny_engine)
    logits, _, _ = prefill(bf16_engine)
    assert logits.dtype == torch.bfloat16
    assert relative_error(logits, reference) < T3_LOGITS_TOLERANCE


@torch.inference_mode()
def test_bf16_step_over_the_whole_static_cache_matches_the_bf16_lone_forward(bf16_engine):
    """The decode step as CUDA graphs replay it (attending over the whole cache, masked) against the
    lone forward's (attending up to its position)."""
    t3 = bf16_engine.t3
    _, cache, position = prefill(bf16_engine)
    lone_cache = t3.new_cache(2, cache.max_len)
    lone_cache.keys.copy_(cache.keys)
    lone_cache.values.copy_(cache.values)
    embeds = t3.embed_speech(torch.tensor([[123]]), 1).expand(2, -1, -1)
    input_pos = torch.full((2, 1), position)
    lone = t3(embeds, input_pos, lone_cache, position + 1)[:, -1]
    batched = t3(embeds, input_pos, cache, cache.max_len)[:, -1]
    assert relative_error(batched, lone) < 0.01


@torch.inference_mode()
def test_s3gen_mel_and_waveform_drift_within_tolerance(tiny_engine, bf16_engine):
    ref = tiny_engine.default_voice.s3gen_ref
    tokens = torch.randint(0, 6561, (1, 40), generator=torch.Generator().manual_seed(0))
    mels = [
        engine.s3gen.flow_inference(tokens, ref, torch.Generator().manual_seed(1))
        for engine in (tiny_engine, bf16_engine)
    ]
    assert relative_error(mels[1], mels[0]) < S3GEN_MEL_TOLERANCE
    wavs = [
        engine.s3gen.hift_inference(mels[0], torch.Generator().manual_seed(1))[0]
        for engine in (tiny_engine, bf16_engine)
    ]
    assert relative_error(wavs[1], wavs[0]) < HIFT_WAV_TOLERANCE


def test_bf16_engine_synthesises_float32_audio(bf16_engine):
    synthesis = bf16_engine.generate("Hello there, friend.", seed=1)
    assert synthesis.audio.dtype == np.float32 and synthesis.audio.size > 0
    assert np.isfinite(synthesis.audio).all()
    assert bf16_engine.info["dtype"] == "bfloat16"
