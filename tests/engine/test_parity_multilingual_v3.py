"""Multilingual V3 parity with upstream main (5de7a54) on full-size random weights, end to end.

We write `random:full-multilingual-v3` in the official layout (`t3_mtl23ls_v3.safetensors`, `s3gen.pt`,
`ve.pt`, the grapheme tokenizer, `conds.pt`); upstream main's
`ChatterboxMultilingualTTS.from_local(dir, t3_model="v3")` loads it and runs its own `generate` (no
alignment analyzer, repetition penalty 1.2, the last token's audio cut) with its defaults; our engine
runs `generate` with its V3 defaults. Compared: the speech tokens sampled (same seed) and the audio
length, `(tokens - 1) * 960`. Everything V3 shares with v2 (text front end, T3 logits, processors)
`test_parity_multilingual` covers.
"""

import gc
import importlib

import pytest
import torch
from chatterbox_engine.variants import SPECS

from .conftest import loaded_then_freed, random_checkpoint

pytestmark = pytest.mark.parity
MAX_NEW_TOKENS = 20  # upstream's generate fixes 1000: its T3 call is capped to keep this cheap


@pytest.fixture(scope="module")
def v3_checkpoint(tmp_path_factory):
    yield from random_checkpoint(tmp_path_factory, "random:full-multilingual-v3")


@pytest.fixture(scope="module")
def ours(v3_checkpoint):
    yield from loaded_then_freed(v3_checkpoint)


@pytest.fixture(scope="module")
def upstream(upstream_main, v3_checkpoint):
    """Upstream main's loader on our files; its Chinese converter's downloads are switched off."""
    package = upstream_main.__name__
    tokenizer = importlib.import_module(f"{package}.models.tokenizers.tokenizer")
    mtl_tts = importlib.import_module(f"{package}.mtl_tts")
    patch = pytest.MonkeyPatch()
    patch.setattr(tokenizer.ChineseCangjieConverter, "_load_cangjie_mapping", lambda self, d=None: None)
    patch.setattr(tokenizer.ChineseCangjieConverter, "_init_segmenter", lambda self: None)
    try:
        tts = mtl_tts.ChatterboxMultilingualTTS.from_local(v3_checkpoint, "cpu", t3_model="v3")
    finally:
        patch.undo()
    tts.watermarker.apply_watermark = lambda wav, sample_rate: wav
    yield tts
    del tts
    gc.collect()


def test_written_layout_is_v3s_and_detected(v3_checkpoint, ours):
    names = {p.name for p in v3_checkpoint.iterdir()}
    assert set(SPECS["multilingual-v3"].required_files) | {"conds.pt"} <= names
    assert "t3_mtl23ls_v2.safetensors" not in names and "engine_config.json" not in names
    assert ours.info["variant"] == "multilingual" and ours.info["version"] == "v3"


@pytest.mark.parametrize(("seed", "language", "text"), [(0, "fr", "Bonjour à tous, ça va?")])
def test_generate_samples_the_same_tokens_and_audio_length_as_upstream(ours, upstream, seed, language, text):
    sampled = {}
    t3_inference, s3gen_inference = upstream.t3.inference, upstream.s3gen.inference

    def capped_t3(**kwargs):
        return t3_inference(**{**kwargs, "max_new_tokens": MAX_NEW_TOKENS})

    def recording_s3gen(speech_tokens, **kwargs):
        sampled["tokens"] = speech_tokens.tolist()
        return s3gen_inference(speech_tokens=speech_tokens, **kwargs)

    mtl_tts = importlib.import_module(type(upstream).__module__)
    drop_invalid_tokens = mtl_tts.drop_invalid_tokens

    def speech_codes_only(tokens):
        # Random weights also sample T3's unused ids 6563-8193, which a trained model never emits and
        # upstream would feed S3Gen (an IndexError); both sides keep codes below 6561, as Turbo upstream does.
        tokens = drop_invalid_tokens(tokens)
        return tokens[tokens < 6561]

    patch = pytest.MonkeyPatch()
    patch.setattr(mtl_tts, "drop_invalid_tokens", speech_codes_only)
    patch.setattr(upstream.t3, "inference", capped_t3)
    patch.setattr(upstream.s3gen, "inference", recording_s3gen)
    try:
        torch.manual_seed(seed)
        theirs = upstream.generate(text, language_id=language)  # its defaults: V3's repetition penalty 1.2
    finally:
        patch.undo()

    request = ours.request(text, language=language, seed=seed, max_new_tokens=MAX_NEW_TOKENS)
    assert request.sampling.repetition_penalty == 1.2
    our_s3gen_inference = ours.s3gen.inference

    def recording_our_s3gen(tokens, *args, **kwargs):
        sampled["ours"] = tokens[0].tolist()
        return our_s3gen_inference(tokens, *args, **kwargs)

    patch.setattr(ours.s3gen, "inference", recording_our_s3gen)
    try:
        result = ours.generate(request)
    finally:
        patch.undo()
    tokens = sampled["ours"]
    assert tokens == sampled["tokens"]
    assert result.num_tokens == len(tokens) > 1
    assert result.audio.size == theirs.shape[-1] == (len(tokens) - 1) * 960  # the last token's audio cut
