"""Real servers running the multilingual and Turbo tiny variants: the `language` field, /v1/models,
and knobs a variant ignores being reported (header and SSE usage), never silently dropped."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import httpx
import pytest
from openai import OpenAI

from .conftest import CLIENT_TIMEOUT_S, RunningServer, pcm_seconds, speech_sample, start_server

pytestmark = pytest.mark.e2e
HEADER = "X-Chatterbox-Ignored-Parameters"


@pytest.fixture(scope="module")
def multilingual(tmp_path_factory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("mtl"), chatterbox_model="random:tiny-multilingual")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def turbo(tmp_path_factory) -> Iterator[RunningServer]:
    # The variant setting (CHATTERBOX_VARIANT, which the operator sets) is checked against the source.
    running = start_server(
        tmp_path_factory.mktemp("turbo"),
        chatterbox_model="random:tiny-turbo",
        chatterbox_variant="turbo",
        stream_chunk_plan="realtime",
    )
    yield running
    running.stop()


def speech(server: RunningServer, **body) -> httpx.Response:
    payload = {"input": "Hello there.", "response_format": "pcm", "seed": 3, **body}
    return httpx.post(f"{server.url}/v1/audio/speech", json=payload, timeout=CLIENT_TIMEOUT_S)


def test_models_list_the_variant_and_its_languages(multilingual: RunningServer, turbo: RunningServer) -> None:
    cards = httpx.get(f"{multilingual.url}/v1/models").json()["data"]
    chatterbox = next(card for card in cards if card["id"] == "chatterbox")
    assert chatterbox["variant"] == "multilingual"
    assert {"en", "fr", "de", "ja", "ko"} <= set(chatterbox["languages"])
    assert chatterbox["languages"]["fr"] == "French"
    assert chatterbox["ignored_parameters"] == []
    assert chatterbox["dtype"] == "float32"
    assert chatterbox["stage_dtypes"] == {"t3": "float32", "s3gen": "float32"}
    assert chatterbox["chunk_plan"] == "throughput"  # STREAM_CHUNK_PLAN auto, on CPU
    turbo_card = httpx.get(f"{turbo.url}/v1/models").json()["data"][0]
    assert turbo_card["variant"] == "turbo"
    assert turbo_card["languages"] == {"en": "English"}
    assert {"cfg_weight", "exaggeration", "min_p"} <= set(turbo_card["ignored_parameters"])
    assert turbo_card["chunk_plan"] == "realtime"  # STREAM_CHUNK_PLAN=realtime


def test_multilingual_speaks_the_requested_language(multilingual: RunningServer) -> None:
    client = OpenAI(
        base_url=f"{multilingual.url}/v1", api_key="unused", max_retries=0, timeout=CLIENT_TIMEOUT_S
    )
    french = client.audio.speech.create(
        model="chatterbox", voice="alloy", input="Bonjour à tous.", response_format="pcm",
        extra_body={"language": "fr", "seed": 1},
    ).content  # fmt: skip
    assert pcm_seconds(french) > 0.1
    korean = speech(multilingual, input="안녕하세요", language="ko")
    assert korean.status_code == 200 and len(korean.content) > 0
    assert HEADER not in korean.headers
    # Kanji are spoken through the Japanese front end (read as kana); as English they are unknown text.
    assert speech(multilingual, input="日本語を話します", language="ja").status_code == 200
    as_english = speech(multilingual, input="日本語を話します", language="en")
    assert as_english.status_code == 400 and as_english.json()["error"]["param"] == "input"


@pytest.mark.parametrize(
    ("language", "message"),
    [
        ("xx", "not supported by the multilingual model; supported: ar, da"),
        ("zh", "Chinese needs Cangjie5_TC.json"),
    ],
)
def test_unsupported_language_is_a_400(multilingual: RunningServer, language: str, message: str) -> None:
    response = speech(multilingual, language=language)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "language" and message in error["message"]


def model_card(server: RunningServer) -> dict:
    return httpx.get(f"{server.url}/v1/models").json()["data"][0]


ENGLISH_DEFAULTS = {
    "exaggeration": 0.5, "cfg_weight": 0.5, "temperature": 0.8, "top_p": 1.0, "min_p": 0.05,
    "repetition_penalty": 1.2,
}  # fmt: skip


def test_models_list_each_variants_knob_defaults(
    server: RunningServer, multilingual: RunningServer, turbo: RunningServer
) -> None:
    # What a client (the web UI's sliders) shows as "the model's default": upstream's per model.
    assert model_card(server)["defaults"] == ENGLISH_DEFAULTS
    assert model_card(multilingual)["defaults"] == {**ENGLISH_DEFAULTS, "repetition_penalty": 2.0}
    # Turbo has no input for exaggeration, cfg_weight or min_p: no default for them either.
    assert model_card(turbo)["defaults"] == {"temperature": 0.8, "top_p": 0.95, "repetition_penalty": 1.2}


def test_omitted_knobs_take_the_models_own_defaults(multilingual: RunningServer) -> None:
    # Upstream's multilingual model samples with repetition penalty 2.0 (English and Turbo: 1.2).
    omitted = speech(multilingual, input="Bonjour.", language="fr")
    explicit = speech(multilingual, input="Bonjour.", language="fr", repetition_penalty=2.0)
    assert omitted.status_code == explicit.status_code == 200
    assert omitted.content == explicit.content


def test_the_listed_defaults_are_what_omitted_knobs_take(turbo: RunningServer) -> None:
    listed = speech(turbo, **model_card(turbo)["defaults"])
    assert listed.status_code == 200 and HEADER not in listed.headers
    assert listed.content == speech(turbo).content


def test_turbo_synthesises_and_reports_ignored_knobs(turbo: RunningServer) -> None:
    plain = speech(turbo, input="Hello [laugh] there.")
    assert plain.status_code == 200 and pcm_seconds(plain.content) > 0.1
    assert HEADER not in plain.headers
    knobs = speech(turbo, input="Hello [laugh] there.", cfg_weight=0.9, exaggeration=1.2, temperature=0.8)
    assert knobs.status_code == 200
    assert set(knobs.headers[HEADER].split(", ")) == {"cfg_weight", "exaggeration"}
    assert knobs.content == plain.content  # ignored really means no effect


def test_turbo_sse_usage_names_ignored_knobs(turbo: RunningServer) -> None:
    response = speech(turbo, stream_format="sse", min_p=0.2)
    assert response.status_code == 200 and response.headers[HEADER] == "min_p"
    events = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")]
    assert events[-1]["type"] == "speech.audio.done"
    assert events[-1]["usage"]["ignored_parameters"] == ["min_p"]
    audio = b"".join(base64.b64decode(e["audio"]) for e in events if e["type"] == "speech.audio.delta")
    assert pcm_seconds(audio) > 0.1


def test_english_only_models_reject_other_languages(turbo: RunningServer, server: RunningServer) -> None:
    for running in (turbo, server):
        rejected = speech(running, language="fr")
        assert rejected.status_code == 400 and rejected.json()["error"]["param"] == "language"
        accepted = speech(running, language="en")
        assert accepted.status_code == 200
        # English and Turbo models have no language input: an explicit one is reported as ignored.
        assert "language" in accepted.headers[HEADER]


def test_turbo_converts_voices_with_its_meanflow_s3gen(turbo: RunningServer) -> None:
    source = speech_sample(seconds=2.0, audio_format="wav")
    with turbo.client() as http:
        response = http.post(
            "/v1/audio/voice-conversion", files={"file": ("s.wav", source)}, data={"response_format": "pcm"}
        )
    assert response.status_code == 200, response.text
    assert abs(pcm_seconds(response.content) - 2.0) <= 0.1
