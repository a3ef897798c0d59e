"""Turbo/Nano reuse their voice's conditioning keys and values, and bf16 products read prepacked weights:
neither changes a request's logits or tokens."""

from __future__ import annotations

import copy

import chatterbox_engine as ce
import pytest
import torch
import torch.nn.functional as F
from chatterbox_engine import runtime
from chatterbox_engine.decoding import DecodeBatch, DecodeRequest, new_request
from chatterbox_engine.sampling import SamplingParams
from chatterbox_engine.t3_gpt2 import LRUCache
from chatterbox_engine.voice import synthetic_reference

PARAMS = SamplingParams(temperature=0.8, top_p=0.95, repetition_penalty=1.2)


@pytest.fixture(scope="module")
def nano() -> ce.Engine:
    return ce.load("random:tiny-nano", watermark=False)


@pytest.fixture(scope="module")
def voices(nano):
    """The default voice (8 s reference: 200 prompt tokens) and a 6 s one (150): prefixes of two lengths."""
    return [nano.default_voice, nano.embed_voice(*synthetic_reference(seconds=6.0))]


def conditioning(engine, voice) -> torch.Tensor:
    with torch.inference_mode():
        return engine.t3.embed_conditioning(voice.speaker_emb, voice.prompt_tokens, None)


def text(start: int, length: int) -> torch.Tensor:
    return torch.arange(start, start + length)[None]


@torch.inference_mode()
def decode(t3, requests: list[DecodeRequest]) -> tuple[list[torch.Tensor], list[list[int]]]:
    """Prefill the requests together, then decode them to the end: their first logits and their tokens."""
    batch = DecodeBatch(t3, max_rows=len(requests))
    batch.prefill(requests)
    first_logits = [request.logits.clone() for request in requests]
    tokens: dict[int, list[int]] = {id(request): [] for request in requests}
    while batch.requests:
        for outcome in batch.sample():
            if outcome.token is not None:
                tokens[id(outcome.request)].append(outcome.token)
        batch.decode()
    return first_logits, [tokens[id(request)] for request in requests]


def request(t3, cond, text_tokens, seed: int, budget: int = 25, *, cached: bool = True) -> DecodeRequest:
    made = new_request(t3, cond, text_tokens, PARAMS, torch.Generator().manual_seed(seed), budget)
    if not cached:
        made.prefix = None  # prefill runs the whole prompt, as before the cache
    return made


def test_a_cached_voice_prefix_gives_the_logits_and_tokens_of_a_whole_prefill(nano, voices) -> None:
    cond = conditioning(nano, voices[0])
    (whole,), (whole_tokens,) = decode(nano.t3, [request(nano.t3, cond, text(300, 12), 1, cached=False)])
    prefixed = request(nano.t3, cond, text(300, 12), 1)
    assert prefixed.prefix_len == cond.shape[1]
    (logits,), (tokens,) = decode(nano.t3, [prefixed])
    torch.testing.assert_close(logits, whole, rtol=0, atol=1e-5)
    assert tokens == whole_tokens and len(tokens) == 25


def test_requests_of_different_voices_and_lengths_prefill_together_as_alone(nano, voices) -> None:
    conds = [conditioning(nano, voice) for voice in voices]
    specs = [(conds[0], text(300, 12), 1), (conds[1], text(400, 30), 2), (conds[0], text(500, 4), 3)]
    alone = [decode(nano.t3, [request(nano.t3, *spec, cached=False)]) for spec in specs]
    together = decode(nano.t3, [request(nano.t3, *spec) for spec in specs])
    for index, ((logits,), (tokens,)) in enumerate(alone):
        torch.testing.assert_close(together[0][index], logits, rtol=0, atol=1e-5)
        assert together[1][index] == tokens


def test_the_prefix_is_computed_once_per_voice_and_again_when_weights_change(nano, voices, monkeypatch):
    t3 = nano.t3
    computed = []
    compute = t3._compute_conditioning_kv
    monkeypatch.setattr(t3, "_compute_conditioning_kv", lambda cond: computed.append(1) or compute(cond))
    monkeypatch.setattr(t3, "_conditioning_kv", LRUCache(2**30))
    first, second = (conditioning(nano, voice) for voice in voices)
    with torch.inference_mode():
        for cond in (first, first, second, first, second):
            t3.conditioning_kv(cond)
        assert len(computed) == 2
        keys, _ = t3.conditioning_kv(first)
        assert keys.shape == (1, 1, 4, first.shape[1], 16)  # tiny Nano: 1 layer, 4 heads of 16
    weight = t3.tfmr.h[0].attn.c_attn.weight
    with torch.no_grad():
        weight.mul_(1.5)
    try:
        with torch.inference_mode():
            changed, _ = t3.conditioning_kv(first)
        assert len(computed) == 3 and not torch.equal(changed, keys)
    finally:
        with torch.no_grad():
            weight.div_(1.5)


def test_the_cache_keeps_the_most_recently_used_entries_within_its_bytes() -> None:
    cache = LRUCache(max_bytes=3 * 400)  # three 100-float entries
    entry = lambda value: (torch.full((100,), float(value)),)  # noqa: E731
    for key in "abc":
        cache.get(key, lambda key=key: entry(ord(key)))
    cache.get("a", lambda: pytest.fail("a is cached"))
    cache.get("d", lambda: entry(0))  # evicts b, the least recently used
    assert len(cache) == 3
    recomputed = []
    cache.get("b", lambda: recomputed.append("b") or entry(1))
    assert recomputed == ["b"]
    too_big = cache.get("huge", lambda: (torch.zeros(1000),))  # larger than the budget: returned, not kept
    assert too_big[0].numel() == 1000 and len(cache) == 3


def test_a_copied_t3_starts_with_an_empty_prefix_cache(nano, voices) -> None:
    nano.t3.conditioning_kv(conditioning(nano, voices[0]))
    copied = copy.deepcopy(nano.t3)
    assert len(copied._conditioning_kv) == 0 and len(nano.t3._conditioning_kv) > 0


@pytest.mark.skipif(
    not runtime.prepacks_linear(torch.zeros(1, dtype=torch.bfloat16)), reason="no native bf16 on this CPU"
)
def test_bf16_products_from_prepacked_weights_equal_the_plain_ones() -> None:
    layer = torch.nn.Linear(64, 96).to(torch.bfloat16)
    x = torch.randn(1, 3, 64, dtype=torch.bfloat16)
    with torch.no_grad():
        packed = runtime.linear(layer, x, layer.weight, layer.bias)
        assert "_prepacked_weight" in layer.__dict__
        torch.testing.assert_close(packed, F.linear(x, layer.weight, layer.bias), rtol=0, atol=0)
        in_out = layer.weight.t().contiguous()
        owner = torch.nn.Module()
        torch.testing.assert_close(
            runtime.linear(owner, x, in_out, layer.bias, in_out=True), packed, rtol=0, atol=0
        )
        layer.weight.mul_(2.0)  # changed in place: the packed copy is rebuilt
        doubled = runtime.linear(layer, x, layer.weight, layer.bias)
        torch.testing.assert_close(doubled, F.linear(x, layer.weight, layer.bias), rtol=0, atol=0)


def test_fp32_products_keep_the_plain_weights() -> None:
    layer = torch.nn.Linear(64, 96)
    x = torch.randn(2, 64)
    with torch.no_grad():
        assert torch.equal(
            runtime.linear(layer, x, layer.weight, layer.bias), F.linear(x, layer.weight, layer.bias)
        )
    assert "_prepacked_weight" not in layer.__dict__
