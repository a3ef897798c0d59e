"""Named API keys against a real server: usage per key (counters, headers, SSE), per-key limits answered
with 429 + Retry-After, and keys and limits rotated in a Kubernetes-style mounted volume without a restart.
The parsers and the limit arithmetic also get quick tests of their own at the end."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from chatterbox_server.api_keys import (
    ApiKeys,
    KeyFileError,
    KeyLimits,
    legacy_key_name,
    parse_keys,
    parse_limits,
)
from chatterbox_server.errors import KeyLimitExceeded
from chatterbox_server.metrics import ServerMetrics
from chatterbox_server.services.speech import SpeechUsage
from openai import OpenAI
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedError

from .conftest import CLIENT_TIMEOUT_S, RunningServer, pcm_seconds, speech_sample, start_server

KEYS = {
    "team-a": "sk-team-a-0001",
    "team-b": "sk-team-b-0002",  # concurrent_requests 1
    "team-c": "sk-team-c-0003",  # requests_per_minute 2
    "team-d": "sk-team-d-0004",  # input_characters_per_day 30
    "team-r": "sk-team-r-0005",  # rotated
    "team-v": "sk-team-v-0006",  # requests_per_minute 1, voice conversion
    "team-e": "sk-team-e-0007",  # requests_per_minute 2, speech socket
}
LIMITS = """\
default:
  requests_per_minute: 1000
team-b:
  concurrent_requests: 1
team-c:
  requests_per_minute: 2
team-d:
  input_characters_per_day: 30
team-v:
  requests_per_minute: 1
team-e:
  requests_per_minute: 2
"""
SECONDS_PER_DAY = 86_400


class MountedSecret:
    """A directory laid out the way the kubelet mounts a Secret or ConfigMap: each file is a symlink through
    `..data`, and an update swaps `..data` to a new timestamped directory in one rename."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir()
        self._version = 0

    def publish(self, files: dict[str, str]) -> None:
        self._version += 1
        version_dir = self.root / f"..2026_01_01_00_00_{self._version:02d}"
        version_dir.mkdir()
        for name, text in files.items():
            (version_dir / name).write_text(text)
        staging = self.root / "..data_tmp"
        staging.symlink_to(version_dir.name)
        os.replace(staging, self.root / "..data")
        for name in files:
            link = self.root / name
            if not link.is_symlink():
                link.symlink_to(f"..data/{name}")

    def path(self, name: str) -> Path:
        return self.root / name


def keys_yaml(keys: dict[str, str]) -> str:
    return "".join(f"{name}: {key}\n" for name, key in keys.items())


@pytest.fixture(scope="module")
def secret(tmp_path_factory: pytest.TempPathFactory) -> MountedSecret:
    mounted = MountedSecret(tmp_path_factory.mktemp("keyed") / "api-keys")
    mounted.publish({"keys.yaml": keys_yaml(KEYS), "limits.yaml": LIMITS})
    return mounted


@pytest.fixture(scope="module")
def server(secret: MountedSecret) -> Iterator[RunningServer]:
    running = start_server(
        secret.root.parent,
        api_keys_file=secret.path("keys.yaml"),
        api_key_limits_file=secret.path("limits.yaml"),
        max_concurrent=2,
        max_queue=8,
    )
    yield running
    running.stop()


def auth(name: str, keys: dict[str, str] = KEYS) -> dict[str, str]:
    return {"Authorization": f"Bearer {keys[name]}"}


def speak(server: RunningServer, name: str, **body: object) -> httpx.Response:
    payload = {"input": "Hi there.", "response_format": "pcm", "seed": 1, **body}
    with server.client() as http:
        return http.post("/v1/audio/speech", json=payload, headers=auth(name))


def key_metrics(server: RunningServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"{server.url}/metrics").text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        if family.name.startswith("chatterbox_key_")
        for sample in family.samples
        if not sample.name.endswith("_created")
    }


def counter(metrics: dict, name: str, **labels: str) -> float:
    return metrics.get((name, tuple(sorted(labels.items()))), 0.0)


