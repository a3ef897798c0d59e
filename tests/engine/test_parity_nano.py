"""Nano parity with upstream main (5de7a54) on full-size random weights.

We write `random:full-nano` in the official layout (`t3_nano_v1.safetensors` with its unused `tfmr.wte`,
`s3gen_meanflow.safetensors`, `ve.safetensors`, the GPT-2 tokenizer files with the paralinguistic tags,
`conds.pt`); upstream main's `ChatterboxTurboTTS.from_local(dir, nano=True)` loads it (strict,
transformers' AutoTokenizer) and our engine loads it through its real loader, detecting Nano from the
files. Compared: tag tokenization, GPT-2-small T3 teacher-forced logits, and whole seeded decode loops.
Everything else Nano shares with Turbo (processors, meanflow S3Gen, voices) `test_parity_turbo` covers.
"""

import gc
import importlib

import pytest
import torch
from chatterbox_engine.decoding import decode_speech_tokens
from chatterbox_engine.sampling import SamplingParams
from chatterbox_engine.t3_gpt2 import TOP_K
from chatterbox_engine.text import PARALINGUISTIC_TAGS, punc_norm
from chatterbox_engine.variants import SPECS

from .conftest import loaded_then_freed, write_random_checkpoint

pytestmark = pytest.mark.parity
TOLERANCE = 1e-4
TEXTS = [
    "Oh, that's hilarious! [chuckle] Um anyway, we do have a new model in store.",
    "[clear throat] well... [laugh] fine; [whispering] really",
]


@pytest.fixture(scope="module")
def nano_checkpoint(tmp_path_factory):
    return write_random_checkpoint(tmp_path_factory, "random:full-nano")


@pytest.fixture(scope="module")
def ours(nano_checkpoint):
    yield from loaded_then_freed(nano_checkpoint)


@pytest.fixture(scope="module")
def upstream(upstream_main, nano_checkpoint):
    tts_turbo = importlib.import_module(f"{upstream_main.__name__}.tts_turbo")
    tts = tts_turbo.ChatterboxTurboTTS.from_local(nano_checkpoint, "cpu", nano=True)
    yield tts
    del tts
    gc.collect()


def test_written_layout_is_nanos_and_detected(nano_checkpoint, ours, upstream):
    names = {p.name for p in nano_checkpoint.iterdir()}
    assert set(SPECS["nano"].required_files) | {"conds.pt"} <= names
    assert "engine_config.json" not in names  # official shapes need no config file
    assert ours.variant == "nano"
    assert upstream.t3.cfg.n_layer == 12 and upstream.t3.cfg.hidden_size == 768
    assert len(upstream.tokenizer) == 50276


@pytest.mark.parametrize("text", TEXTS)
def test_tags_tokenize_as_upstream(ours, upstream, text):
    tts_turbo = importlib.import_module(f"{type(upstream).__module__}")
    normalised = punc_norm(text, **ours.spec.punctuation)
    assert normalised == tts_turbo.punc_norm(text)
    theirs = upstream.tokenizer(normalised, return_tensors="pt", padding=True, truncation=True).input_ids
    assert ours.request(text).text_pieces[0].tolist() == theirs.tolist()
    for tag in PARALINGUISTIC_TAGS:  # each tag is one added token, as in upstream's tokenizer
        assert ours.tokenizer.encode(tag) == upstream.tokenizer(tag).input_ids


def _conditioning(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    speaker = torch.nn.functional.normalize(torch.randn(1, 256, generator=g), dim=-1)
    prompt = torch.randint(0, 6561, (1, 375), generator=g)
    return speaker, prompt, g


def _upstream_cond(upstream, speaker, prompt):
    cond_enc = importlib.import_module(
        f"{type(upstream).__module__.rsplit('.', 1)[0]}.models.t3.modules.cond_enc"
    )
    return cond_enc.T3Cond(
        speaker_emb=speaker, cond_prompt_speech_tokens=prompt, emotion_adv=0.5 * torch.ones(1, 1, 1)
    )


@torch.inference_mode()
def test_t3_teacher_forced_logits_match_upstream(ours, upstream):
    speaker, prompt, g = _conditioning()
    forced = torch.randint(0, 6561, (1, 6), generator=g)
    text = ours.tokenizer.text_tokens(punc_norm(TEXTS[0]))
    their_t3 = upstream.t3
    embeds, _ = their_t3.prepare_input_embeds(
        t3_cond=_upstream_cond(upstream, speaker, prompt),
        text_tokens=text,
        speech_tokens=torch.full((1, 1), 6561),
        cfg_weight=0.0,
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
    print("nano T3 logits max abs diff per step (prefill first):", ", ".join(f"{d:.2e}" for d in diffs))
    assert max(diffs) <= TOLERANCE


@pytest.mark.parametrize("seed", [0, 1])
def test_decode_samples_the_same_tokens_as_upstream_inference_turbo(ours, upstream, seed):
    speaker, prompt, _ = _conditioning(10 + seed)
    text = ours.tokenizer.text_tokens(punc_norm(TEXTS[1]))
    steps = 12
    torch.manual_seed(seed)
    theirs = upstream.t3.inference_turbo(
        _upstream_cond(upstream, speaker, prompt),
        text,
        temperature=0.8,
        top_k=TOP_K,
        top_p=0.95,
        repetition_penalty=1.2,
        max_gen_len=steps,
    )
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


def test_full_size_nano_synthesises_and_streams(ours):
    result = ours.generate("Hello there [laugh].", seed=0, max_new_tokens=8)
    assert result.audio.size == (result.num_tokens + 3) * 960  # three trailing silence tokens, as Turbo
    chunks = list(ours.generate_stream("Hello there [laugh].", seed=0, max_new_tokens=8, chunk_tokens=4))
    assert chunks[-1].is_last and chunks[-1].num_tokens == result.num_tokens
