"""S3Gen work of concurrent streams runs batched, and every stream still gets its own audio."""

from __future__ import annotations

import threading

import chatterbox_engine as ce
import numpy as np
import pytest
import torch
from chatterbox_engine.s3gen import SynthesisWindow
from chatterbox_engine.s3gen_batching import WindowBatcher


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


def render_concurrently(batcher: WindowBatcher, windows: list[SynthesisWindow]) -> list:
    results: list = [None] * len(windows)
    all_open = threading.Barrier(len(windows))

    def run(index: int) -> None:
        with batcher.stream():
            all_open.wait()  # as streams of one T3 batch: all open before the first window is due
            try:
                results[index] = batcher.render(windows[index])
            except Exception as error:  # kept to assert on
                results[index] = error

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(windows))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    return results


def test_batcher_groups_equal_shapes_and_keeps_each_result(s3gen, ref):
    batches = []
    batcher = WindowBatcher(s3gen, max_windows=8, gather_seconds=5.0, on_batch=batches.append)
    sizes = [10, 10, 14, 10, 14]
    results = render_concurrently(batcher, [window(ref, n, seed) for seed, n in enumerate(sizes)])
    for seed, (n, (wav, _)) in enumerate(zip(sizes, results, strict=True)):
        expected, _ = s3gen.synthesize([window(ref, n, seed)])[0]
        torch.testing.assert_close(wav, expected, rtol=0, atol=1e-5)
    # Every open stream handed its window in, so the worker ran two groups: the 10s and the 14s.
    assert sorted(stats.windows for stats in batches) == [2, 3]


def test_a_bad_window_fails_alone(s3gen, ref):
    batcher = WindowBatcher(s3gen, gather_seconds=5.0)
    bad = SynthesisWindow(torch.full((1, 10), 7000), ref, torch.Generator().manual_seed(0))
    good, failed = render_concurrently(batcher, [window(ref, 10, 1), bad])
    assert isinstance(failed, ValueError) and "speech tokens" in str(failed)
    torch.testing.assert_close(good[0], s3gen.synthesize([window(ref, 10, 1)])[0][0], rtol=0, atol=1e-5)


def test_a_failed_batch_falls_back_to_one_window_at_a_time(s3gen, ref, monkeypatch):
    """E.g. out of memory for the whole batch: each window still gets the audio it would get alone."""
    real_synthesize = type(s3gen).synthesize

    def fail_when_batched(self, windows, n_timesteps=None):
        if len(windows) > 1:
            for w in windows:  # fail after drawing, as a real failure deep inside the flow would
                torch.rand(3, generator=w.generator)
            raise RuntimeError("out of memory")
        return real_synthesize(self, windows, n_timesteps)

    monkeypatch.setattr(type(s3gen), "synthesize", fail_when_batched)
    batches = []
    batcher = WindowBatcher(s3gen, gather_seconds=5.0, on_batch=batches.append)
    results = render_concurrently(batcher, [window(ref, 10, seed) for seed in range(3)])
    for seed, (wav, _) in enumerate(results):
        expected, _ = real_synthesize(s3gen, [window(ref, 10, seed)])[0]
        assert torch.equal(wav, expected)


def test_concurrent_streams_share_s3gen_calls_and_keep_their_audio(tiny_engine):
    batched = ce.load("random:tiny", watermark=False)
    windows = []
    assert batched.enable_batching(max_requests=4, on_s3gen_batch=windows.append)
    batched._window_batcher.gather_seconds = 5.0  # the test machine may be slow to wake threads
    texts = ["The first stream speaks.", "A second stream, said at once.", "And a third one joins."]
    results: dict[int, np.ndarray] = {}

    def run(index: int) -> None:
        chunks = batched.generate_stream(texts[index], seed=index, chunk_tokens=8)
        results[index] = np.concatenate([chunk.audio for chunk in chunks])

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(texts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    for index, text in enumerate(texts):
        alone = np.concatenate(
            [c.audio for c in tiny_engine.generate_stream(text, seed=index, chunk_tokens=8)]
        )
        np.testing.assert_allclose(results[index], alone, atol=1e-5)
    assert max(stats.windows for stats in windows) > 1


def test_a_stream_closed_early_does_not_hold_up_the_others(tiny_engine):
    batched = ce.load("random:tiny", watermark=False)
    assert batched.enable_batching(max_requests=4)
    # A closed stream still counted as open would make every window of the other wait this long (a hang).
    batched._window_batcher.gather_seconds = 1000.0
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