def wait_for_counter(server: RunningServer, name: str, expected: float, **labels: str) -> dict:
    """The counters of a request are updated as its response ends, a moment after the client has it."""
    for _ in range(100):
        metrics = key_metrics(server)
        if counter(metrics, name, **labels) == pytest.approx(expected):
            return metrics
        time.sleep(0.05)
    raise AssertionError(f"{name}{labels} = {counter(metrics, name, **labels)}, expected {expected}")


def assert_limit_refusal(response: httpx.Response, limit: str) -> int:
    assert response.status_code == 429, response.text
    error = response.json()["error"]
    assert error["code"] == "rate_limit_exceeded" and error["type"] == "rate_limit_error"
    assert limit in error["message"] and "per server pod" in error["message"]
    return int(response.headers["Retry-After"])


def test_usage_counters_and_headers_add_up(server: RunningServer) -> None:
    before = key_metrics(server)
    openai = OpenAI(
        base_url=f"{server.url}/v1", api_key=KEYS["team-a"], max_retries=0, timeout=CLIENT_TIMEOUT_S
    )
    # flac is sent whole, so its headers carry the complete usage.
    flac = openai.audio.speech.with_raw_response.create(
        model="tts-1", voice="alloy", input="One whole file.", response_format="flac", extra_body={"seed": 2}
    )
    flac_usage = json.loads(flac.headers["X-Chatterbox-Usage"])
    sse_body = {
        "input": "Then a stream of events.",
        "response_format": "pcm",
        "stream_format": "sse",
        "seed": 3,
    }
    with server.client() as http:
        events = http.post("/v1/audio/speech", json=sse_body, headers=auth("team-a")).text
    done = json.loads(events.strip().split("\n\n")[-1].removeprefix("data: "))
    assert done["type"] == "speech.audio.done"
    sse_usage = done["usage"]
    # The same request as plain streamed audio: its headers know only the input.
    pcm = speak(server, "team-a", input=sse_body["input"], seed=3)
    pcm_usage = json.loads(pcm.headers["X-Chatterbox-Usage"])
    bad_voice = speak(server, "team-a", voice="no-such-voice")
    with server.client() as http:
        models = http.get("/v1/models", headers=auth("team-a"))
    assert (flac.http_response.status_code, pcm.status_code, bad_voice.status_code, models.status_code) == (
        200, 200, 400, 200,
    )  # fmt: skip

    assert flac_usage["input_characters"] == flac_usage["input_tokens"] == len("One whole file.")
    assert flac_usage["output_tokens"] > 0 and flac_usage["audio_seconds"] > 0
    assert flac_usage["total_tokens"] == flac_usage["input_tokens"] + flac_usage["output_tokens"]
    assert pcm_usage == {"input_tokens": len(sse_body["input"]), "input_characters": len(sse_body["input"])}
    assert sse_usage["audio_seconds"] == pytest.approx(pcm_seconds(pcm.content))

    base = {name: counter(before, name, key="team-a") for name in (
        "chatterbox_key_requests_total", "chatterbox_key_input_characters_total",
        "chatterbox_key_audio_seconds_total", "chatterbox_key_output_tokens_total")}  # fmt: skip
    after = wait_for_counter(server, "chatterbox_key_requests_total", base["chatterbox_key_requests_total"] + 5,
                             key="team-a")  # fmt: skip
    spoken = [flac_usage, sse_usage, sse_usage]  # the pcm request repeats the SSE one (same text and seed)
    expected = {
        "chatterbox_key_input_characters_total": sum(u["input_characters"] for u in spoken),
        "chatterbox_key_audio_seconds_total": sum(u["audio_seconds"] for u in spoken),
        "chatterbox_key_output_tokens_total": sum(u["output_tokens"] for u in spoken),
    }
    for name, value in expected.items():
        assert counter(after, name, key="team-a") - base[name] == pytest.approx(value, abs=1e-4), name
    errors = counter(after, "chatterbox_key_errors_total", key="team-a", status="400")
    assert errors - counter(before, "chatterbox_key_errors_total", key="team-a", status="400") == 1
    # Other keys used nothing, and no key appears anywhere in the metrics.
    assert counter(after, "chatterbox_key_requests_total", key="team-r") == 0
    text = httpx.get(f"{server.url}/metrics").text
    assert not any(key in text for key in KEYS.values())


