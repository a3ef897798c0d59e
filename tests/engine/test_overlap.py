"""S3Gen on its own thread while T3 decodes (`SchedulerConfig.overlap_s3gen`): the same tokens and audio as
the serial loop, streamed and whole, batched or alone; a failing window fails only its request; the worker is
joined with the loop; the heartbeat covers its calls; it runs the loop's thread count."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import threading
import time
import types
from collections.abc import Iterator
from contextlib import contextmanager

import chatterbox_engine as ce
import numpy as np
import pytest
import torch
from chatterbox_engine import engine_core
from chatterbox_engine.engine_core import SchedulerConfig, overlap_wins
from chatterbox_engine.voice import synthetic_reference

from .conftest import torch_threads

# Two pieces (the text front end packs sentences into pieces of up to 300 characters).
TEXT = " ".join(f"This is sentence number {i}, spoken by a tiny random model." for i in range(7))
WORKER = "engine-s3gen"


@pytest.fixture(scope="module")
def engine() -> ce.Engine:
    return ce.load("random:tiny", watermark=False)


@contextmanager
def core_of(engine: ce.Engine, **settings) -> Iterator:
    """The engine runs on a fresh loop of these scheduler settings until the block ends (then it is stopped)."""
    own = engine._core
    core = engine._core = engine._new_core(dataclasses.replace(SchedulerConfig(), **settings))
    try:
        yield core
    finally:
        core.stop(timeout_s=60)
        engine._core = own


@contextmanager
def s3gen_calls(engine: ce.Engine, monkeypatch, before=None) -> Iterator[list[tuple]]:
    """Every S3Gen call as (thread name, its intra-op threads, the tokens it renders); `before(windows)`
    runs first on the calling thread (to fail or hold a call)."""
    calls: list[tuple] = []
    synthesize, inference = engine.s3gen.synthesize, engine.s3gen.inference

    def logged_synthesize(windows, *args, **kwargs):
        calls.append(
            (threading.current_thread().name, torch.get_num_threads(), [w.tokens.tolist() for w in windows])
        )
        if before is not None:
            before(windows)
        return synthesize(windows, *args, **kwargs)

    def logged_inference(tokens, *args, **kwargs):
        calls.append((threading.current_thread().name, torch.get_num_threads(), [tokens.tolist()]))
        return inference(tokens, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(engine.s3gen, "synthesize", logged_synthesize)
        patch.setattr(engine.s3gen, "inference", logged_inference)
        yield calls


def stream(engine: ce.Engine, text: str = TEXT, **kwargs) -> tuple[np.ndarray, list[int]]:
    chunks = list(engine.generate_stream(text, chunk_tokens=8, max_new_tokens=40, **kwargs))
    assert chunks[-1].is_last
    return np.concatenate([c.audio for c in chunks]), [c.num_tokens for c in chunks]


def test_overlapped_streams_and_whole_utterances_equal_the_serial_loop(engine, monkeypatch):
    runs = {}
    for overlap in (True, False):
        with core_of(engine, overlap_s3gen=overlap), s3gen_calls(engine, monkeypatch) as calls:
            streamed = stream(engine, seed=5)
            whole = engine.generate(TEXT, seed=5, max_new_tokens=40)
        runs[overlap] = (streamed, whole, calls)
    (audio, covered), whole, calls = runs[True]
    (serial_audio, serial_covered), serial_whole, serial_calls = runs[False]
    # The same tokens in every S3Gen call, so the same audio, sample for sample.
    assert [tokens for _, _, tokens in calls] == [tokens for _, _, tokens in serial_calls]
    np.testing.assert_array_equal(audio, serial_audio)
    assert covered == serial_covered
    np.testing.assert_array_equal(whole.audio, serial_whole.audio)
    assert whole.num_tokens == serial_whole.num_tokens
    # Overlapped, the windows after the first ran on the worker; serial, everything on the loop.
    threads = [thread for thread, _, _ in calls]
    assert threads[0] == "engine-loop" and threads.count(WORKER) > 2
    assert {thread for thread, _, _ in serial_calls} == {"engine-loop"}


def test_the_next_sentence_decodes_while_the_last_one_renders(engine, monkeypatch):
    with core_of(engine, overlap_s3gen=False):
        serial = engine.generate(TEXT, seed=7, max_new_tokens=40)
    decoding_meanwhile = []
    with core_of(engine, overlap_s3gen=True) as core:
        inference = engine.s3gen.inference

        def first_sentence_waits_for_the_second(tokens, *args, **kwargs):
            if not decoding_meanwhile:  # hold the first sentence's render until the second one decodes
                deadline = time.monotonic() + 60
                while not core.batch.requests and time.monotonic() < deadline:
                    time.sleep(0.01)
                decoding_meanwhile.append(bool(core.batch.requests))
            return inference(tokens, *args, **kwargs)

        monkeypatch.setattr(engine.s3gen, "inference", first_sentence_waits_for_the_second)
        overlapped = engine.generate(TEXT, seed=7, max_new_tokens=40)
    assert decoding_meanwhile == [True]
    assert overlapped.num_tokens == serial.num_tokens
    np.testing.assert_array_equal(overlapped.audio, serial.audio)


def test_overlapped_concurrent_streams_equal_each_stream_alone(engine, monkeypatch):
    requests = [(TEXT, 1), ("A shorter line.", 2), ("Third stream, in step with the others.", 3)]
    assert len(engine.request(TEXT).text_pieces) == 2
    with core_of(engine, overlap_s3gen=False):
        alone = [stream(engine, text, seed=seed) for text, seed in requests]
    results: dict[int, tuple] = {}
    with core_of(engine, overlap_s3gen=True, max_requests=4, batch_s3gen=True, max_windows=4):
        threads = [
            threading.Thread(
                target=lambda i=i: results.__setitem__(i, stream(engine, requests[i][0], seed=requests[i][1]))
            )
            for i in range(len(requests))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    for index, (audio, covered) in enumerate(alone):
        assert results[index][1] == covered
        np.testing.assert_allclose(results[index][0], audio, atol=1e-5)  # shared S3Gen calls: rounding


def failing_and_healthy_streams(engine, other_voice) -> dict[str, object]:
    """Two streams at once: "failing" in other_voice (whose windows the test makes fail) and "healthy" in the
    default voice; each one's (audio, covered) or error."""
    outcomes: dict[str, object] = {}

    def run(name: str, **kwargs) -> None:
        try:
            outcomes[name] = stream(engine, **kwargs)
        except RuntimeError as error:
            outcomes[name] = error

    threads = [
        threading.Thread(target=run, args=("failing",), kwargs={"seed": 3, "voice": other_voice}),
        threading.Thread(target=run, args=("healthy",), kwargs={"seed": 4}),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return outcomes


def assert_only_the_failing_stream_failed(outcomes: dict[str, object], expected) -> None:
    assert isinstance(outcomes["failing"], RuntimeError) and "window failed" in str(outcomes["failing"])
    audio, covered = outcomes["healthy"]
    assert covered == expected[1]
    np.testing.assert_array_equal(audio, expected[0])


def test_a_window_failing_on_the_worker_fails_only_its_request(engine, monkeypatch):
    other_voice = engine.embed_voice(*synthetic_reference(3.0))
    other_prompt = other_voice.s3gen_ref.prompt_token.size(-1)
    assert other_prompt != engine.default_voice.s3gen_ref.prompt_token.size(-1)

    def fail_the_other_voice(windows):
        if threading.current_thread().name == WORKER and windows[0].ref.prompt_token.size(-1) == other_prompt:
            raise RuntimeError("window failed")

    with core_of(engine, overlap_s3gen=False):
        expected = stream(engine, seed=4)

    with (
        core_of(engine, overlap_s3gen=True, max_requests=4),
        s3gen_calls(engine, monkeypatch, before=fail_the_other_voice),
    ):
        outcomes = failing_and_healthy_streams(engine, other_voice)
    assert_only_the_failing_stream_failed(outcomes, expected)


def test_stop_joins_the_loop_and_its_s3gen_worker(engine):
    with core_of(engine, overlap_s3gen=True) as core:
        chunks = engine.generate_stream(TEXT, seed=1, chunk_tokens=8, max_new_tokens=200)
        next(chunks)
        loop, worker = core._thread, core._worker._thread
        assert loop.is_alive() and worker.is_alive()
        core.stop(timeout_s=60)
        assert not loop.is_alive() and not worker.is_alive()
        with pytest.raises(ce.EngineStopped):
            list(chunks)
        # A later request starts both again.
        assert engine.generate("Again.", seed=1, max_new_tokens=10).audio.size


def test_the_heartbeat_covers_a_render_on_the_worker(engine, monkeypatch):
    started, release = threading.Event(), threading.Event()

    def hold(windows):
        if threading.current_thread().name == WORKER and not release.is_set():
            started.set()
            release.wait(timeout=60)

    with core_of(engine, overlap_s3gen=True) as core, s3gen_calls(engine, monkeypatch, before=hold):
        done = threading.Thread(target=stream, args=(engine,), kwargs={"seed": 2})
        done.start()
        assert started.wait(timeout=60)
        first = core.busy_s
        time.sleep(0.05)
        assert core.busy_s > first > 0  # a hung window shows, though the loop itself may wait
        release.set()
        done.join(timeout=60)
        assert not done.is_alive()


def test_the_worker_runs_as_many_threads_as_the_loop(engine, monkeypatch):
    """Float results depend on the thread count, so every S3Gen call runs the engine's count, on the worker
    or the loop, decoding meanwhile or not: audio never depends on what else ran."""
    with (
        torch_threads(2),  # the engine's count is the building thread's
        core_of(engine, overlap_s3gen=True),
        s3gen_calls(engine, monkeypatch) as calls,
    ):
        stream(engine, "One sentence only, decoded in several windows.", seed=6)
    assert {thread for thread, _, _ in calls} == {"engine-loop", WORKER}
    assert {threads for _, threads, _ in calls} == {2}


def test_overlap_is_on_where_it_wins(engine, monkeypatch):
    monkeypatch.setattr(engine_core, "cpu_budget", lambda: 2)
    assert overlap_wins(torch.device("cpu")) and not overlap_wins(torch.device("cuda"))
    assert engine._new_core(SchedulerConfig()).overlap_s3gen
    assert not engine._new_core(SchedulerConfig(overlap_s3gen=False)).overlap_s3gen
    monkeypatch.setattr(engine_core, "cpu_budget", lambda: 1)
    assert not overlap_wins(torch.device("cpu"))
    assert not engine._new_core(SchedulerConfig()).overlap_s3gen


def test_a_second_stop_waits_for_a_render_still_on_the_worker(engine, monkeypatch):
    """A stop that timed out (Engine.close) leaves the worker inside torch; the next stop (atexit's) must
    wait for it, not return because the loop thread already let go of its requests."""
    started, release = threading.Event(), threading.Event()

    def hold(windows):
        if threading.current_thread().name == WORKER and not release.is_set():
            started.set()
            release.wait(timeout=60)

    with core_of(engine, overlap_s3gen=True) as core, s3gen_calls(engine, monkeypatch, before=hold) as calls:
        chunks = engine.generate_stream(TEXT, seed=1, chunk_tokens=8, max_new_tokens=60)
        next(chunks)
        assert started.wait(timeout=60)
        worker = core._worker._thread
        core.stop(timeout_s=0.2)  # runs out while the worker holds a window
        rendered = len(calls)
        threading.Timer(0.3, release.set).start()
        core.stop(timeout_s=60)
        assert not worker.is_alive()
        # Windows queued behind the held one belonged to the stopped stream: nobody hears them, none ran.
        assert len(calls) == rendered
        with pytest.raises(ce.EngineStopped):
            list(chunks)


@pytest.mark.parametrize("overlap", [False, True])
def test_a_window_that_cannot_be_built_fails_only_its_request(engine, monkeypatch, overlap):
    from chatterbox_engine import streaming

    other_voice = engine.embed_voice(*synthetic_reference(3.0))
    other_prompt = other_voice.s3gen_ref.prompt_token.size(-1)
    window = streaming.ChunkRenderer.window

    def failing_window(self, end):
        if self.ref.prompt_token.size(-1) == other_prompt and self.chunks_rendered >= 1:
            raise RuntimeError("window failed")
        return window(self, end)

    with core_of(engine, overlap_s3gen=False):
        expected = stream(engine, seed=4)

    monkeypatch.setattr(streaming.ChunkRenderer, "window", failing_window)
    with core_of(engine, overlap_s3gen=overlap, max_requests=4):
        outcomes = failing_and_healthy_streams(engine, other_voice)
    assert_only_the_failing_stream_failed(outcomes, expected)


def test_a_script_that_closes_with_a_render_on_the_worker_exits_cleanly():
    """Engine.close timing out while the worker is inside a long torch call, then the script exiting, must
    exit 0: interpreter exit waits for the worker, never kills it inside torch (abort, exit code 134)."""
    script = (
        f"text = {TEXT!r}\n"
        + """
import dataclasses, threading, time, torch
import chatterbox_engine as ce
from chatterbox_engine.engine_core import SchedulerConfig
engine = ce.load("random:tiny", watermark=False)
engine._core = engine._new_core(dataclasses.replace(SchedulerConfig(), overlap_s3gen=True))
synthesize = engine.s3gen.synthesize
def slow(*args, **kwargs):
    if threading.current_thread().name == "engine-s3gen":
        a = torch.randn(1000, 1000)
        end = time.monotonic() + 3
        while time.monotonic() < end:
            a @ a  # a long torch call, the GIL released inside
    return synthesize(*args, **kwargs)
engine.s3gen.synthesize = slow
chunks = engine.generate_stream(text, seed=1, chunk_tokens=8, max_new_tokens=60)
next(chunks)
time.sleep(0.3)
engine.close(timeout_s=0.3)
"""
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stderr[-2000:]


def test_enable_batching_keeps_the_configured_overlap_unless_told(engine):
    own = engine._core
    try:
        engine._core = engine._new_core(SchedulerConfig(overlap_s3gen=False))
        assert engine.enable_batching(max_requests=2)
        assert engine._core.config.overlap_s3gen is False and not engine._core.overlap_s3gen
        assert engine.enable_batching(max_requests=2, overlap_s3gen=True)
        assert engine._core.overlap_s3gen
    finally:
        engine._core.stop(timeout_s=60)
        engine._core = own


def test_overlap_on_a_gpu_is_refused_clearly(engine):
    on_gpu = types.SimpleNamespace(
        speech_head=types.SimpleNamespace(weight=torch.empty(0, device="meta")), cfg=engine.t3.cfg
    )
    with pytest.raises(ce.InvalidParameterError, match="overlap_s3gen is supported on CPU only"):
        engine_core.EngineCore(
            on_gpu,
            engine.s3gen,
            finish_audio=np.asarray,
            tail_tokens=[],
            config=SchedulerConfig(overlap_s3gen=True),
        )
