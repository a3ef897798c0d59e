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
from chatterbox_engine.decoding import decode_speech_tokens
from chatterbox_engine.s3gen import S3GenReference
from chatterbox_engine.sampling import SamplingParams
from chatterbox_engine.t3_gpt2 import TOP_K, process_turbo_logits
from chatterbox_engine.text import punc_norm
from chatterbox_engine.variants import SPECS

from .conftest import loaded_then_freed, write_random_checkpoint

pytestmark = pytest.mark.parity
TOLERANCE = 1e-4
TEXTS = [
    "hello there... the thing is; it works - mostly",
    "Well [laugh] that’s “fine”: really…",
    "Ünïcode — and  double   spaces, 123",
]


@pytest.fixture(scope="module")
def turbo_checkpoint(tmp_path_factory):
    return write_random_checkpoint(tmp_path_factory, "random:full-turbo")


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


def _conditioning(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    speaker = torch.nn.functional.normalize(torch.randn(1, 256, generator=g), dim=-1)
    prompt = torch.randint(0, 6561, (1, 375), generator=g)
    return speaker, prompt, g


@torch.inference_mode()
def test_t3_teacher_forced_logits_match_upstream(ours, upstream):
    from chatterbox.models.t3.modules.cond_enc import T3Cond

    speaker, prompt, g = _conditioning()
    forced = torch.randint(0, 6561, (1, 6), generator=g)
    text = ours.tokenizer.text_tokens(punc_norm(TEXTS[1]))
    their_t3 = upstream.t3

    cond = T3Cond(
        speaker_emb=speaker, cond_prompt_speech_tokens=prompt, emotion_adv=0.5 * torch.ones(1, 1, 1)
    )
    embeds, _ = their_t3.prepare_input_embeds(
        t3_cond=cond, text_tokens=text, speech_tokens=torch.full((1, 1), 6561), cfg_weight=0.0
    )
    output = their_t3.tfmr(inputs_embeds=embeds, use_cache=True)
    theirs, past = [their_t3.speech_head(output[0])], output.past_key_values
    for i in range(forced.shape[1]):
        output = their_t3.tfmr(
            inputs_embeds=their_t3.speech_emb(forced[:, i : i + 1]), past_key_values=past, use_cache=True
        )
        theirs.append(their_t3.speech_head(output[0]))
        past = output.past_key_values

    t3 = ours.t3
    prefill = t3.prefill_embeds(t3.embed_conditioning(speaker, prompt, None), text)
    assert prefill.shape == embeds.shape
    cache = t3.new_cache(1, prefill.shape[1] + forced.shape[1])
    position = prefill.shape[1]
    mine = [t3(prefill, torch.arange(position)[None], cache, position)]
    for i in range(forced.shape[1]):
        mine.append(t3(t3.speech_emb(forced[:, i : i + 1]), torch.tensor([[position]]), cache, position + 1))
        position += 1

    diffs = [(a - b).abs().max().item() for a, b in zip(mine, theirs, strict=True)]
    print("turbo T3 logits max abs diff per step (prefill first):", ", ".join(f"{d:.2e}" for d in diffs))
    assert max(diffs) <= TOLERANCE


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
    from chatterbox.models.t3.modules.cond_enc import T3Cond

    speaker, prompt, _ = _conditioning(10 + seed)
    text = ours.tokenizer.text_tokens(punc_norm(TEXTS[0]))
    steps = 10
    torch.manual_seed(seed)
    cond = T3Cond(
        speaker_emb=speaker, cond_prompt_speech_tokens=prompt, emotion_adv=0.5 * torch.ones(1, 1, 1)
    )
    theirs = upstream.t3.inference_turbo(cond, text, temperature=0.8, top_k=TOP_K, top_p=0.95, repetition_penalty=1.2,
                                         max_gen_len=steps)  # fmt: skip
    with torch.inference_mode():
        our_cond = ours.t3.embed_conditioning(speaker, prompt, None)
        mine = list(
            decode_speech_tokens(
                ours.t3,
                our_cond,
                text,
                SamplingParams(temperature=0.8, top_p=0.95, repetition_penalty=1.2),
                torch.Generator().manual_seed(seed),
                steps + 1,
            )
        )
    assert mine == theirs[0].tolist()


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
    result = ours.generate("Hello there.", seed=0, max_new_tokens=8)
    assert result.audio.size == (result.num_tokens + 3) * 960  # three trailing silence tokens
    chunks = list(ours.generate_stream("Hello there.", seed=0, max_new_tokens=8, chunk_tokens=4))
    assert chunks[-1].is_last and chunks[-1].num_tokens == result.num_tokens


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
