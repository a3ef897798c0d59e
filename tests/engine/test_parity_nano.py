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
from chatterbox_engine.text import PARALINGUISTIC_TAGS, punc_norm
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
    "Oh, that's hilarious! [chuckle] Um anyway, we do have a new model in store.",
    "[clear throat] well... [laugh] fine; [whispering] really",
]


@pytest.fixture(scope="module")
def nano_checkpoint(tmp_path_factory):
    yield from random_checkpoint(tmp_path_factory, "random:full-nano")


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


def test_t3_teacher_forced_logits_match_upstream(ours, upstream):
    assert max(teacher_forced_logit_diffs(ours, upstream, TEXTS[0])) <= TOLERANCE


def test_prefill_after_the_voices_cached_prefix_matches_upstream(ours, upstream):
    assert max(cached_prefix_prefill_diffs(ours, upstream, TEXTS[0])) <= TOLERANCE


@pytest.mark.parametrize("seed", [0, 1])
def test_decode_samples_the_same_tokens_as_upstream_inference_turbo(ours, upstream, seed):
    mine, theirs = decoded_tokens(ours, upstream, TEXTS[1], seed, steps=12)
    assert mine == theirs


def test_full_size_nano_synthesises_and_streams(ours):
    check_synthesises_and_streams(ours, "Hello there [laugh].")
