"""The speech schema's generation knobs are the engine's: the API accepts exactly the values the engine
does, and passes on only the knobs a client set (no server, no model)."""

from __future__ import annotations

import chatterbox_engine as ce
import pytest
from chatterbox_engine.request import EXAGGERATION_BOUNDS, KNOB_BOUNDS
from chatterbox_server.schemas import SpeechRequest
from pydantic import ValidationError


def engine_accepts(name: str, value: float) -> bool:
    try:
        if name == "exaggeration":
            EXAGGERATION_BOUNDS.check(name, value)
        else:
            ce.SamplingParams(**{name: value})
    except ce.InvalidParameterError:
        return False
    return True


def api_accepts(name: str, value: float) -> bool:
    try:
        SpeechRequest(input="Hi.", **{name: value})
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize("name", sorted(KNOB_BOUNDS))
def test_the_api_and_the_engine_accept_the_same_knob_values(name: str) -> None:
    bounds = KNOB_BOUNDS[name]
    for value in (bounds.low, bounds.low + 1e-6, (bounds.low + bounds.high) / 2, bounds.high, bounds.high + 1e-6,
                  bounds.low - 1e-6):  # fmt: skip
        assert api_accepts(name, value) == engine_accepts(name, value), value


def test_only_the_knobs_a_client_set_reach_the_engine() -> None:
    # Unset knobs take the loaded model's defaults (e.g. Turbo top_p 0.95), not one server-wide value.
    assert SpeechRequest(input="Hi.").generation_options() == {}
    assert SpeechRequest(input="Hi.", top_p=0.5, cfg_weight=None).generation_options() == {"top_p": 0.5}
