"""Parity with upstream chatterbox-tts 0.1.7 on full-size random weights (T3, VoiceEncoder, text, sampling).

Both sides load the same `random:full` checkpoint written in the official layout. Comparisons are in
fp32 with a 1e-4 max-abs-diff budget; token ids must match exactly.
"""

import numpy as np
import pytest
import torch
from chatterbox_engine.decoding import decode_speech_tokens
from chatterbox_engine.sampling import SamplingParams, process_logits, sample_next
from chatterbox_engine.text import punc_norm
from chatterbox_engine.voice import synthetic_reference

pytestmark = pytest.mark.parity
TOLERANCE = 1e-4
TEXTS = [
    "Hello there, how are you today?",
    "numbers 123 and symbols: #1; ok... fine – done",
    "“Quoted” text with ‘apostrophes’ and CAPITALS",
]


@pytest.fixture(scope="module")
def upstream_t3(full_checkpoint):
    from chatterbox.models.t3 import T3 as UpstreamT3
    from safetensors.torch import load_file

    t3 = UpstreamT3()
    t3.load_state_dict(load_file(full_checkpoint / "t3_cfg.safetensors"), strict=True)
    yield t3.eval()
    del t3


def test_text_normalisation_and_tokens_match_upstream(full_checkpoint, full_engine):
    from chatterbox.models.tokenizers import EnTokenizer as UpstreamTokenizer
    from chatterbox.tts import punc_norm as upstream_punc_norm

    upstream = UpstreamTokenizer(str(full_checkpoint / "tokenizer.json"))
    for text in TEXTS:
        assert punc_norm(text) == upstream_punc_norm(text)
        ours = full_engine.tokenizer.text_tokens(punc_norm(text))[0, 1:-1]
        theirs = upstream.text_to_tokens(upstream_punc_norm(text))[0]
        assert ours.tolist() == theirs.tolist()


def test_voice_encoder_embedding_matches_upstream(full_checkpoint, full_engine):
    from chatterbox.models.voice_encoder import VoiceEncoder as UpstreamVoiceEncoder
    from safetensors.torch import load_file

    upstream = UpstreamVoiceEncoder()
    upstream.load_state_dict(load_file(full_checkpoint / "ve.safetensors"), strict=True)
    upstream.eval()
    speech, _ = synthetic_reference(seconds=5.0, sample_rate=16_000)
    wav = np.concatenate([np.zeros(8000, np.float32), speech, np.zeros(4000, np.float32)])  # trimmed by both
    theirs = torch.from_numpy(upstream.embeds_from_wavs([wav], sample_rate=16_000)).mean(0, keepdim=True)
    ours = full_engine.voice_encoder.embed(wav)
    diff = (ours - theirs).abs().max().item()
    print(f"VoiceEncoder max abs diff {diff:.3e}")
    assert diff <= TOLERANCE


