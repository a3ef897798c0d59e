"""Voice library over HTTP: clone, use, list, delete; replicas sharing one directory; a writer SIGKILLed."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .conftest import CLIENT_TIMEOUT_S, RunningServer, decode_audio, speech_sample, start_server

# Every test here talks to a real chatterbox-server process.
pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def shared_voice_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("shared") / "voices"


@pytest.fixture(scope="module")
def replicas(tmp_path_factory, shared_voice_dir: Path) -> Iterator[tuple[RunningServer, RunningServer]]:
    """Two server processes on one voice directory, like two pods on one PVC."""
    first = start_server(
        tmp_path_factory.mktemp("replica-a"),
        voice_dir=shared_voice_dir,
        voice_aliases='{"nova": "Narrator One"}',
    )
    try:
        second = start_server(tmp_path_factory.mktemp("replica-b"), voice_dir=shared_voice_dir)
    except BaseException:
        first.stop()
        raise
    yield first, second
    first.stop()
    second.stop()


def clone(server: RunningServer, name: str, sample: bytes, filename: str = "sample.mp3"):
    with server.client() as http:
        return http.post("/v1/audio/voices", data={"name": name}, files={"audio_sample": (filename, sample)})


def speak(server: RunningServer, voice, seed: int = 5):
    body = {"model": "tts-1", "input": "Testing my voice.", "voice": voice, "response_format": "pcm",
            "seed": seed}  # fmt: skip
    with server.client() as http:
        return http.post("/v1/audio/speech", json=body)


def listed_ids(server: RunningServer) -> set[str]:
    with server.client() as http:
        return {voice["id"] for voice in http.get("/v1/audio/voices").json()["voices"]}


def test_clone_use_list_delete_then_gone(replicas) -> None:
    first, second = replicas
    unmapped = speak(first, "nova")
    assert unmapped.status_code == 400 and "VOICE_ALIASES" in unmapped.json()["error"]["message"]
    created = clone(first, "Narrator One", speech_sample())
    assert created.status_code == 200, created.text
    voice = created.json()
    assert voice["object"] == "audio.voice" and voice["name"] == "Narrator One"
    assert voice["id"].startswith("voice_") and isinstance(voice["created_at"], int)

    by_id = speak(first, {"id": voice["id"]})
    by_name = speak(first, "Narrator One")
    built_in = speak(first, None)
    assert by_id.status_code == 200 and by_id.content == by_name.content
    assert by_id.content != built_in.content, "the cloned voice must change the audio"
    assert speak(first, "nova").content == by_id.content, "an OpenAI voice name maps to a library voice"

    # The other replica sees the new voice without a restart, and makes the same audio with it.
    assert voice["id"] in listed_ids(second)
    assert speak(second, {"id": voice["id"]}).content == by_id.content
    assert {"default", voice["id"]} <= listed_ids(first)

    with first.client() as http:
        assert http.delete(f"/v1/audio/voices/{voice['id']}").json()["deleted"] is True
        assert http.get(f"/v1/audio/voices/{voice['id']}").status_code == 404
        assert http.delete(f"/v1/audio/voices/{voice['id']}").status_code == 404
    for replica in replicas:
        again = speak(replica, {"id": voice["id"]})
        assert again.status_code in (400, 404), again.text
        assert "not found" in again.json()["error"]["message"]
        assert voice["id"] not in listed_ids(replica)


def test_sample_is_downloadable_and_metadata_readable(replicas) -> None:
    first, _ = replicas
    voice = clone(first, "Sample Keeper", speech_sample(seconds=2.5, audio_format="flac"), "ref.flac").json()
    with first.client() as http:
        details = http.get(f"/v1/audio/voices/{voice['id']}").json()
        sample = http.get(f"/v1/audio/voices/{voice['id']}/sample")
    assert details["name"] == "Sample Keeper" and details["duration_s"] == pytest.approx(2.5, abs=0.05)
    assert sample.headers["content-type"] == "audio/wav"
    samples, rate, _ = decode_audio(sample.content)
    assert rate == 22_050 and samples.size / rate == pytest.approx(2.5, abs=0.05)


def test_duplicate_names_conflict(replicas) -> None:
    first, second = replicas
    assert clone(first, "Twin", speech_sample()).status_code == 200
    duplicate = clone(second, "Twin", speech_sample())
    assert duplicate.status_code == 409 and "already exists" in duplicate.json()["error"]["message"]


def test_writer_killed_mid_write_leaves_every_earlier_voice_readable(replicas) -> None:
    # Runs last in this module: it SIGKILLs the second replica while it writes voices.
    reader, writer = replicas
    earlier = [clone(writer, f"Before Kill {index}", speech_sample()).json()["id"] for index in range(2)]
    sample = speech_sample(seconds=20.0, audio_format="wav")
    first_write_done = threading.Event()

    def keep_writing() -> None:
        for index in range(50):
            try:
                clone(writer, f"During Kill {index}", sample)
            except httpx.TransportError:  # the writer is gone: that is the point
                return
            finally:
                first_write_done.set()

    hammer = threading.Thread(target=keep_writing, daemon=True)
    hammer.start()
    assert first_write_done.wait(timeout=CLIENT_TIMEOUT_S)
    writer.process.kill()  # SIGKILL: no cleanup runs in the writer
    writer.process.wait()
    hammer.join(timeout=CLIENT_TIMEOUT_S)

    survivors = listed_ids(reader) - {"default"}
    assert set(earlier) <= survivors
    with reader.client() as http:
        for voice_id in survivors:
            assert http.get(f"/v1/audio/voices/{voice_id}/sample").status_code == 200, voice_id
    for voice_id in [*earlier, *(survivors - set(earlier))][:4]:
        assert speak(reader, {"id": voice_id}).status_code == 200, voice_id
