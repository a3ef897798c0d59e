"""Text in as it arrives, audio out as soon as a sentence is complete (the socket and Wyoming sessions).

    text deltas -> SentenceSegmenter -> segments, in order -> SpeechService.start (one request each,
    admitted, queued and batched like HTTP's) -> PCM -> click-free joins -> one encoder for the session

Each segment is spoken with the session's voice and knobs and the next seed of one sequence, so the
same text and seed give the same audio however the text was split into messages. Paralinguistic tags the
model does not voice are dropped, as over HTTP, and reported per segment and for the session; a segment
that was nothing but such tags is skipped (no audio), not refused.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from chatterbox_engine.text import drop_tags

from ..audio import AudioFormat, StreamEncoder
from ..errors import InvalidRequest
from ..schemas import SpeechRequest
from .speech import SpeechService, SpeechUsage

if TYPE_CHECKING:
    from ..api_keys import KeyUsage

# Chatterbox garbles past ~300 characters (serving-api.md), and a run-on must not wait forever.
MAX_SEGMENT_CHARS = 300
# 5 ms ramps at each segment's edges: the joins start and end at silence, so they never click.
FADE_SECONDS = 0.005
_MAX_SEED = 2**63 - 1

# A sentence ends at . ! ? … (plus closing quotes/brackets) followed by whitespace, at CJK 。！？ followed
# by anything else, or at a line break. The character after the end must have arrived, so a boundary
# never depends on how the text was split into messages.
_SENTENCE_END = re.compile(r"[.!?…]+[\"'”’)\]»]*(?=\s)|[。！？]+[」』）”]*(?=[^。！？」』）”])|(?=\n)")


class SentenceSegmenter:
    """Cuts a growing text into segments: at sentence ends, or at `max_chars` (on a space if possible)."""

    def __init__(self, max_chars: int = MAX_SEGMENT_CHARS) -> None:
        self.max_chars = max_chars
        self._buffer = ""

    def push(self, text: str) -> list[str]:
        """Adds text; returns the segments it completed."""
        self._buffer += text
        segments = []
        while True:
            self._buffer = self._buffer.lstrip()
            end = _SENTENCE_END.search(self._buffer)
            if end is not None and 0 < end.end() <= self.max_chars:
                cut = end.end()
            elif len(self._buffer) > self.max_chars:
                space = max(
                    self._buffer.rfind(" ", 0, self.max_chars), self._buffer.rfind("\n", 0, self.max_chars)
                )
                cut = space if space > 0 else self.max_chars
            else:
                return [segment for segment in segments if _speakable(segment)]
            segments.append(self._buffer[:cut].strip())
            self._buffer = self._buffer[cut:]

    def flush(self) -> list[str]:
        """Ends the current segment here (input.flush, end of input)."""
        rest, self._buffer = self._buffer.strip(), ""
        return [rest] if _speakable(rest) else []


def _speakable(text: str) -> bool:
    # Punctuation alone makes no speech (the engine would refuse it); it is dropped.
    return any(character.isalnum() for character in text)


@dataclass(frozen=True)
class SegmentDone:
    index: int
    text: str
    start_sample: int  # in the session's output audio (after speed), at `sample_rate`
    end_sample: int
    dropped_tags: tuple[str, ...] = ()  # paralinguistic tags removed from `text`: the model has none


class SpeechSession:
    """One client's text stream. `append`/`flush`/`finish` feed it; `run` speaks the segments in order,
    handing encoded audio to `on_audio` and each finished segment to `on_segment`.

    `config` is a validated SpeechRequest whose `input` is a placeholder: every field but the text,
    seed and formats applies to each segment."""

    def __init__(
        self,
        speech: SpeechService,
        config: SpeechRequest,
        *,
        sample_rate: int,
        on_audio: Callable[[bytes], Awaitable[None]],
        on_segment: Callable[[SegmentDone], Awaitable[None]],
        is_disconnected: Callable[[], Awaitable[bool]],
        max_input_chars: int,
        voiced_tags: tuple[str, ...],
        admit: Callable[[int], KeyUsage],
        observe_first_audio: Callable[[float], None] = lambda seconds: None,
    ) -> None:
        self._speech = speech
        self._config = config
        self.sample_rate = sample_rate
        self._on_audio = on_audio
        self._on_segment = on_segment
        self._is_disconnected = is_disconnected
        self._max_input_chars = max_input_chars
        self._voiced_tags = voiced_tags  # the paralinguistic tags the model speaks; others are dropped
        self._dropped_tags: dict[str, None] = {}  # in order of appearance, each once
        # Each segment counts against the API key's limits and usage as the same text sent over HTTP would.
        self._admit = admit
        self._observe_first_audio = observe_first_audio  # seconds from a segment's text complete to its audio
        # No seed asked for: one is drawn, so the session's segments still form one reproducible sequence.
        self.seed = config.seed if config.seed is not None else random.randrange(2**31)
        self._segmenter = SentenceSegmenter()
        self._segments: asyncio.Queue[tuple[str, float] | None] = asyncio.Queue()
        self._input_chars = 0
        self._finished = False
        self._busy = False  # a segment is being spoken
        self._encoder = _SessionEncoder(config.response_format, sample_rate)
        self._fade = _EdgeFader(max(1, round(FADE_SECONDS * sample_rate)))
        self._samples = 0
        self._tokens = 0

    @property
    def idle(self) -> bool:
        """Nothing is being spoken or waiting to be: the client owes the next move."""
        return not self._busy and self._segments.empty()

    @property
    def usage(self) -> SpeechUsage:
        return SpeechUsage(self._input_chars, self._tokens, self._samples / self.sample_rate)

    @property
    def dropped_tags(self) -> list[str]:
        """The paralinguistic tags dropped so far from the session's text (the model voices none of them)."""
        return list(self._dropped_tags)

    def append(self, text: str) -> None:
        self._check_open()
        self._input_chars += len(text)
        if self._input_chars > self._max_input_chars:
            raise InvalidRequest(
                f"the session's input is longer than {self._max_input_chars} characters; start a new session",
                param="text",
                code="input_too_long",
            )
        self._enqueue(self._segmenter.push(text))

    def flush(self) -> None:
        self._check_open()
        self._enqueue(self._segmenter.flush())

    def finish(self) -> None:
        """End of input: the rest of the text is the last segment."""
        self._check_open()
        self._enqueue(self._segmenter.flush())
        self._finished = True
        self._segments.put_nowait(None)

    async def run(self) -> SpeechUsage:
        """Speaks segments until `finish` and the last one is done; returns the usage."""
        index = 0
        while (segment := await self._segments.get()) is not None:
            self._busy = True
            try:
                await self._speak(index, *segment)
            finally:
                self._busy = False
            index += 1
        tail = self._encoder.finish()
        if tail:
            await self._on_audio(tail)
        return self.usage

    def close(self) -> None:
        self._encoder.close()

    async def _speak(self, index: int, text: str, completed_at: float) -> None:
        # The engine drops these too (and would refuse a text of tags alone); known here to report them.
        spoken, dropped = drop_tags(text, self._voiced_tags)
        self._dropped_tags.update(dict.fromkeys(dropped))
        if not _speakable(spoken):
            await self._on_segment(SegmentDone(index, text, self._samples, self._samples, dropped))
            return
        request = self._config.model_copy(
            update={
                "input": text,
                "seed": (self.seed + index) % _MAX_SEED,
                "response_format": "pcm",
                "stream_format": "audio",
            }
        )
        start_sample = self._samples
        key_usage = self._admit(len(text))
        try:
            stream = await self._speech.start(request, self._is_disconnected)
            self._observe_first_audio(time.perf_counter() - completed_at)
            try:
                pending = b""
                async for data in stream.chunks():
                    pending += data
                    whole = len(pending) - len(pending) % 2
                    await self._emit(self._fade.push(np.frombuffer(pending[:whole], "<i2")))
                    pending = pending[whole:]
                await self._emit(self._fade.end())
            finally:
                self._tokens += stream.output_tokens
                made = (self._samples - start_sample) / self.sample_rate
                key_usage.record(SpeechUsage(len(text), stream.output_tokens, made))
        finally:
            key_usage.release()
        await self._on_segment(SegmentDone(index, text, start_sample, self._samples, dropped))

    async def _emit(self, samples: np.ndarray) -> None:
        if samples.size == 0:
            return
        self._samples += samples.size
        data = self._encoder.encode(samples)
        if data:
            await self._on_audio(data)

    def _enqueue(self, segments: list[str]) -> None:
        completed_at = time.perf_counter()
        for segment in segments:
            self._segments.put_nowait((segment, completed_at))

    def _check_open(self) -> None:
        if self._finished:
            raise InvalidRequest(
                "the input is already done; start a new session for more text", code="input_closed"
            )