@torch.inference_mode()
def test_t3_teacher_forced_logits_match_upstream(full_engine, upstream_t3):
    from chatterbox.models.t3.inference.t3_hf_backend import T3HuggingfaceBackend
    from chatterbox.models.t3.modules.cond_enc import T3Cond

    ours = full_engine.t3
    g = torch.Generator().manual_seed(0)
    speaker = torch.nn.functional.normalize(torch.randn(1, 256, generator=g), dim=-1)
    prompt = torch.randint(0, 6561, (1, 150), generator=g)
    forced = torch.randint(0, 6561, (1, 8), generator=g)
    exaggeration = 0.7
    text = full_engine.tokenizer.text_tokens(punc_norm(TEXTS[0]))  # (1, L) with start/stop

    # Upstream, exactly as `T3.inference` builds and steps its CFG batch.
    cond = T3Cond(
        speaker_emb=speaker, cond_prompt_speech_tokens=prompt, emotion_adv=exaggeration * torch.ones(1, 1, 1)
    )
    embeds, _ = upstream_t3.prepare_input_embeds(
        t3_cond=cond,
        text_tokens=torch.cat([text, text]),
        speech_tokens=torch.full((2, 1), 6561),
        cfg_weight=0.5,
    )
    bos = upstream_t3.speech_emb(torch.tensor([[6561]])) + upstream_t3.speech_pos_emb.get_fixed_embedding(0)
    backend = T3HuggingfaceBackend(
        config=upstream_t3.cfg, llama=upstream_t3.tfmr, speech_enc=upstream_t3.speech_emb,
        speech_head=upstream_t3.speech_head,
    )  # fmt: skip
    output = backend(inputs_embeds=torch.cat([embeds, torch.cat([bos, bos])], dim=1), past_key_values=None,
                     use_cache=True, output_attentions=True, output_hidden_states=True, return_dict=True)  # fmt: skip
    theirs = [output.logits]
    past = output.past_key_values
    for i in range(forced.shape[1]):
        step = upstream_t3.speech_emb(forced[:, i : i + 1]) + upstream_t3.speech_pos_emb.get_fixed_embedding(
            i + 1
        )
        output = backend(inputs_embeds=torch.cat([step, step]), past_key_values=past, output_attentions=True,
                         output_hidden_states=True, return_dict=True)  # fmt: skip
        theirs.append(output.logits)
        past = output.past_key_values

    # Ours: prefill over every position, then the cached one-token steps.
    our_cond = ours.embed_conditioning(speaker, prompt, torch.tensor([exaggeration]))
    prefill = ours.prefill_embeds(our_cond, text, cfg_rows=True)
    assert prefill.shape == embeds.shape[:1] + (embeds.shape[1] + 1, embeds.shape[2])
    cache = ours.new_cache(2, prefill.shape[1] + forced.shape[1])
    position = prefill.shape[1]
    mine = [ours(prefill, torch.arange(position).expand(2, -1), cache, position)]
    for i in range(forced.shape[1]):
        step = ours.embed_speech(forced[:, i : i + 1], i + 1).expand(2, -1, -1)
        mine.append(ours(step, torch.full((2, 1), position), cache, position + 1))
        position += 1

    diffs = [(a - b).abs().max().item() for a, b in zip(mine, theirs, strict=True)]
    print("T3 logits max abs diff per step (prefill first):", ", ".join(f"{d:.2e}" for d in diffs))
    assert max(diffs) <= TOLERANCE
    # Both CFG rows were compared; make sure they really differ (zeroed text in the uncond row).
    assert not torch.allclose(mine[0][0], mine[0][1])


@pytest.mark.parametrize(
    "params",
    [SamplingParams(), SamplingParams(temperature=1.0, top_p=0.8, min_p=0.0, repetition_penalty=1.5),
     SamplingParams(cfg_weight=1.5, temperature=0.6, top_p=0.95, min_p=0.1, repetition_penalty=2.0)],
)  # fmt: skip
def test_one_sampling_step_matches_upstream(params):
    from transformers.generation.logits_process import (
        MinPLogitsWarper,
        RepetitionPenaltyLogitsProcessor,
        TopPLogitsWarper,
    )

    g = torch.Generator().manual_seed(42)
    logits = 3 * torch.randn(2, 8194, generator=g)
    history = torch.cat([torch.tensor([[6561]]), torch.randint(0, 6561, (1, 30), generator=g)], dim=1)

    # Upstream's loop body from `T3.inference`, with the global RNG seeded for its multinomial.
    cond, uncond = logits[0:1], logits[1:2]
    theirs = cond + torch.as_tensor(params.cfg_weight) * (cond - uncond)
    theirs = RepetitionPenaltyLogitsProcessor(penalty=float(params.repetition_penalty))(history, theirs)
    if params.temperature != 1.0:
        theirs = theirs / params.temperature
    theirs = MinPLogitsWarper(min_p=params.min_p)(history, theirs)
    theirs = TopPLogitsWarper(top_p=params.top_p)(history, theirs)
    probs = torch.softmax(theirs, dim=-1)

    ours = process_logits(logits, history, params)
    finite = torch.isfinite(theirs)
    assert torch.equal(torch.isfinite(ours), finite)
    diff = (ours[finite] - theirs[finite]).abs().max().item()
    assert diff <= TOLERANCE
    assert (ours.softmax(-1) - probs).abs().max().item() <= TOLERANCE
    for seed in range(5):
        torch.manual_seed(seed)
        token = torch.multinomial(probs, num_samples=1)
        assert (
            sample_next(logits, history, params, torch.Generator().manual_seed(seed)).item() == token.item()
        )