def test_unknown_and_missing_keys_are_refused(server: RunningServer) -> None:
    with server.client() as http:
        unknown = http.post(
            "/v1/audio/speech", json={"input": "Hi."}, headers={"Authorization": "Bearer sk-nope"}
        )
        missing = http.get("/v1/models")
    for response, code in ((unknown, "invalid_api_key"), (missing, "missing_api_key")):
        assert response.status_code == 401
        assert response.json()["error"]["code"] == code
    named = {dict(labels)["key"] for (_, labels) in key_metrics(server)}
    assert named <= set(KEYS)  # an unknown key is counted under no name


def test_concurrent_requests_limit(server: RunningServer) -> None:
    # A long clip slowed down to minutes of audio (4 MB), read through a small receive buffer: the server
    # cannot finish sending it while the client holds it, so the request stays in progress.
    text = "This sentence keeps the first request busy. " * 90
    body = {"input": text, "response_format": "pcm", "speed": 0.25, "seed": 4}
    slow_reader = httpx.HTTPTransport(socket_options=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)])
    with (
        httpx.Client(base_url=server.url, transport=slow_reader, timeout=CLIENT_TIMEOUT_S) as http,
        http.stream("POST", "/v1/audio/speech", json=body, headers=auth("team-b")) as held,
    ):
        assert held.status_code == 200
        audio = held.iter_raw()  # kept: a dropped iterator would close the connection
        next(audio)  # audio is flowing: the request holds team-b's one place
        second = speak(server, "team-b")
        other_key = speak(server, "team-a")
    assert assert_limit_refusal(second, "concurrent_requests") == 1
    assert other_key.status_code == 200  # one key's limit never blocks another key
    # The place comes back when the first response is over (here: the client hung up).
    for _ in range(100):
        again = speak(server, "team-b")
        if again.status_code == 200:
            break
        time.sleep(0.1)
    assert again.status_code == 200, again.text
    metrics = key_metrics(server)
    assert (
        counter(metrics, "chatterbox_key_limit_rejections_total", key="team-b", limit="concurrent_requests")
        == 1
    )


def test_requests_per_minute_limit(server: RunningServer) -> None:
    started = time.time()
    assert [speak(server, "team-c").status_code for _ in range(2)] == [200, 200]
    third = speak(server, "team-c")
    elapsed = time.time() - started
    retry_after = assert_limit_refusal(third, "requests_per_minute")
    # The first request leaves the 60-second window at started + 60 at the latest.
    assert 60 - elapsed - 1 <= retry_after <= 60
    assert speak(server, "team-a").status_code == 200


def test_voice_conversions_count_against_the_keys_limits_and_usage(server: RunningServer) -> None:
    source = speech_sample(seconds=1.0, audio_format="wav")
    with server.client(headers=auth("team-v")) as http:
        converted = http.post(
            "/v1/audio/voice-conversion", files={"file": ("s.wav", source)}, data={"response_format": "flac"}
        )
        assert converted.status_code == 200, converted.text
        usage = json.loads(converted.headers["X-Chatterbox-Usage"])  # flac is sent whole: usage complete
        assert usage["input_characters"] == 0 and usage["output_tokens"] == 25
        again = http.post("/v1/audio/voice-conversion", files={"file": ("s.wav", source)})
    assert_limit_refusal(again, "requests_per_minute")
    wait_for_counter(server, "chatterbox_key_output_tokens_total", 25, key="team-v")


def test_input_characters_per_day_limit(server: RunningServer) -> None:
    # A request that makes no audio is not charged.
    assert speak(server, "team-d", input="x" * 20, voice="no-such-voice").status_code == 400
    assert speak(server, "team-d", input="Twenty characters ok").status_code == 200
    before = time.time()
    over = speak(server, "team-d", input="Twenty more, refused")
    after = time.time()
    retry_after = assert_limit_refusal(over, "input_characters_per_day")
    # Until the next 00:00 UTC.
    assert (
        SECONDS_PER_DAY - after % SECONDS_PER_DAY - 1
        <= retry_after
        <= SECONDS_PER_DAY - before % SECONDS_PER_DAY + 1
    )
    assert "20 used today" in over.json()["error"]["message"]
    assert speak(server, "team-d", input="Ten chars.").status_code == 200  # exactly the 30 of the day


