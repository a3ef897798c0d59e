"""CPU settings (`runtime.py`): thread budget from a pod's CPU quota, and per-stage precision."""

from __future__ import annotations

import os

import chatterbox_engine as ce
import numpy as np
import pytest
import torch
from chatterbox_engine import runtime
from chatterbox_engine.runtime import StageDtypes, cpu_budget, limit_threads_to_cpu_budget, stage_dtypes

from .conftest import torch_threads


def test_openmp_waits_passively_unless_the_environment_chose() -> None:
    assert os.environ["OMP_WAIT_POLICY"]  # set before torch loaded, by importing chatterbox_engine


@pytest.mark.parametrize(
    ("cpu_max", "expected"),
    [("max 100000\n", None), ("150000 100000\n", 2), ("50000 100000\n", 1), ("100000000 100000\n", None)],
)
def test_cpu_budget_is_the_quota_rounded_up_within_the_affinity(tmp_path, cpu_max, expected) -> None:
    available = len(os.sched_getaffinity(0))
    (tmp_path / "cpu.max").write_text(cpu_max)
    assert cpu_budget(tmp_path / "cpu.max") == (available if expected is None else min(expected, available))
    assert cpu_budget(tmp_path / "missing") == available


def test_threads_are_lowered_to_the_budget_never_raised(monkeypatch) -> None:
    with torch_threads(1):
        monkeypatch.setattr(runtime, "cpu_budget", lambda: 4)
        assert limit_threads_to_cpu_budget() == 1
        torch.set_num_threads(3)
        monkeypatch.setattr(runtime, "cpu_budget", lambda: 2)
        assert limit_threads_to_cpu_budget() == 2


def test_the_engine_loop_runs_with_the_threads_counted_where_the_engine_was_built(monkeypatch) -> None:
    """Under OpenMP the count is per OS thread: the loop thread sets its own, whatever another thread set
    later (it used to start with the last count set anywhere)."""
    with torch_threads(1):
        engine = ce.load("random:tiny", watermark=False)
        counts = []
        engine.enable_batching(on_step=lambda stats: counts.append(torch.get_num_threads()))
        torch.set_num_threads(2)  # e.g. another engine's or a test's choice, after this one was built
        engine.generate("Hello there.", seed=1, max_new_tokens=5)
        assert counts and set(counts) == {1}
        monkeypatch.setattr(runtime, "cpu_budget", lambda: 1)
        engine.enable_batching()  # a loop built now counts the budget, not this thread's 2
        assert engine._core.threads == 1


def test_decode_steps_run_on_the_decode_threads_and_the_rest_on_the_loops(monkeypatch) -> None:
    with torch_threads(2):
        engine = ce.load("random:tiny", watermark=False, dtype="float32")
        core = engine._core
        assert (core.threads, core.decode_threads) == (2, runtime.decode_threads("cpu", 2, 64)) == (2, 1)
        seen = {"prefill": set(), "decode": set()}
        for name in seen:
            method = getattr(core.batch, name)
            monkeypatch.setattr(
                core.batch, name, lambda *a, m=method, n=name: seen[n].add(torch.get_num_threads()) or m(*a)
            )
        audio = engine.generate("Hello there.", seed=1, max_new_tokens=20).audio
        assert seen == {"prefill": {2}, "decode": {1}}
        core.decode_threads = 2  # as before: the same tokens, audio within float rounding
        monkeypatch.undo()
        same = engine.generate("Hello there.", seed=1, max_new_tokens=20).audio
        assert same.shape == audio.shape
        np.testing.assert_allclose(same, audio, atol=1e-4)
    assert runtime.decode_threads("cpu", 2, 1024) == 2  # Turbo, Llama: as many as the rest
    assert runtime.decode_threads("cuda", 4, 64) == 4


def test_stage_dtypes_use_half_precision_on_a_cpu_only_where_it_pays() -> None:
    bf16, fp16, fp32 = torch.bfloat16, torch.float16, torch.float32
    assert stage_dtypes("cpu", fp32) == StageDtypes(fp32, fp32)
    assert stage_dtypes("cpu", bf16, native=True) == StageDtypes(bf16, bf16)  # T3 multiplies prepacked bf16
    assert stage_dtypes("cpu", bf16, native=False) == StageDtypes(fp32, fp32)
    assert stage_dtypes("cpu", fp16, native=True) == StageDtypes(fp32, fp16)  # no prepacked fp16 products
    assert stage_dtypes("cuda", bf16, native=False) == StageDtypes(bf16, bf16)
    assert stage_dtypes("cpu", bf16, native=False).describe() == {"t3": "float32", "s3gen": "float32"}


def test_bf16_engine_on_a_cpu_without_bf16_math_runs_in_float32(monkeypatch) -> None:
    monkeypatch.setattr(runtime, "cpu_computes_natively", lambda dtype: False)
    engine = ce.load("random:tiny", watermark=False, dtype="bfloat16")
    assert engine.t3.speech_head.weight.dtype == torch.float32
    assert engine.s3gen.dtype == torch.float32
    assert engine.info["dtype"] == "bfloat16"
    assert engine.info["stage_dtypes"] == {"t3": "float32", "s3gen": "float32"}
    audio = engine.generate("Hello there.", seed=1, max_new_tokens=20).audio
    assert audio.dtype == np.float32 and audio.size > 0 and np.isfinite(audio).all()
    streamed = np.concatenate(
        [c.audio for c in engine.generate_stream("Hello there.", seed=1, max_new_tokens=20)]
    )
    assert streamed.size == audio.size