def test_written_builtin_voice_loads_in_upstream(full_checkpoint, full_engine):
    from chatterbox.tts import Conditionals

    conds = Conditionals.load(full_checkpoint / "conds.pt")  # weights_only=True upstream
    voice = full_engine.default_voice
    assert torch.equal(conds.t3.speaker_emb, voice.speaker_emb)
    assert torch.equal(conds.t3.cond_prompt_speech_tokens, voice.prompt_tokens)
    assert torch.equal(conds.gen["prompt_feat"], voice.s3gen_ref.prompt_feat)
    assert torch.equal(conds.gen["embedding"], voice.s3gen_ref.embedding)


def test_voice_conditioning_matches_upstream_prepare_conditionals(
    full_checkpoint, full_engine, upstream_t3, tmp_path
):
    import soundfile
    from chatterbox.models.s3gen import S3Gen as UpstreamS3Gen
    from chatterbox.models.tokenizers import EnTokenizer as UpstreamTokenizer
    from chatterbox.models.voice_encoder import VoiceEncoder as UpstreamVoiceEncoder
    from chatterbox.tts import ChatterboxTTS
    from safetensors.torch import load_file

    s3gen = UpstreamS3Gen()
    s3gen.load_state_dict(load_file(full_checkpoint / "s3gen.safetensors"), strict=False)  # as upstream
    voice_encoder = UpstreamVoiceEncoder()
    voice_encoder.load_state_dict(load_file(full_checkpoint / "ve.safetensors"))
    tokenizer = UpstreamTokenizer(str(full_checkpoint / "tokenizer.json"))
    tts = ChatterboxTTS(upstream_t3, s3gen.eval(), voice_encoder.eval(), tokenizer, "cpu")

    # 7.2 s at 24 kHz: a whole number of 40 ms, so upstream keeps no odd prompt frame.
    audio, rate = synthetic_reference(seconds=7.2, sample_rate=24_000)
    path = tmp_path / "reference.wav"
    soundfile.write(path, audio, rate, subtype="FLOAT")
    tts.prepare_conditionals(str(path), exaggeration=0.5)
    theirs = tts.conds
    ours = full_engine.embed_voice(audio, rate)

    speaker_diff = (ours.speaker_emb - theirs.t3.speaker_emb).abs().max().item()
    feat_diff = (ours.s3gen_ref.prompt_feat - theirs.gen["prompt_feat"]).abs().max().item()
    xvector_diff = (ours.s3gen_ref.embedding - theirs.gen["embedding"]).abs().max().item()
    print(f"voice: speaker {speaker_diff:.2e}, prompt mel {feat_diff:.2e}, x-vector {xvector_diff:.2e}")
    assert torch.equal(ours.prompt_tokens, theirs.t3.cond_prompt_speech_tokens.cpu())
    assert torch.equal(ours.s3gen_ref.prompt_token, theirs.gen["prompt_token"].cpu())
    assert max(speaker_diff, feat_diff, xvector_diff) <= TOLERANCE


@pytest.mark.parametrize("seed", [0, 1])
def test_t3_decode_samples_the_same_tokens_as_upstream_inference(full_engine, upstream_t3, seed):
    """Whole decode loops: upstream draws from the global RNG, ours from a generator seeded alike, so
    identical logits and processing give identical token sequences."""
    from chatterbox.models.t3.modules.cond_enc import T3Cond

    g = torch.Generator().manual_seed(10 + seed)
    speaker = torch.nn.functional.normalize(torch.randn(1, 256, generator=g), dim=-1)
    prompt = torch.randint(0, 6561, (1, 150), generator=g)
    text = full_engine.tokenizer.text_tokens(punc_norm(TEXTS[1]))
    steps = 12

    torch.manual_seed(seed)
    cond = T3Cond(
        speaker_emb=speaker, cond_prompt_speech_tokens=prompt, emotion_adv=0.5 * torch.ones(1, 1, 1)
    )
    theirs = upstream_t3.inference(t3_cond=cond, text_tokens=torch.cat([text, text]), max_new_tokens=steps,
                                   temperature=0.8, cfg_weight=0.5, repetition_penalty=1.2, min_p=0.05, top_p=1.0)  # fmt: skip
    with torch.inference_mode():
        our_cond = full_engine.t3.embed_conditioning(speaker, prompt, torch.tensor([0.5]))
        ours = list(decode_speech_tokens(full_engine.t3, our_cond, text, SamplingParams(),
                                         torch.Generator().manual_seed(seed), steps))  # fmt: skip
    assert ours == [t for t in theirs[0].tolist() if t != 6562]
