"""Next-token sampling for T3, in upstream 0.1.7's order.

CFG combination -> repetition penalty -> temperature -> min-p -> top-p -> softmax -> multinomial.
All randomness comes from the caller's `torch.Generator` (one per request), never the global RNG.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import NamedTuple

import torch
from torch import Tensor

from .errors import InvalidParameterError


class Bounds(NamedTuple):
    """The closed range [low, high] a knob accepts (low itself excluded where low_exclusive)."""

    low: float
    high: float
    low_exclusive: bool = False

    def __contains__(self, value: object) -> bool:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        above_low = value > self.low if self.low_exclusive else value >= self.low
        return above_low and value <= self.high  # NaN fails both

    def describe(self) -> str:
        return (
            f"in ({self.low:g}, {self.high:g}]"
            if self.low_exclusive
            else f"between {self.low:g} and {self.high:g}"
        )

    def check(self, name: str, value: object) -> float:
        if value not in self:
            raise InvalidParameterError(f"{name} must be {self.describe()}, got {value!r}", param=name)
        return float(value)


# Upstream's generate bounds none of these; its processors (HF's) need temperature > 0, penalty > 0 and
# top_p in (0, 1], and guidance weights above 1 are valid CFG (extrapolation away from the unconditional
# row; the parity suite checks 1.5). We accept all of that, cutting off only the absurd. Upstream's
# Gradio demo sliders (cfg_weight 0-1, repetition penalty 1-2) are UI suggestions; our web UI keeps them.
SAMPLING_BOUNDS = {
    "cfg_weight": Bounds(0.0, 10.0),
    "temperature": Bounds(0.01, 5.0),
    "top_p": Bounds(0.0, 1.0, low_exclusive=True),
    "min_p": Bounds(0.0, 1.0),
    "repetition_penalty": Bounds(0.1, 10.0),
}


@dataclass(frozen=True)
class SamplingParams:
    """T3's next-token knobs. These defaults are upstream's English ones; each variant's own defaults
    are `VariantSpec.sampling` (e.g. Turbo top_p 0.95)."""

    cfg_weight: float = 0.5
    temperature: float = 0.8
    top_p: float = 1.0
    min_p: float = 0.05
    repetition_penalty: float = 1.2

    def __post_init__(self) -> None:
        for name, bounds in SAMPLING_BOUNDS.items():
            object.__setattr__(self, name, bounds.check(name, getattr(self, name)))

    def with_overrides(self, **values: float | None) -> SamplingParams:
        """A copy with the given knobs replaced; None keeps this one's value."""
        return replace(self, **{name: value for name, value in values.items() if value is not None})


def combine_cfg(logits: Tensor, cfg_weight: float) -> Tensor:
    """logits (2, V) conditional and unconditional rows, or (1, V) without CFG -> (1, V)."""
    cond = logits[0:1]
    if logits.shape[0] == 1:
        return cond
    return cond + cfg_weight * (cond - logits[1:2])


def apply_repetition_penalty(logits: Tensor, history: Tensor, penalty: float) -> Tensor:
    """Penalise every token in history (1, N): positive logits divided, negative ones multiplied."""
    seen = logits.gather(1, history)
    seen = torch.where(seen < 0, seen * penalty, seen / penalty)
    return logits.scatter(1, history, seen)


def apply_min_p(logits: Tensor, min_p: float) -> Tensor:
    """Drop tokens whose probability is below min_p times the top probability (the top one stays)."""
    probs = logits.softmax(dim=-1)
    remove = probs < min_p * probs.amax(dim=-1, keepdim=True)
    remove.scatter_(-1, probs.argmax(dim=-1, keepdim=True), False)
    return logits.masked_fill(remove, -float("inf"))


def apply_top_p(logits: Tensor, top_p: float) -> Tensor:
    """Keep the smallest set of most likely tokens whose probabilities sum past top_p."""
    if top_p >= 1.0:
        return logits
    sorted_logits, sorted_indices = torch.sort(logits, descending=False)
    cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    remove_sorted = cumulative <= (1 - top_p)
    remove_sorted[..., -1:] = False
    remove = remove_sorted.scatter(1, sorted_indices, remove_sorted)
    return logits.masked_fill(remove, -float("inf"))


def process_logits(logits: Tensor, history: Tensor, params: SamplingParams) -> Tensor:
    """CFG rows (B, V) and the token history (1, N) -> filtered, temperature-scaled logits (1, V)."""
    logits = combine_cfg(logits, params.cfg_weight)
    logits = apply_repetition_penalty(logits, history, params.repetition_penalty)
    if params.temperature != 1.0:
        logits = logits / params.temperature
    logits = apply_min_p(logits, params.min_p)
    return apply_top_p(logits, params.top_p)


def sample_next(
    logits: Tensor, history: Tensor, params: SamplingParams, generator: torch.Generator
) -> Tensor:
    """Sample one token id (1, 1) from CFG-row logits with the request's generator."""
    probs = process_logits(logits.float(), history, params).softmax(dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator)