class _EdgeFader:
    """Ramps each segment in over its first `length` samples and out over its last `length`; the last
    `length` samples are held back until the segment's end is known. Other samples pass unchanged."""

    def __init__(self, length: int) -> None:
        self._length = length
        self._ramp = ((np.arange(length) + 0.5) / length).astype(np.float32)  # 0 -> 1
        self._held = np.zeros(0, np.int16)
        self._position = 0  # samples of the current segment seen so far

    def push(self, samples: np.ndarray) -> np.ndarray:
        if self._position < self._length:
            count = min(samples.size, self._length - self._position)
            faded = samples.astype(np.float32)
            faded[:count] *= self._ramp[self._position : self._position + count]
            samples = np.round(faded).astype(np.int16)
        self._position += samples.size
        audio = np.concatenate([self._held, samples])
        release = max(0, audio.size - self._length)
        out, self._held = audio[:release], audio[release:]
        return out

    def end(self) -> np.ndarray:
        """The held tail, ramped out; the next push starts a new segment."""
        tail = self._held.astype(np.float32) * self._ramp[::-1][self._length - self._held.size :]
        self._held = np.zeros(0, np.int16)
        self._position = 0
        return np.round(tail).astype(np.int16)


class _SessionEncoder:
    """One output stream for the whole session, so the audio frames concatenate into one valid file.
    pcm and wav pass the segments' 16-bit samples through untouched; other formats go through PyAV."""

    def __init__(self, audio_format: AudioFormat, sample_rate: int) -> None:
        self._raw = audio_format in ("pcm", "wav")
        self._encoder = StreamEncoder(audio_format, sample_rate)
        # wav: the streaming header (length "until the end") goes out with the first samples.
        self._prefix = self._encoder.encode(np.zeros(0, np.float32)) if self._raw else b""

    def encode(self, samples: np.ndarray) -> bytes:
        if self._raw:
            data, self._prefix = self._prefix + samples.astype("<i2").tobytes(), b""
            return data
        return self._encoder.encode(samples.astype(np.float32) / 32768.0)

    def finish(self) -> bytes:
        return b"" if self._raw else self._encoder.finish()

    def close(self) -> None:
        self._encoder.close()
