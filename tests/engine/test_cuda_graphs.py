"""CUDA-graph replay of the batched T3 step equals the eager forward (GPU only; the CPU runs the same
forward eagerly in test_batching.py)."""

from __future__ import annotations

import pytest
import torch
from chatterbox_engine.cuda_graphs import CudaGraphStep, make_step_runner
from chatterbox_engine.decoding import decode_speech_tokens
from chatterbox_engine.loading import random_models
from chatterbox_engine.sampling import SamplingParams

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_cpu_runs_the_step_as_the_models_own_forward(tiny_engine):
    assert make_step_runner(tiny_engine.t3, torch.device("cpu")) is tiny_engine.t3


@pytest.fixture(scope="module")
def cuda_t3():
    return random_models("random:tiny").t3.to("cuda")


@requires_cuda
@torch.inference_mode()
def test_graph_replay_equals_eager_step_for_every_bucket(cuda_t3):
    graphs = CudaGraphStep(cuda_t3)
    for rows in (1, 3, 5, 8):
        # Fresh caches: padding rows write at position 0 of free rows, which eager steps never touch.
        cache = cuda_t3.new_cache(8, 64)
        eager_cache = cuda_t3.new_cache(8, 64)
        input_pos = torch.arange(rows, device="cuda")[:, None] + 10
        embeds = cuda_t3.embed_speech_rows(
            torch.arange(rows, device="cuda")[:, None] + 100, torch.arange(rows, device="cuda") + 1
        )
        kv_len = int(input_pos.max()) + 1
        for _ in range(2):  # the first call captures, the second replays
            replayed = graphs(embeds, input_pos, cache, kv_len)
        expected = cuda_t3(embeds, input_pos, eager_cache, kv_len)
        torch.testing.assert_close(replayed, expected, rtol=1e-4, atol=1e-4)


@requires_cuda
def test_batched_tokens_with_cuda_graphs_equal_lone_eager_decoding():
    import chatterbox_engine as ce

    from .test_batching import submit, token_core

    engine = ce.load("random:tiny", device="cuda", watermark=False)
    voice = engine.default_voice
    with torch.inference_mode():
        cond = engine.t3.embed_conditioning(
            voice.speaker_emb.cuda(), voice.prompt_tokens.cuda(), torch.tensor([0.5], device="cuda")
        )
    texts = [[255, *range(20, 32), 0], [255, 60, 61, 0], [255, *range(40, 60), 0]]
    params = [SamplingParams(), SamplingParams(cfg_weight=0.0), SamplingParams(top_p=0.9)]
    lone = [
        list(
            decode_speech_tokens(
                engine.t3,
                cond,
                torch.tensor([text], device="cuda"),
                p,
                torch.Generator("cuda").manual_seed(i),
                30,
                use_cuda_graphs=False,
            )
        )
        for i, (text, p) in enumerate(zip(texts, params, strict=True))
    ]
    core = token_core(engine, max_requests=3)
    streams = [
        submit(core, voice, text, p, i, 30, device="cuda")
        for i, (text, p) in enumerate(zip(texts, params, strict=True))
    ]
    assert [list(stream) for stream in streams] == lone
