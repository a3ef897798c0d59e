"""The Wyoming listener (Home Assistant's protocol) with the `wyoming` client library against a real server."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Describe, Info
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeStopped,
    SynthesizeVoice,
)

from .conftest import CLIENT_TIMEOUT_S, RunningServer, free_port, start_server

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def wyoming_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, int]]:
    port = free_port()
    running: RunningServer = start_server(tmp_path_factory.mktemp("wyoming"), wyoming_port=port)
    yield running, port
    log = running.log_path.read_text(errors="replace")
    running.stop()
    assert "Traceback" not in log, log


@pytest.fixture(scope="module")
def wyoming_port(wyoming_server: tuple[RunningServer, int]) -> int:
    return wyoming_server[1]


async def read_until(client: AsyncTcpClient, last: str) -> list[Event]:
    events = []
    async with asyncio.timeout(CLIENT_TIMEOUT_S):
        while True:
            event = await client.read_event()
            assert event is not None, "the server closed the connection"
            events.append(event)
            if event.type in (last, "error"):
                return events


def audio_of(events: list[Event]) -> bytes:
    return b"".join(AudioChunk.from_event(event).audio for event in events if AudioChunk.is_type(event.type))


async def test_describe_lists_the_model_voices_and_languages(wyoming_port: int) -> None:
    async with AsyncTcpClient("127.0.0.1", wyoming_port) as client:
        await client.write_event(Describe().event())
        [event] = await read_until(client, "info")
    [program] = Info.from_event(event).tts
    assert program.name == "chatterbox" and program.supports_synthesize_streaming
    assert "default" in [voice.name for voice in program.voices]
    assert all(voice.languages == ["en"] for voice in program.voices)


async def test_synthesize_answers_with_pcm_audio(wyoming_port: int) -> None:
    async with AsyncTcpClient("127.0.0.1", wyoming_port) as client:
        await client.write_event(
            Synthesize(text="Hello there.", voice=SynthesizeVoice(name="default")).event()
        )
        events = await read_until(client, "audio-stop")
    start = AudioStart.from_event(events[0])
    assert (start.rate, start.width, start.channels) == (24_000, 2, 1)
    assert AudioStop.is_type(events[-1].type)
    assert len(audio_of(events)) > 0


async def test_streaming_synthesize_speaks_each_sentence_as_it_completes(wyoming_port: int) -> None:
    async with AsyncTcpClient("127.0.0.1", wyoming_port) as client:
        await client.write_event(SynthesizeStart(voice=SynthesizeVoice(name="default")).event())
        for piece in ["Hello th", "ere. How ", "are"]:
            await client.write_event(SynthesizeChunk(text=piece).event())
        # The first sentence is complete: its audio starts before the text is.
        early = await read_until(client, "audio-start")
        await client.write_event(SynthesizeChunk(text=" you?").event())
        # Home Assistant also sends the whole text as `synthesize` (for older servers); it is not spoken twice.
        await client.write_event(Synthesize(text="Hello there. How are you?").event())
        await client.write_event(SynthesizeStop().event())
        events = early + await read_until(client, "synthesize-stopped")
    assert AudioStart.is_type(early[-1].type)
    assert [event.type for event in events].count("audio-start") == 1
    assert SynthesizeStopped.is_type(events[-1].type) and AudioStop.is_type(events[-2].type)
    assert len(audio_of(events)) > 0


async def test_an_unknown_voice_is_an_error_event(wyoming_port: int) -> None:
    async with AsyncTcpClient("127.0.0.1", wyoming_port) as client:
        await client.write_event(Synthesize(text="Hi there.", voice=SynthesizeVoice(name="ghost")).event())
        events = await read_until(client, "audio-stop")
        assert Error.is_type(events[-1].type) and "ghost" in Error.from_event(events[-1]).text
        # The connection stays usable.
        await client.write_event(Describe().event())
        assert (await read_until(client, "info"))[-1].type == "info"


async def test_tags_the_model_drops_are_logged_not_refused(wyoming_server: tuple[RunningServer, int]) -> None:
    # The English model voices no paralinguistic tags; Wyoming's TTS events have no field for a warning.
    running, port = wyoming_server
    async with AsyncTcpClient("127.0.0.1", port) as client:
        await client.write_event(Synthesize(text="Hello [laugh] there. [cough]").event())
        events = await read_until(client, "audio-stop")
    assert AudioStop.is_type(events[-1].type) and len(audio_of(events)) > 0  # no error event
    log = running.log_tail(200)
    assert "does not voice [laugh]; dropped from sentence 1" in log
    assert "does not voice [cough]; dropped from sentence 2" in log  # a sentence of tags alone: skipped
