"""Voice conversion (`Engine.convert`, `convert_stream`) on tiny random weights: lengths, windows, errors.

Parity with upstream's `ChatterboxVC` on full-size weights is in test_parity_conversion.py.
"""

from __future__ import annotations

import chatterbox_engine as ce
import numpy as np
import pytest
import torch
from chatterbox_engine.conversion import WINDOW_TOKENS
from chatterbox_engine.streaming import SAMPLES_PER_TOKEN, fade_out
from chatterbox_engine.voice import synthetic_reference


def source(seconds: float, rate: int = 16_000) -> np.ndarray:
    return synthetic_reference(seconds, rate)[0]


def test_short_source_is_one_s3gen_call_on_its_tokens(tiny_engine):
    """Up to one window, conversion is S3Gen's one-shot inference on the source's S3 tokens (and the
    20 ms fade-out every finished utterance gets), with the seed as the generator's."""
    audio = source(2.0)
    converted = tiny_engine.convert(audio, 16_000, seed=5)
    tokens, _ = tiny_engine.s3gen.tokenize(torch.from_numpy(audio)[None])
    assert converted.num_tokens == tokens.size(1) == 50
    ref = tiny_engine.default_voice.s3gen_ref
    expected = tiny_engine.s3gen.inference(tokens, ref, torch.Generator().manual_seed(5))
    np.testing.assert_array_equal(converted.audio, fade_out(expected[0].numpy()))
    assert converted.sample_rate == ce.SAMPLE_RATE and converted.audio.dtype == np.float32


def test_same_seed_same_audio_other_seed_or_voice_other_audio(tiny_engine):
    audio = source(1.5, 24_000)
    first = tiny_engine.convert(audio, 24_000, seed=1).audio
    assert np.array_equal(first, tiny_engine.convert(audio, 24_000, seed=1).audio)
    assert not np.array_equal(first, tiny_engine.convert(audio, 24_000, seed=2).audio)
    other_voice = tiny_engine.embed_voice(*synthetic_reference(3.0, 22_050))
    assert not np.array_equal(first, tiny_engine.convert(audio, 24_000, other_voice, seed=1).audio)


def test_long_source_renders_in_windows_of_the_whole_length(tiny_engine, monkeypatch):
    windows = []
    synthesize = tiny_engine.s3gen.synthesize
    monkeypatch.setattr(
        tiny_engine.s3gen,
        "synthesize",
        lambda batch: windows.append(batch[0].tokens.size(1)) or synthesize(batch),
    )
    converted = tiny_engine.convert(source(22.0), 16_000, seed=3)
    assert converted.num_tokens == 550
    assert converted.audio.size == 550 * SAMPLES_PER_TOKEN
    assert max(windows) <= WINDOW_TOKENS + 25 and len(windows) == 3  # 250, 25 + 250, 25 + 50 tokens
    assert np.isfinite(converted.audio).all()


def test_stream_covers_the_source_in_growing_chunks_and_joins_smoothly(tiny_engine):
    audio = source(6.0)
    chunks = list(tiny_engine.convert_stream(audio, 16_000, seed=4))
    assert [c.is_last for c in chunks] == [False] * (len(chunks) - 1) + [True]
    assert chunks[0].audio.size <= 10 * SAMPLES_PER_TOKEN  # a quick first packet
    covered = [c.num_tokens for c in chunks]
    assert covered == sorted(covered) and covered[-1] == 150
    joined = np.concatenate([c.audio for c in chunks])
    one_shot = tiny_engine.convert(audio, 16_000, seed=4).audio
    assert joined.size == one_shot.size == 150 * SAMPLES_PER_TOKEN
    ends = np.cumsum([c.audio.size for c in chunks])[:-1]
    largest_step = float(np.abs(np.diff(one_shot)).max())
    assert max(abs(float(joined[i] - joined[i - 1])) for i in ends) <= largest_step  # no clicks


def test_turbo_meanflow_s3gen_converts():
    turbo = ce.load("random:tiny-turbo", watermark=False)
    converted = turbo.convert(source(2.0), 16_000, seed=0)
    assert converted.audio.size == converted.num_tokens * SAMPLES_PER_TOKEN > 0
    assert np.isfinite(converted.audio).all()
    streamed = np.concatenate([c.audio for c in turbo.convert_stream(source(2.0), 16_000, seed=0)])
    assert streamed.size == converted.audio.size


def test_concurrent_conversions_share_s3gen_calls_and_keep_their_audio(tiny_engine):
    batched = ce.load("random:tiny", watermark=False)
    calls = []
    assert batched.enable_batching(max_requests=4, on_s3gen_batch=calls.append)
    sources = [source(3.0), 0.5 * source(3.0, 22_050)[:48_000]]
    jobs = [batched.conversion_job(audio, 16_000, seed=i) for i, audio in enumerate(sources)]
    with batched._core._wake:  # the loop takes both at the same step, so their windows fall due together
        outputs = [batched._core.outputs(job) for job in jobs]
    results = [np.concatenate([chunk.audio for chunk in chunks]) for chunks in outputs]
    for index, audio in enumerate(sources):
        alone = np.concatenate([c.audio for c in tiny_engine.convert_stream(audio, 16_000, seed=index)])
        np.testing.assert_allclose(results[index], alone, atol=1e-5)
    assert max(stats.windows for stats in calls) > 1


@pytest.mark.parametrize(
    ("audio", "rate", "kwargs", "error", "message"),
    [
        (np.zeros(0, np.float32), 16_000, {}, ce.InvalidAudioError, "source audio is 0.00 s"),
        (source(0.1), 16_000, {}, ce.InvalidAudioError, "at least 0.25 s"),
        (np.zeros(32_000, np.float32), 16_000, {}, ce.InvalidAudioError, "source audio is silent"),
        (np.full(32_000, np.nan, np.float32), 16_000, {}, ce.InvalidAudioError, "NaN"),
        (np.stack([source(1.0), source(1.0)]), 16_000, {}, ce.InvalidAudioError, "mono"),
        (source(1.0), 100, {}, ce.InvalidAudioError, "sample_rate"),
        (source(1.0), 16_000.5, {}, ce.InvalidAudioError, "sample_rate"),
        ((source(1.0) * 32767).astype(np.int16), 16_000, {}, ce.InvalidAudioError, "float"),
        (source(1.0), 16_000, {"seed": -1}, ce.InvalidParameterError, "seed"),
        (source(1.0), 16_000, {"voice": "alice"}, ce.InvalidParameterError, "Voice"),
    ],
)
def test_bad_conversions_are_typed_errors_before_any_work(tiny_engine, audio, rate, kwargs, error, message):
    with pytest.raises(error, match=message):
        tiny_engine.convert(audio, rate, **kwargs)
    with pytest.raises(error, match=message):
        tiny_engine.convert_stream(audio, rate, **kwargs)  # at the call, not at the first chunk
