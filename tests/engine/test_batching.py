"""Continuous batching in the engine's loop: every request gets exactly the tokens it gets when decoded
alone (a lone `decode_speech_tokens`, a batch of one)."""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import queue
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

import chatterbox_engine as ce
import pytest
import torch
from chatterbox_engine.cuda_graphs import bucket_for
from chatterbox_engine.decoding import DecodeBatch, decode_speech_tokens, new_request
from chatterbox_engine.engine_core import AudioChunk, EngineCore, Finished, Job, SchedulerConfig
from chatterbox_engine.request import GenerationRequest
from chatterbox_engine.sampling import SamplingParams

# (text tokens, sampling params, seed, token budget): different lengths, CFG on and off, different knobs.
REQUESTS = [
    ([255, *range(20, 32), 0], SamplingParams(), 1, 40),
    ([255, *range(40, 47), 0], SamplingParams(cfg_weight=0.0, temperature=1.1), 2, 25),
    ([255, *range(50, 75), 0], SamplingParams(top_p=0.9, min_p=0.1, repetition_penalty=1.5), 3, 60),
    ([255, 60, 61, 0], SamplingParams(cfg_weight=1.0, temperature=0.5), 4, 12),
    ([255, *range(100, 118), 0], SamplingParams(repetition_penalty=1.0, top_p=0.8), 5, 33),
]


@pytest.fixture(scope="module")
def t3(tiny_engine):
    return tiny_engine.t3


@pytest.fixture(scope="module")
def voice(tiny_engine):
    return tiny_engine.default_voice


def conditioning(t3, voice):
    with torch.inference_mode():
        return t3.embed_conditioning(voice.speaker_emb, voice.prompt_tokens, torch.tensor([0.5]))


def alone(t3, voice, text, params, seed, budget) -> list[int]:
    generator = torch.Generator().manual_seed(seed)
    return list(
        decode_speech_tokens(t3, conditioning(t3, voice), torch.tensor([text]), params, generator, budget)
    )


def token_core(engine, *, on_step=None, **config) -> EngineCore:
    """The engine's loop over engine's models, for jobs that stop at speech tokens."""
    return EngineCore(
        engine.t3, engine.s3gen, finish_audio=lambda audio: audio, tail_tokens=[],
        config=SchedulerConfig(**config), on_step=on_step,
    )  # fmt: skip


def submit(core, voice, text, params, seed, budget, device="cpu"):
    """Submitted now; iterating gives the request's speech tokens."""
    generator = torch.Generator(device).manual_seed(seed)
    text_tokens = torch.tensor([text], device=device)
    request = GenerationRequest("", (text_tokens,), voice, "en", params, 0.5, seed, budget)
    job = Job(voice.s3gen_ref, generator, generation=request, t3_generator=generator, speech_tokens_only=True)
    return core.outputs(job)


@contextmanager
def joining_together(core):
    """Requests submitted inside this block are admitted at the same step: the loop thread takes the
    submitted requests under this lock."""
    with core._wake:
        yield


@contextmanager
def prefill_passes(t3):
    """Rows of every prefill pass (decode steps feed one position per row) while inside."""
    rows: list[int] = []

    def count(module, args, output) -> None:
        if args[0].shape[1] > 1:
            rows.append(args[0].shape[0])

    hook = t3.tfmr.register_forward_hook(count)
    try:
        yield rows
    finally:
        hook.remove()


