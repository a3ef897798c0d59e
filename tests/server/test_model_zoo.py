"""Real servers running upstream main's newer models on tiny random weights: Nano (CHATTERBOX_VARIANT=nano)
and Multilingual V3 (CHATTERBOX_VARIANT=multilingual, CHATTERBOX_MODEL_VERSION=v3), through the official
`openai` client and raw HTTP: /v1/models (version, paralinguistic tags), every format, streaming, tags
voiced or dropped with a warning, and bad input answered 4xx."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import httpx
import pytest
from chatterbox_engine.text import PARALINGUISTIC_TAGS
from chatterbox_server.engine_adapter import EngineAdapter, ModelLoadError
from openai import BadRequestError, OpenAI

from .conftest import CLIENT_TIMEOUT_S, RunningServer, decode_audio, pcm_seconds, start_server

pytestmark = pytest.mark.e2e
DROPPED = "X-Chatterbox-Dropped-Tags"
TAGGED = "Well [laugh] that is fine. [cough] Really."


@pytest.fixture(scope="module")
def nano(tmp_path_factory) -> Iterator[RunningServer]:
    running = start_server(
        tmp_path_factory.mktemp("nano"), chatterbox_model="random:tiny-nano", chatterbox_variant="nano"
    )
    yield running
    running.stop()


@pytest.fixture(scope="module")
def v3(tmp_path_factory) -> Iterator[RunningServer]:
    running = start_server(
        tmp_path_factory.mktemp("mtl_v3"),
        chatterbox_model="random:tiny-multilingual-v3",
        chatterbox_variant="multilingual",
        chatterbox_model_version="v3",
    )
    yield running
    running.stop()


def client(server: RunningServer) -> OpenAI:
    return OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=CLIENT_TIMEOUT_S)


def speech(server: RunningServer, **body) -> httpx.Response:
    payload = {"input": "Hello there.", "response_format": "pcm", "seed": 3, **body}
    return httpx.post(f"{server.url}/v1/audio/speech", json=payload, timeout=CLIENT_TIMEOUT_S)


def test_models_list_variant_version_and_tags(nano: RunningServer, v3: RunningServer) -> None:
    nano_card = client(nano).models.list().data[0].model_dump()  # extra fields kept by the openai client
    assert nano_card["variant"] == "nano" and nano_card["version"] is None
    assert nano_card["paralinguistic_tags"] == list(PARALINGUISTIC_TAGS)
    assert nano_card["languages"] == {"en": "English"}
    assert {"cfg_weight", "exaggeration", "min_p"} <= set(nano_card["ignored_parameters"])
    v3_card = httpx.get(f"{v3.url}/v1/models").json()["data"][0]
    assert v3_card["variant"] == "multilingual" and v3_card["version"] == "v3"
    assert v3_card["paralinguistic_tags"] == []
    assert {"en", "fr", "ja"} <= set(v3_card["languages"])
    # Nano samples as Turbo does; V3 at repetition penalty 1.2 where v2 uses 2.0.
    assert nano_card["defaults"] == {"temperature": 0.8, "top_p": 0.95, "repetition_penalty": 1.2}
    assert v3_card["defaults"] == {
        "exaggeration": 0.5, "cfg_weight": 0.5, "temperature": 0.8, "top_p": 1.0, "min_p": 0.05,
        "repetition_penalty": 1.2,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("response_format", "codec", "sample_rate"),
    [("mp3", "mp3", 24_000), ("opus", "opus", 48_000), ("aac", "aac", 24_000), ("flac", "flac", 24_000),
     ("wav", "pcm_s16le", 24_000)],
)  # fmt: skip
def test_every_format_from_both_models(
    nano: RunningServer, v3: RunningServer, response_format: str, codec: str, sample_rate: int
) -> None:
    for running, extra in ((nano, {}), (v3, {"language": "fr"})):
        reference = client(running).audio.speech.create(
            model="tts-1", voice="alloy", input="Bonjour.", response_format="pcm", extra_body={"seed": 5, **extra}
        ).content  # fmt: skip
        encoded = client(running).audio.speech.create(
            model="chatterbox", voice="alloy", input="Bonjour.", response_format=response_format,
            extra_body={"seed": 5, **extra},
        ).content  # fmt: skip
        samples, rate, decoded = decode_audio(encoded)
        assert decoded.startswith(codec) and rate == sample_rate
        assert abs(samples.size / rate - pcm_seconds(reference)) < 0.15


def test_nano_streams_chunked_audio_equal_to_one_shot(nano: RunningServer) -> None:
    one_shot = speech(nano, input=TAGGED)
    with client(nano).audio.speech.with_streaming_response.create(
        model="chatterbox", voice="alloy", input=TAGGED, response_format="pcm", extra_body={"seed": 3}
    ) as response:
        streamed = b"".join(response.iter_bytes(4096))
        assert DROPPED not in response.headers  # Nano voices its tags
    assert one_shot.status_code == 200 and pcm_seconds(one_shot.content) > 0.1
    assert streamed == one_shot.content


def test_v3_drops_tags_with_a_warning_header_and_sse_field(v3: RunningServer) -> None:
    response = speech(v3, input=TAGGED, language="en")
    assert response.status_code == 200 and response.headers[DROPPED] == "[laugh], [cough]"
    untagged = speech(v3, input="Well that is fine. Really.", language="en")
    assert response.content == untagged.content  # the tags were removed, not spelt out
    sse = speech(v3, input=TAGGED, language="en", stream_format="sse")
    assert sse.status_code == 200 and sse.headers[DROPPED] == "[laugh], [cough]"
    events = [json.loads(line[6:]) for line in sse.text.splitlines() if line.startswith("data: ")]
    assert events[-1]["type"] == "speech.audio.done"
    assert events[-1]["usage"]["dropped_tags"] == ["[laugh]", "[cough]"]
    audio = b"".join(base64.b64decode(e["audio"]) for e in events if e["type"] == "speech.audio.delta")
    assert audio == response.content


def test_v3_takes_its_own_defaults(v3: RunningServer) -> None:
    omitted = speech(v3, input="Bonjour.", language="fr")
    explicit = speech(v3, input="Bonjour.", language="fr", repetition_penalty=1.2)
    assert omitted.status_code == explicit.status_code == 200
    assert omitted.content == explicit.content


@pytest.mark.parametrize(
    ("server_name", "body", "param"),
    [
        ("nano", {"input": ""}, "input"),
        ("nano", {"language": "fr"}, "language"),
        ("nano", {"temperature": -1}, "temperature"),
        ("nano", {"voice": "no-such-voice"}, "voice"),
        ("v3", {"language": "xx"}, "language"),
        ("v3", {"input": "[laugh] [sigh]", "language": "en"}, "input"),  # nothing left once tags are dropped
        ("v3", {"response_format": "ogg"}, "response_format"),
    ],
)
def test_bad_input_is_a_clear_4xx(request, server_name: str, body: dict, param: str) -> None:
    running = request.getfixturevalue(server_name)
    response = speech(running, **body)
    assert 400 <= response.status_code < 500, response.text
    error = response.json()["error"]
    assert error["message"] and param in (error.get("param") or "") + error["message"]
    with pytest.raises(BadRequestError):
        client(running).audio.speech.create(
            model="chatterbox",
            voice="alloy",
            input="[laugh]" if server_name == "v3" else "",
            response_format="pcm",
        )


def test_a_version_for_a_single_release_model_fails_to_load() -> None:
    with pytest.raises(ModelLoadError, match="only multilingual takes a version"):
        EngineAdapter.load(
            "random:tiny-nano", device="cpu", dtype="float32", watermark=False, cache_dir=None, variant="nano",
            version="v3",
        )  # fmt: skip
