"""Turbo parity with upstream chatterbox-tts 0.1.7 on full-size random weights.

We write `random:full-turbo` in the official layout (`t3_turbo_v1.safetensors` with its unused
`tfmr.wte`, `s3gen_meanflow.safetensors`, `ve.safetensors`, the GPT-2 tokenizer files, `conds.pt`);
upstream's `ChatterboxTurboTTS.from_local` loads it (strict, transformers' AutoTokenizer) and our
engine loads it through its real loader. Compared: punctuation and tokenization, GPT-2 T3
teacher-forced logits, one sampling step in Turbo's processor order, whole seeded decode loops, and
the meanflow S3Gen mel (2 steps, no CFG) with injected noise.
"""

import gc

import numpy as np
import pytest
import torch
from chatterbox_engine.s3gen import S3GenReference
from chatterbox_engine.t3_gpt2 import TOP_K, process_turbo_logits
from chatterbox_engine.text import punc_norm
from chatterbox_engine.variants import SPECS

from .conftest import loaded_then_freed, random_checkpoint
from .gpt2_parity import (
    cached_prefix_prefill_diffs,
    check_synthesises_and_streams,
    decoded_tokens,
    teacher_forced_logit_diffs,
)

pytestmark = pytest.mark.parity
TOLERANCE = 1e-4
TEXTS = [
    "hello there... the thing is; it works - mostly",
    "Well [laugh] that’s “fine”: really…",
    "Ünïcode — and  double   spaces, 123",
]


@pytest.fixture(scope="module")
def turbo_checkpoint(tmp_path_factory):
    yield from random_checkpoint(tmp_path_factory, "random:full-turbo")


@pytest.fixture(scope="module")
def ours(turbo_checkpoint):
    yield from loaded_then_freed(turbo_checkpoint)


@pytest.fixture(scope="module")
def upstream(turbo_checkpoint):
    from chatterbox.tts_turbo import ChatterboxTurboTTS

    tts = ChatterboxTurboTTS.from_local(turbo_checkpoint, "cpu")
    yield tts
    del tts
    gc.collect()


def test_written_layout_is_the_official_one(turbo_checkpoint, upstream):
    names = {p.name for p in turbo_checkpoint.iterdir()}
    assert set(SPECS["turbo"].required_files) | {"conds.pt"} <= names
    assert len(upstream.tokenizer) == 50276


@pytest.mark.parametrize("text", TEXTS)
def test_normalisation_and_tokens_match_upstream(ours, upstream, text):
    from chatterbox.tts_turbo import punc_norm as upstream_punc_norm

    normalised = punc_norm(text, **ours.spec.punctuation)
    assert normalised == upstream_punc_norm(text)
    theirs = upstream.tokenizer(normalised, return_tensors="pt", padding=True, truncation=True).input_ids
    assert ours.tokenizer.text_tokens(normalised).tolist() == theirs.tolist()


def test_t3_teacher_forced_logits_match_upstream(ours, upstream):
    assert max(teacher_forced_logit_diffs(ours, upstream, TEXTS[1])) <= TOLERANCE


def test_prefill_after_the_voices_cached_prefix_matches_upstream(ours, upstream):
    assert max(cached_prefix_prefill_diffs(ours, upstream, TEXTS[1])) <= TOLERANCE


