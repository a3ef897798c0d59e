"""Process lifecycle: a clear startup failure, API keys, the web UI at /, graceful SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from chatterbox_server.api_keys import legacy_key_name

from .conftest import (
    CLIENT_TIMEOUT_S,
    RunningServer,
    launch_server,
    start_server,
    wait_until_idle,
    wait_until_ready,
)

# Every test here talks to a real chatterbox-server process.
pytestmark = pytest.mark.e2e

API_KEY = "sk-test-key"


def test_unreachable_model_fails_fast_with_an_offline_hint(tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "API_PORT": "0",
           "MODEL_CACHE_DIR": str(tmp_path / "cache"), "VOICE_LIBRARY_DIR": str(tmp_path / "voices")}  # fmt: skip
    env.pop("CHATTERBOX_MODEL", None)  # the default: the real model from the hub
    result = subprocess.run(
        [str(Path(sys.executable).parent / "chatterbox-server")], env=env, capture_output=True, text=True,
        timeout=CLIENT_TIMEOUT_S,
    )  # fmt: skip
    assert result.returncode == 1
    assert "could not load model 'ResembleAI/chatterbox'" in result.stderr
    assert "CHATTERBOX_MODEL=random:tiny" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("flags", "setting"), [(["--api-port", "99999"], "--api-port"), (["--max-queue", "-1"], "--max-queue")]
)
def test_an_invalid_setting_is_a_one_line_usage_error(flags: list[str], setting: str) -> None:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "chatterbox-server"), *flags], capture_output=True, text=True,
        timeout=CLIENT_TIMEOUT_S,
    )  # fmt: skip
    assert result.returncode == 2
    assert setting in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_probes_answer_and_the_api_says_loading_while_the_model_loads(tmp_path: Path) -> None:
    server = launch_server(tmp_path)
    try:
        while True:  # liveness answers as soon as the process listens, before the model is loaded
            assert server.process.poll() is None, server.log_tail()
            try:
                assert httpx.get(f"{server.url}/healthz").status_code == 200
                break
            except httpx.TransportError:
                time.sleep(0.05)
        readiness = httpx.get(f"{server.url}/readyz")
        speech = httpx.post(f"{server.url}/v1/audio/speech", json={"input": "Hi."}, timeout=CLIENT_TIMEOUT_S)
        if readiness.status_code == 503:  # still loading (random:tiny may be quicker than this test)
            assert readiness.json()["status"] == "loading"
        if speech.status_code == 503:
            assert speech.json()["error"]["code"] == "model_loading" and speech.headers["Retry-After"]
        else:
            assert speech.status_code == 200
        wait_until_ready(server)
        assert (
            httpx.post(
                f"{server.url}/v1/audio/speech", json={"input": "Hi."}, timeout=CLIENT_TIMEOUT_S
            ).status_code
            == 200
        )
    finally:
        server.stop()


def test_requests_over_the_time_limit_get_a_timeout_error(tmp_path: Path) -> None:
    # The warm-up is not bound by the request timeout, so even this server starts.
    server = start_server(tmp_path, request_timeout_s=0.001, warmup=True)
    try:
        with server.client() as http:
            response = http.post("/v1/audio/speech", json={"input": "This takes longer than a millisecond."})
            assert response.status_code == 504
            assert response.json()["error"]["type"] == "timeout_error"
        # The worker stopped at its deadline and was given back.
        wait_until_idle(server)
    finally:
        server.stop()


def test_a_stream_cut_short_after_audio_started_breaks_the_connection(tmp_path: Path) -> None:
    """Headers are gone once audio flows; a timeout then must not look like a complete 200."""
    server = start_server(tmp_path, request_timeout_s=1.0)
    long_text = ("This sentence keeps the model busy for a good while longer. " * 70)[:4096]
    try:
        with (
            server.client() as http,
            http.stream(
                "POST", "/v1/audio/speech", json={"input": long_text, "response_format": "pcm"}
            ) as response,
        ):
            if response.status_code == 200:  # else it timed out before the first audio: a plain 504
                with pytest.raises(httpx.RemoteProtocolError):
                    for _ in response.iter_raw():
                        pass
                wait_until_idle(server)
                log = server.log_tail(200)
                assert "speech stream aborted after audio started" in log
                assert "Traceback" not in log  # one warning line, not uvicorn's ASGI traceback
            else:
                assert response.status_code == 504
    finally:
        server.stop()


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    workdir = tmp_path_factory.mktemp("keyed")
    webui = workdir / "webui"
    webui.mkdir()
    (webui / "index.html").write_text("<!doctype html><title>Chatterbox studio</title>")
    keys_file = workdir / "keys"
    keys_file.write_text(f"{API_KEY}\n")
    running = start_server(workdir, api_keys_file=keys_file, webui_dir=webui, drain_seconds=3, log_json=True)
    yield running
    running.stop()


def test_api_keys_guard_the_api_but_not_probes(keyed_server: RunningServer) -> None:
    with keyed_server.client() as http:
        missing = http.get("/v1/models")
        wrong = http.get("/v1/models", headers={"Authorization": "Bearer sk-wrong"})
        right = http.get("/v1/models", headers={"Authorization": f"Bearer {API_KEY}"})
        speech = http.post("/v1/audio/speech", json={"input": "Hi.", "model": "tts-1"})
        probes = [http.get(path).status_code for path in ("/healthz", "/readyz", "/metrics")]
    for refused in (missing, wrong, speech):
        assert refused.status_code == 401
        assert refused.json()["error"]["type"] == "authentication_error"
        assert refused.headers["WWW-Authenticate"] == "Bearer"
    assert "missing" in missing.json()["error"]["message"] and "invalid" in wrong.json()["error"]["message"]
    assert right.status_code == 200
    assert probes == [200, 200, 200]


def test_a_key_from_a_one_per_line_file_is_named_by_its_hash(keyed_server: RunningServer) -> None:
    with keyed_server.client() as http:
        assert http.get("/v1/models", headers={"Authorization": f"Bearer {API_KEY}"}).status_code == 200
        metrics = http.get("/metrics").text
    assert f'chatterbox_key_requests_total{{key="{legacy_key_name(API_KEY)}"}}' in metrics
    assert API_KEY not in metrics


def test_web_ui_is_served_at_the_root(keyed_server: RunningServer) -> None:
    page = httpx.get(f"{keyed_server.url}/")
    assert page.status_code == 200 and "Chatterbox studio" in page.text
    # The UI ships no icon: the browser's automatic request gets "no content", not a console 404.
    assert httpx.get(f"{keyed_server.url}/favicon.ico").status_code == 204


def test_with_log_json_every_log_line_is_json(keyed_server: RunningServer) -> None:
    # The warm-up loaded the watermarker, whose library warns and prints while loading.
    lines = keyed_server.log_path.read_text().splitlines()
    assert lines and all(json.loads(line)["message"] is not None for line in lines), lines
    assert any("PerthNet" in json.loads(line)["message"] for line in lines)


def test_sigterm_drains_then_finishes_in_flight_streams(keyed_server: RunningServer) -> None:
    # Runs last in this module: it stops the server.
    body = {"model": "tts-1", "input": "One stream survives shutdown. It ends cleanly.", "response_format": "pcm",
            "seed": 11}  # fmt: skip
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with keyed_server.client(headers=headers) as http:
        expected = http.post("/v1/audio/speech", json=body).content
        with http.stream("POST", "/v1/audio/speech", json=body) as response:
            chunks = response.iter_raw()
            received = [next(chunks)]
            keyed_server.process.send_signal(signal.SIGTERM)
            readiness = httpx.get(f"{keyed_server.url}/readyz")
            assert readiness.status_code == 503 and readiness.json()["status"] == "draining"
            received.extend(chunks)
    assert b"".join(received) == expected
    # uvicorn re-raises the signal once shutdown is complete, so the exit status reports SIGTERM.
    assert keyed_server.process.wait(timeout=CLIENT_TIMEOUT_S) in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in keyed_server.log_tail()