def test_rotated_keys_and_limits_apply_without_a_restart(
    server: RunningServer, secret: MountedSecret
) -> None:
    assert speak(server, "team-r").status_code == 200
    rotated = {**KEYS, "team-r": "sk-team-r-rotated"}
    secret.publish(
        {"keys.yaml": keys_yaml(rotated), "limits.yaml": LIMITS + "team-r:\n  requests_per_minute: 1\n"}
    )
    assert speak(server, "team-r").status_code == 401  # the old key is gone
    with server.client() as http:
        # The new key is accepted, and its usage stays with the name: team-r already spoke this minute,
        # so its new limit of 1 request per minute is reached.
        refused = http.post("/v1/audio/speech", json={"input": "Hi."}, headers=auth("team-r", rotated))
        assert_limit_refusal(refused, "requests_per_minute")
        secret.publish({"keys.yaml": keys_yaml(rotated), "limits.yaml": LIMITS})
        allowed = http.post(
            "/v1/audio/speech",
            json={"input": "Hi.", "response_format": "pcm"},
            headers=auth("team-r", rotated),
        )
        assert allowed.status_code == 200
        # A broken update keeps the last good keys and never prints a key.
        secret.publish({"keys.yaml": "team-r: [unterminated\n", "limits.yaml": LIMITS})
        assert http.get("/v1/models", headers=auth("team-r", rotated)).status_code == 200
    log = server.log_path.read_text()
    assert "ignoring the new API keys file" in log
    assert not any(key in log for key in rotated.values())


# -- the parsers and the limit arithmetic, without a server -----------------------------------------


def test_key_files_in_both_formats() -> None:
    assert parse_keys("team-a: sk-1\nteam-b: 'sk-2'  # trailing comment\n") == {
        "team-a": "sk-1",
        "team-b": "sk-2",
    }
    legacy = parse_keys("# one per line\nsk-1\n\n  sk-2  \n")
    assert legacy == {legacy_key_name("sk-1"): "sk-1", legacy_key_name("sk-2"): "sk-2"}
    assert all(name.startswith("key-") and len(name) == 12 for name in legacy)
    for bad, reason in [
        ("team-a: [sk-1\n", "not a valid YAML mapping"),
        ("team-a: 12345\n", "must be a non-empty string"),
        ("team a: sk-1\nb: sk-2\n", "key name"),
        ("a: sk-1\nb: sk-1\n", "same key"),
        ("default: sk-1\n", "reserved"),
    ]:
        with pytest.raises(KeyFileError, match=reason) as error:
            parse_keys(bad)
        assert "sk-1" not in str(error.value)


def test_limits_file_defaults_and_overrides() -> None:
    default, by_name = parse_limits(
        "default: {requests_per_minute: 10, concurrent_requests: 2}\n"
        "team-a: {requests_per_minute: 50}\nteam-b: {concurrent_requests: null}\n"
    )
    assert default == KeyLimits(requests_per_minute=10, concurrent_requests=2)
    assert by_name["team-a"] == KeyLimits(requests_per_minute=50, concurrent_requests=2)
    assert by_name["team-b"] == KeyLimits(requests_per_minute=10, concurrent_requests=None)
    with pytest.raises(KeyFileError, match="team-a.requests_per_minute"):
        parse_limits("team-a: {requests_per_minute: 0}\n")
    with pytest.raises(KeyFileError, match="team-a.burst"):
        parse_limits("team-a: {burst: 3}\n")


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def limited_keys(tmp_path: Path, limits: str, clock: Clock) -> ApiKeys:
    (tmp_path / "keys").write_text("a: sk-a\nb: sk-b\n")
    (tmp_path / "limits").write_text(limits)
    return ApiKeys(inline_keys="", keys_file=tmp_path / "keys", limits_file=tmp_path / "limits",
                   metrics=ServerMetrics(), clock=clock)  # fmt: skip


