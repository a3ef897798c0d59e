"""Sampling: the upstream processing order, each filter, and per-request generators."""

import chatterbox_engine as ce
import pytest
import torch
from chatterbox_engine.sampling import (
    SamplingParams,
    apply_min_p,
    apply_repetition_penalty,
    apply_top_p,
    combine_cfg,
    process_logits,
    sample_next,
)


def test_cfg_pushes_conditional_logits_away_from_unconditional():
    logits = torch.tensor([[2.0, 0.0], [1.0, 0.0]])
    assert torch.equal(combine_cfg(logits, 0.5), torch.tensor([[2.5, 0.0]]))
    assert torch.equal(combine_cfg(logits[:1], 0.5), logits[:1])


def test_repetition_penalty_divides_positive_and_multiplies_negative_logits():
    logits = torch.tensor([[2.0, -2.0, 1.0]])
    out = apply_repetition_penalty(logits, torch.tensor([[0, 1, 1]]), 2.0)
    assert torch.equal(out, torch.tensor([[1.0, -4.0, 1.0]]))


def test_min_p_keeps_tokens_near_the_top_probability():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.02, 0.18]]))
    out = apply_min_p(logits, 0.1)
    assert torch.isinf(out[0, 2]) and torch.isfinite(out[0, [0, 1, 3]]).all()


def test_top_p_keeps_the_smallest_nucleus():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = torch.isfinite(apply_top_p(logits, 0.7))[0].tolist()
    assert kept == [True, True, False, False]
    assert torch.equal(apply_top_p(logits, 1.0), logits)


def test_penalty_is_applied_before_temperature():
    # Upstream order: penalty on raw logits, then temperature. The other order would differ.
    logits = torch.tensor([[4.0, 1.0, 0.0]])
    params = SamplingParams(cfg_weight=0.0, temperature=0.5, min_p=0.0, repetition_penalty=2.0)
    out = process_logits(logits, torch.tensor([[0]]), params)
    assert torch.allclose(out, torch.tensor([[4.0, 2.0, 0.0]]))


def test_sampling_depends_only_on_the_callers_generator():
    logits = torch.randn(2, 100, generator=torch.Generator().manual_seed(0))
    history = torch.tensor([[99]])
    params = SamplingParams(min_p=0.0)
    draws = [sample_next(logits, history, params, torch.Generator().manual_seed(5)) for _ in range(2)]
    torch.manual_seed(123)  # the global RNG plays no part
    draws.append(sample_next(logits, history, params, torch.Generator().manual_seed(5)))
    assert draws[0] == draws[1] == draws[2]


@pytest.mark.parametrize(
    "kwargs",
    [{"temperature": 0}, {"top_p": 0}, {"top_p": 1.5}, {"min_p": -0.1}, {"repetition_penalty": 0},
     {"cfg_weight": -1}, {"temperature": float("nan")}],
)  # fmt: skip
def test_out_of_range_parameters_are_typed_errors(kwargs):
    with pytest.raises(ce.InvalidParameterError):
        SamplingParams(**kwargs)
