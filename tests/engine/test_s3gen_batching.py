"""S3Gen work of concurrent streams runs batched in the engine's loop, and every stream still gets its own
audio."""

from __future__ import annotations

import threading

import chatterbox_engine as ce
import numpy as np
import pytest
import torch
from chatterbox_engine.s3gen import SynthesisWindow


@pytest.fixture(scope="module")
def s3gen(tiny_engine):
    return tiny_engine.s3gen


@pytest.fixture(scope="module")
def ref(tiny_engine):
    return tiny_engine.default_voice.s3gen_ref


def window(ref, tokens: int, seed: int, source=None) -> SynthesisWindow:
    codes = torch.randint(0, 6561, (1, tokens), generator=torch.Generator().manual_seed(1000 + seed))
    return SynthesisWindow(codes, ref, torch.Generator().manual_seed(seed), source)


def test_batched_windows_equal_windows_rendered_alone(s3gen, ref):
    carried = torch.rand(1, 1, 3000, generator=torch.Generator().manual_seed(5)) * 0.1
    alone = [
        s3gen.synthesize([window(ref, 12, seed, carried if seed == 2 else None)])[0] for seed in range(3)
    ]
    batched = s3gen.synthesize([window(ref, 12, seed, carried if seed == 2 else None) for seed in range(3)])
    for (wav, excitation), (wav_b, excitation_b) in zip(alone, batched, strict=True):
        assert wav_b.shape == wav.shape == (1, 12 * 960)
        torch.testing.assert_close(wav_b, wav, rtol=0, atol=1e-5)
        torch.testing.assert_close(excitation_b, excitation, rtol=0, atol=1e-6)
    # The carried-over excitation starts the third window's source, batched as alone.
    torch.testing.assert_close(batched[2][1][..., :3000], carried)


def test_single_window_is_the_one_shot_path(s3gen, ref):
    """`synthesize` of one window is exactly flow_inference + hift_inference with the same generator."""
    w = window(ref, 9, seed=7)
    wav, excitation = s3gen.synthesize([w])[0]
    generator = torch.Generator().manual_seed(7)
    mel = s3gen.flow_inference(w.tokens, ref, generator)
    expected_wav, expected_excitation = s3gen.hift_inference(mel, generator)
    assert torch.equal(wav, expected_wav) and torch.equal(excitation, expected_excitation)


def test_windows_of_different_shapes_are_refused_together(s3gen, ref):
    with pytest.raises(ValueError, match="share one shape"):
        s3gen.synthesize([window(ref, 10, 0), window(ref, 11, 1)])


def stream_concurrently(engine, texts: list[str], chunk_tokens: int | None = 8) -> dict[int, np.ndarray]:
    results: dict[int, np.ndarray] = {}

    def run(index: int) -> None:
        chunks = engine.generate_stream(texts[index], seed=index, chunk_tokens=chunk_tokens)
        results[index] = np.concatenate([chunk.audio for chunk in chunks])

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(texts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not any(thread.is_alive() for thread in threads)
    return results


def streamed_alone(engine, text: str, seed: int, chunk_tokens: int | None = 8) -> np.ndarray:
    return np.concatenate(
        [c.audio for c in engine.generate_stream(text, seed=seed, chunk_tokens=chunk_tokens)]
    )


TEXTS = ["The first stream speaks.", "A second stream, said at once.", "And a third one joins."]


def test_concurrent_streams_share_s3gen_calls_and_keep_their_audio(tiny_engine):
    batched = ce.load("random:tiny", watermark=False)
    windows = []
    assert batched.enable_batching(max_requests=4, on_s3gen_batch=windows.append)
    results = stream_concurrently(batched, TEXTS)
    for index, text in enumerate(TEXTS):
        np.testing.assert_allclose(results[index], streamed_alone(tiny_engine, text, index), atol=1e-5)
    # Streams started a step or two apart still meet: a due window waits a few steps for its peers.
    assert max(stats.windows for stats in windows) > 1


@pytest.mark.parametrize("plan", ["realtime", "throughput"])
def test_streams_in_step_share_s3gen_calls_under_either_chunk_plan(plan):
    """Every stream gets the engine's plan, so streams decoded in step have windows of equal shape."""
    batched = ce.load("random:tiny", watermark=False)
    windows = []
    assert batched.enable_batching(max_requests=4, on_s3gen_batch=windows.append)
    batched.use_chunk_plan(plan)
    texts = ["The first sentence of three streams. And their second one, in step."] * 3  # different seeds
    results = stream_concurrently(batched, texts, chunk_tokens=None)
    assert max(stats.windows for stats in windows) == len(texts)
    for index, text in enumerate(texts):
        np.testing.assert_allclose(results[index], streamed_alone(batched, text, index, None), atol=1e-5)


def test_a_failed_batch_falls_back_to_one_window_at_a_time(tiny_engine, monkeypatch):
    """E.g. out of memory for the whole batch: each window still gets the audio it would get alone."""
    batched = ce.load("random:tiny", watermark=False)
    assert batched.enable_batching(max_requests=4)
    real_synthesize = type(batched.s3gen).synthesize

    def fail_when_batched(self, windows, n_timesteps=None):
        if len(windows) > 1:
            for w in windows:  # fail after drawing, as a real failure deep inside the flow would
                torch.rand(3, generator=w.generator)
            raise RuntimeError("out of memory")
        return real_synthesize(self, windows, n_timesteps)

    monkeypatch.setattr(type(batched.s3gen), "synthesize", fail_when_batched)
    results = stream_concurrently(batched, TEXTS)
    monkeypatch.undo()
    for index, text in enumerate(TEXTS):
        np.testing.assert_allclose(results[index], streamed_alone(tiny_engine, text, index), atol=1e-5)


def test_a_stream_closed_early_does_not_hold_up_the_others(tiny_engine):
    batched = ce.load("random:tiny", watermark=False)
    assert batched.enable_batching(max_requests=4)
    quitter = batched.generate_stream("This one stops listening early.", seed=1, chunk_tokens=8)
    next(quitter)
    stayer: list = []
    thread = threading.Thread(
        target=lambda: stayer.extend(
            batched.generate_stream("This one listens to the end.", seed=2, chunk_tokens=8)
        ),
        daemon=True,  # a hang fails the test instead of holding up the whole run
    )
    quitter.close()
    thread.start()
    thread.join(timeout=120)
    assert not thread.is_alive() and stayer[-1].is_last
    alone = list(tiny_engine.generate_stream("This one listens to the end.", seed=2, chunk_tokens=8))
    np.testing.assert_allclose(
        np.concatenate([c.audio for c in stayer]), np.concatenate([c.audio for c in alone]), atol=1e-5
    )
