"""Property-based requests generated from the server's own OpenAPI schema: none may cause a 5xx."""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from .conftest import CLIENT_TIMEOUT_S, RunningServer

# Every test here talks to a real chatterbox-server process.
pytestmark = pytest.mark.e2e

# Bounded so the whole run takes a minute or two on a shared CPU.
MAX_EXAMPLES = 60
# Valid speech input up to 4096 characters would make each example a long synthesis; the schema copy the
# generator reads caps it (the server still enforces its real limit), and names served models so that
# valid requests reach synthesis instead of stopping at "model not served".
GENERATED_INPUT_CHARS = 24


def generation_schema(server: RunningServer):
    raw = httpx.get(f"{server.url}/openapi.json").json()
    speech_fields = raw["components"]["schemas"]["SpeechRequest"]["properties"]
    speech_fields["input"]["maxLength"] = GENERATED_INPUT_CHARS
    speech_fields["model"]["enum"] = ["chatterbox", "tts-1", "gpt-4o-mini-tts"]
    return schemathesis.openapi.from_dict(raw)


def check_no_server_errors(server: RunningServer, mode: schemathesis.GenerationMode) -> None:
    @given(case=generation_schema(server).as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    def no_server_error(case: schemathesis.Case) -> None:
        response = case.call(base_url=server.url, timeout=CLIENT_TIMEOUT_S)
        assert response.status_code < 500, (
            f"{case.method} {case.formatted_path}: {response.status_code} {response.text}"
        )

    no_server_error()


def test_valid_requests_never_cause_server_errors(server: RunningServer) -> None:
    check_no_server_errors(server, schemathesis.GenerationMode.POSITIVE)


def test_invalid_requests_never_cause_server_errors(server: RunningServer) -> None:
    check_no_server_errors(server, schemathesis.GenerationMode.NEGATIVE)