def test_requests_per_minute_is_a_sliding_window(tmp_path: Path) -> None:
    clock = Clock(1_000_000.0)
    keys = limited_keys(tmp_path, "a: {requests_per_minute: 2}\n", clock)
    keys.admit("a", input_characters=1).release()
    clock.now += 20
    keys.admit("a", input_characters=1).release()
    clock.now += 10
    with pytest.raises(KeyLimitExceeded) as refused:
        keys.admit("a", input_characters=1)
    assert refused.value.headers() == {"Retry-After": "30"}  # the first one leaves the window in 30 s
    keys.admit("b", input_characters=1).release()  # another key is untouched
    clock.now += 30
    keys.admit("a", input_characters=1).release()


def test_characters_per_day_restart_at_midnight_and_unspoken_ones_are_given_back(tmp_path: Path) -> None:
    midnight = 20_000 * SECONDS_PER_DAY
    clock = Clock(midnight - 100)
    keys = limited_keys(tmp_path, "a: {input_characters_per_day: 10}\n", clock)
    keys.admit("a", input_characters=8).release()  # made no audio: not charged
    spoken = keys.admit("a", input_characters=8)
    spoken.record(SpeechUsage(input_characters=8, output_tokens=5, audio_seconds=0.5))
    spoken.release()
    with pytest.raises(KeyLimitExceeded) as refused:
        keys.admit("a", input_characters=3)
    assert refused.value.headers() == {"Retry-After": "100"}
    clock.now = midnight + 1
    keys.admit("a", input_characters=10).release()


def test_concurrency_place_is_held_until_release(tmp_path: Path) -> None:
    keys = limited_keys(tmp_path, "default: {concurrent_requests: 1}\n", Clock(0.0))
    first = keys.admit("a", input_characters=1)
    with pytest.raises(KeyLimitExceeded, match="concurrent_requests"):
        keys.admit("a", input_characters=1)
    keys.admit("b", input_characters=1)  # `default` applies to each key separately
    first.release()
    first.release()  # a second release changes nothing
    keys.admit("a", input_characters=1)
    with pytest.raises(KeyLimitExceeded):
        keys.admit("a", input_characters=1)


async def test_speech_socket_segments_count_against_the_keys_limits_and_usage(server: RunningServer) -> None:
    """Each sentence spoken over WS /v1/audio/speech/stream is one request of its key: it is counted in the
    key's usage, and a key past its requests-per-minute limit gets the socket's 429 (close code 1013)."""
    url = server.url.replace("http://", "ws://") + "/v1/audio/speech/stream"
    before = key_metrics(server)
    async with connect(url, additional_headers=auth("team-e")) as socket:
        await socket.send(
            json.dumps({"type": "session.update", "session": {"response_format": "pcm", "seed": 3}})
        )
        await socket.send(json.dumps({"type": "input.append", "text": "One. Two. Three."}))
        await socket.send(json.dumps({"type": "input.done"}))
        messages = []
        with contextlib.suppress(
            ConnectionClosedError
        ):  # iteration ends by raising on a close other than 1000
            async for message in socket:
                if isinstance(message, str):
                    messages.append(json.loads(message))
    assert socket.close_code == 1013
    segments = [m for m in messages if m["type"] == "speech.segment.done"]
    assert [s["text"] for s in segments] == ["One.", "Two."]
    error = messages[-1]["error"]
    assert error["code"] == "rate_limit_exceeded" and "requests_per_minute" in error["message"]
    assert error["retry_after"] >= 1
    # Both spoken segments are charged to the key (the refused third made nothing).
    characters = "chatterbox_key_input_characters_total"
    before_characters = counter(before, characters, key="team-e")
    after = wait_for_counter(server, characters, before_characters + len("One.Two."), key="team-e")
    seconds = "chatterbox_key_audio_seconds_total"
    assert counter(after, seconds, key="team-e") > counter(before, seconds, key="team-e")