@pytest.mark.parametrize(
    ("temperature", "top_p", "penalty"), [(0.8, 0.95, 1.2), (1.0, 0.5, 2.0), (0.5, 1.0, 1.0)]
)
def test_one_sampling_step_matches_upstream_processors(temperature, top_p, penalty):
    from transformers.generation.logits_process import (
        LogitsProcessorList,
        RepetitionPenaltyLogitsProcessor,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    # As `T3.inference_turbo` assembles them: each only when it changes something.
    processors = LogitsProcessorList()
    if temperature != 1.0:
        processors.append(TemperatureLogitsWarper(temperature))
    processors.append(TopKLogitsWarper(TOP_K))
    if top_p < 1.0:
        processors.append(TopPLogitsWarper(top_p))
    if penalty != 1.0:
        processors.append(RepetitionPenaltyLogitsProcessor(penalty))

    g = torch.Generator().manual_seed(3)
    logits = 4 * torch.randn(1, 6563, generator=g)
    history = torch.randint(0, 6561, (1, 25), generator=g)
    theirs = processors(history, logits.clone())
    mine = process_turbo_logits(logits, history, temperature, top_p, penalty)
    finite = torch.isfinite(theirs)
    assert torch.equal(torch.isfinite(mine), finite)
    assert (mine[finite] - theirs[finite]).abs().max().item() <= TOLERANCE
    probs = theirs.softmax(-1)
    for seed in range(3):
        torch.manual_seed(seed)
        expected = torch.multinomial(probs, 1)
        drawn = torch.multinomial(mine.softmax(-1), 1, generator=torch.Generator().manual_seed(seed))
        assert drawn.item() == expected.item()


@pytest.mark.parametrize("seed", [0, 1])
def test_decode_samples_the_same_tokens_as_upstream_inference_turbo(ours, upstream, seed):
    mine, theirs = decoded_tokens(ours, upstream, TEXTS[0], seed, steps=10)
    assert mine == theirs


def test_meanflow_mel_with_injected_noise_matches_upstream(ours, upstream):
    """Two linear-grid Euler steps without CFG, on our voice's reference (2 prompt frames per token)."""
    voice = ours.default_voice
    ref = voice.s3gen_ref
    tokens = torch.randint(0, 6561, (1, 20), generator=torch.Generator().manual_seed(4))
    prompt_frames, new_frames = ref.prompt_feat.size(1), 2 * tokens.size(1)
    ref_dict = {**ref.to_tensors(), "prompt_feat_len": None}
    torch.manual_seed(77)  # upstream draws the new frames' noise, then the whole start, from the global RNG
    expected = upstream.s3gen.flow_inference(tokens, ref_dict=ref_dict, n_cfm_timesteps=2, finalize=True)
    torch.manual_seed(77)
    new_noise = torch.randn(1, 80, new_frames)
    noise = torch.randn(1, 80, prompt_frames + new_frames)
    noise[..., prompt_frames:] = new_noise
    mel = ours.s3gen.flow_inference(tokens, S3GenReference.from_tensors(ref.to_tensors()), None, noise=noise)
    assert ours.s3gen.cfg.cfm.n_timesteps == 2
    diff = (mel - expected).abs().max().item()
    print(f"meanflow S3Gen mel max abs diff {diff:.2e}")
    assert mel.shape == expected.shape == (1, 80, new_frames)
    assert diff <= TOLERANCE
    # And the engine's own draw (a generator seeded like upstream's global RNG) gives the same mel.
    seeded = ours.s3gen.flow_inference(tokens, ref, torch.Generator().manual_seed(77))
    assert (seeded - expected).abs().max().item() <= TOLERANCE


def test_voice_conditioning_matches_upstream_prepare_conditionals(ours, upstream, tmp_path):
    """Turbo's reference path: loudness levelled to -27 LUFS, a 15 s (375-token) T3 prompt, 10 s for S3Gen."""
    import soundfile
    from chatterbox_engine.voice import synthetic_reference

    audio, rate = synthetic_reference(seconds=16.0, sample_rate=24_000)  # whole 40 ms frames: no odd frame
    audio = 0.3 * audio  # quieter than -27 LUFS, so the levelling gain matters
    path = tmp_path / "reference.wav"
    soundfile.write(path, audio, rate, subtype="FLOAT")
    # Upstream pins numpy<2, where float32 samples times its float64 gain stay float32; under numpy 2 they
    # would turn float64 and break its tokenizer, so keep its own levelling but in float32 as pinned.
    levelled = upstream.norm_loudness
    patch = pytest.MonkeyPatch()

    def levelled_float32(wav, sr):
        peak = int(np.abs(wav).argmax())
        return wav * np.float32(levelled(wav, sr)[peak] / wav[peak])  # upstream's own gain

    patch.setattr(upstream, "norm_loudness", levelled_float32)
    try:
        upstream.prepare_conditionals(str(path), norm_loudness=True)
    finally:
        patch.undo()
    theirs = upstream.conds
    mine = ours.embed_voice(audio, rate)
    assert mine.prompt_tokens.shape == (1, 375)
    assert torch.equal(mine.prompt_tokens, theirs.t3.cond_prompt_speech_tokens.cpu())
    assert torch.equal(mine.s3gen_ref.prompt_token, theirs.gen["prompt_token"].cpu())
    diffs = {
        "speaker": (mine.speaker_emb - theirs.t3.speaker_emb).abs().max().item(),
        "prompt mel": (mine.s3gen_ref.prompt_feat - theirs.gen["prompt_feat"]).abs().max().item(),
        "x-vector": (mine.s3gen_ref.embedding - theirs.gen["embedding"]).abs().max().item(),
    }
    print("turbo voice max abs diffs:", diffs)
    assert max(diffs.values()) <= TOLERANCE


def test_full_size_engine_synthesises_and_streams(ours):
    check_synthesises_and_streams(ours, "Hello there.")


def test_builtin_voice_loads_in_upstream(turbo_checkpoint, ours):
    from chatterbox.tts_turbo import Conditionals

    conds = Conditionals.load(turbo_checkpoint / "conds.pt")  # weights_only=True upstream
    assert torch.equal(conds.t3.cond_prompt_speech_tokens, ours.default_voice.prompt_tokens)
    assert conds.t3.cond_prompt_speech_tokens.shape[1] > 150  # Turbo's 15 s prompt


def test_voice_conversion_with_meanflow_s3gen_matches_upstream_chatterbox_vc(ours, upstream, tmp_path):
    """Upstream's `ChatterboxVC` around Turbo's meanflow S3Gen against `convert` for the same source, target
    reference and noise. The target goes in as upstream embeds it (Turbo voices are loudness-levelled first,
    which `ChatterboxVC` does not do), so this compares the conversion itself."""
    import dataclasses

    import soundfile
    from chatterbox.vc import ChatterboxVC
    from chatterbox_engine.streaming import fade_out
    from chatterbox_engine.voice import synthetic_reference

    target, rate = synthetic_reference(seconds=3.2, sample_rate=24_000)
    source, _ = synthetic_reference(seconds=1.6, sample_rate=24_000)
    soundfile.write(tmp_path / "target.wav", target, rate, subtype="FLOAT")
    soundfile.write(tmp_path / "source.wav", 0.8 * source[::-1], rate, subtype="FLOAT")
    vc = ChatterboxVC(upstream.s3gen, "cpu")
    vc.watermarker.apply_watermark = lambda wav, sample_rate: wav
    torch.manual_seed(5)
    theirs = vc.generate(str(tmp_path / "source.wav"), target_voice_path=str(tmp_path / "target.wav"))[
        0
    ].numpy()

    ref = S3GenReference.from_tensors(
        {k: vc.ref_dict[k] for k in ("prompt_token", "prompt_feat", "embedding")}
    )
    voice = dataclasses.replace(ours.default_voice, s3gen_ref=ref)
    mine = ours.convert(0.8 * source[::-1], rate, voice, seed=5)
    diff = float(np.abs(mine.audio - fade_out(theirs)).max())
    print(f"meanflow voice conversion: {mine.num_tokens} tokens, max abs diff {diff:.2e}")
    assert mine.audio.shape == theirs.shape == (mine.num_tokens * 960,)
    assert diff <= TOLERANCE