def test_batched_tokens_equal_lone_decoding_with_staggered_admission(tiny_engine, t3, voice):
    expected = [alone(t3, voice, *request) for request in REQUESTS]
    steps = []
    core = token_core(tiny_engine, max_requests=3, on_step=steps.append)
    results: dict[int, list[int]] = {}

    def consume(index: int, delay: float) -> None:
        time.sleep(delay)  # later requests join a batch that is already decoding
        results[index] = list(submit(core, voice, *REQUESTS[index]))

    threads = [threading.Thread(target=consume, args=(i, 0.02 * i)) for i in range(len(REQUESTS))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert [results[i] for i in range(len(REQUESTS))] == expected
    assert max(stats.requests for stats in steps) > 1  # they really shared steps
    assert max(stats.requests for stats in steps) <= 3  # and the batch limit held


def test_requests_admitted_together_share_prefill_passes_and_equal_lone_decoding(tiny_engine, t3, voice):
    # Far longer than the others: its padding would waste too much, so it gets its own pass.
    long_request = ([255, *range(200, 270), 0], SamplingParams(), 6, 20)
    requests = [*REQUESTS, long_request]
    expected = [alone(t3, voice, *request) for request in requests]
    core = token_core(tiny_engine, max_requests=len(requests), prefill_length_slack=32)
    with prefill_passes(t3) as passes:
        with joining_together(core):
            streams = [submit(core, voice, *request) for request in requests]
        results = [list(stream) for stream in streams]
    assert results == expected
    # REQUESTS' text lengths differ by less than the slack: one pass over their 9 rows (one without CFG).
    assert sorted(passes) == [2, 9]


def test_prefill_groups_split_where_lengths_differ_by_more_than_the_slack(tiny_engine, t3, voice):
    # Text lengths 4, 9, 14, 20, 27 (REQUESTS' order 3, 1, 0, 4, 2): 8 positions split them in three.
    expected = [alone(t3, voice, *request) for request in REQUESTS]
    core = token_core(tiny_engine, max_requests=len(REQUESTS), prefill_length_slack=8)
    with prefill_passes(t3) as passes:
        with joining_together(core):
            streams = [submit(core, voice, *request) for request in REQUESTS]
        assert [list(stream) for stream in streams] == expected
    assert passes == [3, 4, 2]


def test_batched_prefill_off_gives_the_same_tokens_one_pass_per_request(tiny_engine, t3, voice):
    expected = [alone(t3, voice, *request) for request in REQUESTS]
    core = token_core(tiny_engine, max_requests=len(REQUESTS), batched_prefill=False)
    with prefill_passes(t3) as passes:
        with joining_together(core):
            streams = [submit(core, voice, *request) for request in REQUESTS]
        assert [list(stream) for stream in streams] == expected
    assert sorted(passes) == [1, 2, 2, 2, 2]


def test_cancelled_requests_in_a_prefill_group_leave_the_others_untouched(tiny_engine, t3, voice):
    kept = [REQUESTS[0], REQUESTS[2], REQUESTS[1]]
    core = token_core(tiny_engine, max_requests=5, prefill_length_slack=32)
    with prefill_passes(t3) as passes:
        with joining_together(core):
            first = submit(core, voice, *kept[0])
            # Admitted with the group, then closed after its first token: its rows sit between others'.
            quitter = submit(core, voice, [255, *range(30, 45), 0], SamplingParams(), 9, 500)
            second = submit(core, voice, *kept[1])
            # Closed before it was ever admitted: never prefilled.
            never = submit(core, voice, [255, *range(30, 40), 0], SamplingParams(), 10, 500)
            never.close()
            third = submit(core, voice, *kept[2])
        next(quitter)
        quitter.close()
        results = [list(first), list(second), list(third)]
    assert results == [alone(t3, voice, *request) for request in kept]
    assert list(never) == []
    assert passes == [7]  # one pass: 3 CFG pairs and one single row


def test_closed_stream_leaves_the_batch_and_others_continue(tiny_engine, t3, voice):
    core = token_core(tiny_engine, max_requests=2)
    keeper = submit(core, voice, *REQUESTS[0])
    # A stop-free budget so only closing can end it early.
    quitter = submit(core, voice, [255, *range(20, 32), 0], SamplingParams(), 9, 500)
    next(quitter)
    quitter.close()
    assert list(quitter) == []
    assert list(keeper) == alone(t3, voice, *REQUESTS[0])
    deadline = time.monotonic() + 10
    while core.active_requests and time.monotonic() < deadline:
        time.sleep(0.01)
    assert core.active_requests == 0


def test_requests_longer_than_the_cache_grow_it(tiny_engine, t3, voice):
    core = token_core(tiny_engine, max_requests=2)
    long_text = [255, *range(20, 300), 0]  # prefill plus budget beyond the initial 256 positions
    request = (long_text, SamplingParams(), 7, 40)
    assert list(submit(core, voice, *request)) == alone(t3, voice, *request)


def test_cache_grows_with_the_tokens_decoded_not_the_budget_and_tokens_stay_the_same(t3, voice):
    """On CPU the shared cache holds the rows and positions reached so far, not every row's whole token
    budget (GPU's CUDA graphs reserve that upfront): the same tokens either way."""
    endless = copy.deepcopy(t3)
    with torch.no_grad():
        endless.speech_head.weight[endless.cfg.stop_speech_token] = 0.0  # decodes its whole budget
    text, budget = torch.tensor([[255, *range(20, 40), 0]]), 300  # prefill + budget past 256 positions
    cond = conditioning(endless, voice)
    tokens, shapes = {}, {}
    for upfront in (False, True):
        batch = DecodeBatch(endless, max_rows=16)
        batch._graphs = upfront  # reserve as under CUDA graphs
        generator = torch.Generator().manual_seed(3)
        with torch.inference_mode():
            request = new_request(endless, cond, text, SamplingParams(), generator, budget)
            batch.prefill([request])
            shapes[upfront] = [tuple(batch._cache.keys.shape[1::2])]  # (rows, positions)
            tokens[upfront] = []
            while not (outcome := batch.sample()[0]).finished:
                tokens[upfront].append(outcome.token)
                batch.decode()
        shapes[upfront].append(tuple(batch._cache.keys.shape[1::2]))
    assert tokens[False] == tokens[True] and len(tokens[False]) == budget - 1  # + the last, finishing one
    assert shapes[False] == [(2, 256), (2, 512)]  # one CFG pair's 2 rows; grown once, past 256 positions
    assert shapes[True] == [(16, 512), (16, 512)]  # every row, prefill + budget, at once


def test_padded_prefill_then_batched_step_equal_lone_forward_per_row(t3, voice):
    """Rows of different lengths prefilled in one right-padded pass, then one shared step (eager here,
    replayed from CUDA graphs on GPU): each row computes what its lone forward does. The padding garbage in
    the shorter row's cache is masked out and overwritten by its step."""
    texts = [[255, *range(20, 30), 0], [255, *range(40, 44), 0]]
    cond = conditioning(t3, voice)
    prefills = [t3.prefill_embeds(cond, torch.tensor([text]), cfg_rows=True) for text in texts]
    lengths = [prefill.shape[1] for prefill in prefills]
    padded = torch.cat([torch.nn.functional.pad(p, (0, 0, 0, max(lengths) - p.shape[1])) for p in prefills])
    cache = t3.new_cache(4, 128)
    lone_prefill, lone_step, step_embeds = [], [], []
    with torch.inference_mode():
        row_lengths = torch.tensor([lengths[0]] * 2 + [lengths[1]] * 2)
        everywhere = torch.arange(max(lengths)).expand(4, -1)
        batched_prefill = t3(padded, everywhere, cache, max(lengths), logits_at=row_lengths - 1)
        for row, prefill in enumerate(prefills):
            own = t3.new_cache(2, 128)
            length = prefill.shape[1]
            lone_prefill.append(t3(prefill, torch.arange(length).expand(2, -1), own, length)[:, -1])
            embeds = t3.embed_speech(torch.tensor([[100 + row]]), 1).expand(2, -1, -1)
            lone_step.append(t3(embeds, torch.full((2, 1), length), own, length + 1)[:, -1])
            step_embeds.append(embeds)
        batched_step = t3(torch.cat(step_embeds), row_lengths[:, None], cache, max(lengths) + 1)[:, -1]
    torch.testing.assert_close(batched_prefill, torch.cat(lone_prefill), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(batched_step, torch.cat(lone_step), rtol=1e-5, atol=1e-5)


def test_bucket_sizes():
    assert [bucket_for(rows, 16) for rows in (1, 2, 3, 5, 9, 16)] == [1, 2, 4, 8, 16, 16]
    assert bucket_for(7, 6) == 6


def test_engine_with_batching_gives_the_same_audio_under_concurrency(tiny_engine):
    import chatterbox_engine as ce
    import numpy as np

    batched = ce.load("random:tiny", watermark=False)
    steps = []
    assert batched.enable_batching(max_requests=4, on_step=steps.append)
    calls = [
        ("Hello there. How are you?", {"seed": 1}),
        ("A second, longer sentence to speak.", {"seed": 2, "cfg_weight": 0.0}),
        ("Third.", {"seed": 3, "temperature": 0.6, "top_p": 0.9}),
        ("Fourth one streams.", {"seed": 4, "exaggeration": 1.0}),
    ]
    results: dict[int, np.ndarray] = {}

    def run(index: int) -> None:
        text, kwargs = calls[index]
        if index == 3:
            chunks = list(batched.generate_stream(text, **kwargs))
            results[index] = np.concatenate([chunk.audio for chunk in chunks])
        else:
            results[index] = batched.generate(text, **kwargs).audio

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    for index, (text, kwargs) in enumerate(calls):
        if index == 3:
            expected = np.concatenate([c.audio for c in tiny_engine.generate_stream(text, **kwargs)])
        else:
            expected = tiny_engine.generate(text, **kwargs).audio
        np.testing.assert_allclose(results[index], expected, atol=1e-5)
    assert max(stats.requests for stats in steps) > 1


def test_turbo_batched_tokens_equal_lone_decoding():
    """Turbo (GPT-2 T3, one row per request, its own processor order) decodes in the same loop."""
    import chatterbox_engine as ce

    turbo = ce.load("random:tiny-turbo", watermark=False)
    t3, voice = turbo.t3, turbo.default_voice
    requests = [  # Turbo text has no start/stop tokens
        (list(range(300, 312)), SamplingParams(top_p=0.95), 1, 30),
        (list(range(400, 405)), SamplingParams(temperature=1.1, top_p=0.95), 2, 20),
        (list(range(500, 530)), SamplingParams(repetition_penalty=1.5, top_p=0.8), 3, 45),
    ]
    expected = [alone(t3, voice, *request) for request in requests]
    core = token_core(turbo, max_requests=len(requests), prefill_length_slack=32)
    with prefill_passes(t3) as passes:
        with joining_together(core):
            streams = [submit(core, voice, *request) for request in requests]
        assert [list(stream) for stream in streams] == expected
    assert passes == [3]  # one row each, prefilled together


def test_a_request_cancelled_as_another_arrives_frees_its_rows_first(tiny_engine, t3, voice):
    """A batch of one request: the next takes the rows the cancelled one leaves at the same step."""
    core = token_core(tiny_engine, max_requests=1)
    quitter = submit(core, voice, [255, *range(20, 32), 0], SamplingParams(), 9, 500)
    next(quitter)
    with joining_together(core):
        quitter.close()
        keeper = submit(core, voice, *REQUESTS[1])
    assert list(keeper) == alone(t3, voice, *REQUESTS[1])


def test_a_request_whose_sampling_fails_fails_alone_and_its_batch_decodes_on(tiny_engine, t3, voice):
    """A voice of NaNs (past validation) gives NaN logits: that request fails with its error; the request
    sharing its prefill pass and decode steps gets the tokens it gets alone, and the loop goes on."""
    broken_voice = dataclasses.replace(voice, speaker_emb=torch.full_like(voice.speaker_emb, float("nan")))
    core = token_core(tiny_engine, max_requests=2)
    with prefill_passes(t3) as passes:
        with joining_together(core):
            keeper = submit(core, voice, *REQUESTS[0])
            broken = submit(core, broken_voice, *REQUESTS[0])
        with pytest.raises(RuntimeError, match="nan"):
            list(broken)
        assert list(keeper) == alone(t3, voice, *REQUESTS[0])
    assert passes[0] == 4  # both CFG pairs in one pass
    assert list(submit(core, voice, *REQUESTS[1])) == alone(t3, voice, *REQUESTS[1])


def test_a_failed_prefill_pass_retries_each_request_alone(tiny_engine, t3, voice, monkeypatch):
    """Only the request that fails by itself fails; the others of its pass decode as alone."""
    core = token_core(tiny_engine, max_requests=3)
    prefill = core.batch.prefill
    poisoned_budget = 17  # marks the request whose prefill fails

    def failing_prefill(group):
        if any(request.max_new_tokens == poisoned_budget for request in group):
            raise RuntimeError("prefill failed")
        prefill(group)

    monkeypatch.setattr(core.batch, "prefill", failing_prefill)
    text, params, seed, _ = REQUESTS[0]
    with joining_together(core):
        first = submit(core, voice, *REQUESTS[0])
        poisoned = submit(core, voice, text, params, seed, poisoned_budget)
        second = submit(core, voice, text, params, 7, 30)
    with pytest.raises(RuntimeError, match="prefill failed"):
        list(poisoned)
    assert list(first) == alone(t3, voice, *REQUESTS[0])
    assert list(second) == alone(t3, voice, text, params, 7, 30)


def test_stop_ends_running_requests_joins_the_loop_and_a_later_request_starts_it_again(
    tiny_engine, t3, voice
):
    core = token_core(tiny_engine, max_requests=2)
    running = submit(core, voice, [255, *range(20, 32), 0], SamplingParams(), 9, 500)
    next(running)
    thread = core._thread
    core.stop(timeout_s=60)
    assert not thread.is_alive()
    with pytest.raises(ce.EngineStopped, match="shutting down"):
        list(running)
    assert core.active_requests == 0
    assert list(submit(core, voice, *REQUESTS[1])) == alone(t3, voice, *REQUESTS[1])
    core.stop(timeout_s=60)


class _LoopBug(BaseException):
    """Escapes the loop's per-step handling, as only a bug in the loop itself would."""


def test_a_loop_that_dies_fails_its_requests_and_every_later_one_at_once(tiny_engine, voice, monkeypatch):
    core = token_core(tiny_engine, max_requests=2)
    running = submit(core, voice, [255, *range(20, 32), 0], SamplingParams(), 9, 500)
    next(running)

    def broken_step():
        raise _LoopBug("bug")

    monkeypatch.setattr(core, "step", broken_step)
    with pytest.raises(ce.EngineStopped, match="died"):
        list(running)
    assert not core.alive
    with pytest.raises(ce.EngineStopped, match="died"):
        list(submit(core, voice, *REQUESTS[1]))


class BrokenSink:
    """An output sink whose reader goes away: it takes items until the first of type `breaks_at`, then
    raises on that and every later one (as a closed event loop's call_soon_threadsafe does)."""

    def __init__(self, breaks_at: type) -> None:
        self.breaks_at, self.items, self.broken = breaks_at, [], False

    def __call__(self, item: object) -> None:
        if self.broken or isinstance(item, self.breaks_at):
            self.broken = True
            raise RuntimeError("the reader is gone")
        self.items.append(item)


def wait_until_idle(core: EngineCore) -> None:
    deadline = time.monotonic() + 30
    while (core.requests or core._inbox) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not (core.requests or core._inbox)


@pytest.mark.parametrize("breaks_at", [int, Finished], ids=["token", "finished"])
def test_a_sink_that_raises_ends_only_its_own_request(tiny_engine, t3, voice, breaks_at, caplog):
    """Tokens (`_sampled`) or the last item (`_end`): the failing request ends and is logged, the request
    decoding beside it gets the tokens it gets alone, and the loop goes on."""
    core = token_core(tiny_engine, max_requests=2)
    text, params, seed, _ = REQUESTS[0]
    short = (text, params, 11, 8)  # ends while the keeper still decodes
    sink = BrokenSink(breaks_at)
    generator = torch.Generator().manual_seed(short[2])
    request = GenerationRequest("", (torch.tensor([text]),), voice, "en", params, 0.5, short[2], short[3])
    with caplog.at_level(logging.ERROR, logger="chatterbox_engine.engine_core"):
        with joining_together(core):
            keeper = submit(core, voice, *REQUESTS[0])
            core.submit(Job(voice.s3gen_ref, generator, generation=request, t3_generator=generator,
                            speech_tokens_only=True), sink)  # fmt: skip
        assert list(keeper) == alone(t3, voice, *REQUESTS[0])
    assert sink.broken
    assert sink.items == ([] if breaks_at is int else alone(t3, voice, *short))
    assert "output sink failed" in caplog.text
    wait_until_idle(core)
    assert core.alive
    assert list(submit(core, voice, *REQUESTS[1])) == alone(t3, voice, *REQUESTS[1])
    core.stop(timeout_s=60)


def test_a_streamed_chunk_sink_that_raises_ends_only_its_own_stream(tiny_engine):
    """Streamed chunks (`_take`): the other stream rendering in the same loop keeps every chunk."""
    text = "A sentence long enough for a few streamed chunks."
    expected = [chunk.audio for chunk in tiny_engine.generate_stream(text, seed=5)]
    broken, keeper = BrokenSink(AudioChunk), queue.SimpleQueue()
    with joining_together(tiny_engine._core):
        tiny_engine.start(tiny_engine.speech_job(tiny_engine.request(text, seed=6)), broken)
        tiny_engine.start(tiny_engine.speech_job(tiny_engine.request(text, seed=5)), keeper.put)
    items = [keeper.get(timeout=120)]
    while not isinstance(items[-1], (Finished, BaseException)):
        items.append(keeper.get(timeout=120))
    assert isinstance(items[-1], Finished), items[-1]
    assert len(items) - 1 == len(expected)
    for chunk, audio in zip(items[:-1], expected, strict=True):
        assert torch.equal(torch.from_numpy(chunk.audio), torch.from_numpy(audio))
    assert broken.broken and broken.items == []
    assert tiny_engine.loop_alive


def test_enable_batching_refuses_while_requests_run_and_joins_the_idle_loop_it_replaces():
    """An operator's setup step never cuts a running request off, and leaves no idle thread behind."""
    engine = ce.load("random:tiny", watermark=False)
    text = "Hello there, a sentence long enough to keep the loop busy for a while."
    expected = [chunk.audio for chunk in engine.generate_stream(text, seed=1)]
    assert len(expected) > 1  # still running after its first chunk
    chunks = engine.generate_stream(text, seed=1)
    streamed = [next(chunks).audio]
    with pytest.raises(RuntimeError, match="requests run"):
        engine.enable_batching(max_requests=2)
    streamed += [chunk.audio for chunk in chunks]  # the running stream finished unharmed
    assert len(streamed) == len(expected)
    assert all(
        torch.equal(torch.from_numpy(a), torch.from_numpy(b)) for a, b in zip(streamed, expected, strict=True)
    )
    replaced = engine._core._thread
    assert replaced is not None and replaced.is_alive()  # idle, waiting for work
    assert engine.enable_batching(max_requests=2)
    assert not replaced.is_alive()
    assert engine.generate(text, seed=1, max_new_tokens=10).audio.size
    engine.close(timeout_s=60)


def test_a_call_that_read_the_replaced_loop_ends_with_engine_stopped_and_does_not_restart_it(tiny_engine):
    """A generate that took the old loop just before enable_batching swapped it and submits after its stop:
    told EngineStopped at once, and the replaced loop stays stopped (no thread left behind)."""
    engine = copy.copy(tiny_engine)
    engine._core = engine._new_core(SchedulerConfig())
    replaced = engine._core
    assert engine.generate("Hello.", seed=1, max_new_tokens=5).audio.size  # its loop runs
    assert engine.enable_batching(max_requests=2)
    job = engine.speech_job(engine.request("Hello.", seed=1, max_new_tokens=5), streamed=False)
    outputs: queue.SimpleQueue = queue.SimpleQueue()
    replaced.submit(job, outputs.put)
    assert isinstance(outputs.get(timeout=10), ce.EngineStopped)
    assert replaced._thread is None and not replaced.active_requests
    assert engine.generate("Hello.", seed=1, max_new_tokens=5).audio.size  # the new loop serves
    engine.close(timeout_s=60)


def test_a_script_that_exits_mid_request_exits_cleanly():
    """A plain script that stops reading a stream and exits while the loop is decoding must exit 0, not
    abort (a daemon thread killed inside a torch call at interpreter exit aborts the process)."""
    script = (
        "import chatterbox_engine as ce\n"
        "engine = ce.load('random:tiny', watermark=False)\n"
        "chunks = iter(engine.generate_stream('Hello there, a long sentence keeps the loop busy.', "
        "max_new_tokens=1000))\n"
        "next(chunks)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stderr[-2000:]
