"""Audio in and out with PyAV: streaming encoders for the six OpenAI formats, tempo change, upload decoding."""

from __future__ import annotations

import io
import struct
from typing import Literal

import av
import numpy as np

from .errors import InvalidRequest

AudioFormat = Literal["mp3", "opus", "aac", "flac", "wav", "pcm"]

MEDIA_TYPES: dict[str, str] = {
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}

# (container, codec, bit rate) for the compressed formats; wav and pcm are written by hand.
_PYAV_FORMATS: dict[str, tuple[str, str, int | None]] = {
    "mp3": ("mp3", "libmp3lame", 128_000),
    "opus": ("ogg", "libopus", 64_000),
    "aac": ("adts", "aac", 128_000),
    "flac": ("flac", "flac", None),
}
# Sent in one piece at the end, so the header can state the length (see StreamEncoder).
WHOLE_FILE_FORMATS = frozenset({"flac"})
# Ogg holds pages for up to a second by default; short pages let opus stream like the other formats.
_CONTAINER_OPTIONS = {"ogg": {"page_duration": "20000"}}


def to_pcm16(audio: np.ndarray) -> bytes:
    """Float samples in [-1, 1] as signed 16-bit little-endian bytes."""
    return (np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


class _ByteSink(io.RawIOBase):
    """A write-only, non-seekable file PyAV muxes into; `take()` hands out what was written since."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


class StreamEncoder:
    """Encodes a mono float stream chunk by chunk; each call returns only the bytes that became ready.

    One encoder per response, so the output is one well-formed file (not concatenated separate encodes).
    """

    def __init__(self, audio_format: AudioFormat, sample_rate: int) -> None:
        self.audio_format = audio_format
        self.sample_rate = sample_rate
        self._header_pending = audio_format == "wav"
        # FLAC's header states the length, which readers such as libsndfile (soundfile) need: it is written
        # into a seekable buffer, which the muxer rewrites at the end, and sent whole when done.
        self._whole_file = audio_format in WHOLE_FILE_FORMATS
        self._container = None
        if audio_format in _PYAV_FORMATS:
            container_format, codec, bit_rate = _PYAV_FORMATS[audio_format]
            self._sink = io.BytesIO() if self._whole_file else _ByteSink()
            self._container = av.open(
                self._sink, "w", format=container_format, options=_CONTAINER_OPTIONS.get(container_format, {})
            )
            self._stream = self._container.add_stream(codec, rate=sample_rate, layout="mono")
            if bit_rate:
                self._stream.bit_rate = bit_rate
            self._next_pts = 0

    def encode(self, audio: np.ndarray) -> bytes:
        if self._container is None:
            return self._wav_header() + to_pcm16(audio)
        if audio.size == 0:
            return b""
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(audio, dtype=np.float32)[None, :], format="flt", layout="mono"
        )
        frame.sample_rate = self.sample_rate
        frame.pts = self._next_pts
        self._next_pts += audio.size
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        return b"" if self._whole_file else self._sink.take()

    def finish(self) -> bytes:
        if self._container is None:
            return self._wav_header()
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()
        self._container = None
        return self._sink.getvalue() if self._whole_file else self._sink.take()

    def close(self) -> None:
        """Release the codec when a stream is abandoned before `finish`."""
        if self._container is not None:
            self._container.close()
            self._container = None

    def _wav_header(self) -> bytes:
        if not self._header_pending:
            return b""
        self._header_pending = False
        return _wav_header(self.sample_rate, data_bytes=None)


def _wav_header(sample_rate: int, *, data_bytes: int | None) -> bytes:
    """A 16-bit mono PCM WAV header; unknown length (streaming) is written as 0xFFFFFFFF, "until the end"."""
    data_size = 0xFFFFFFFF if data_bytes is None else data_bytes
    riff_size = 0xFFFFFFFF if data_bytes is None else 36 + data_bytes
    return (
        b"RIFF"
        + struct.pack("<I", riff_size)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, sample_rate, sample_rate * 2, 2, 16)
        + b"data"
        + struct.pack("<I", data_size)
    )


def wav_bytes(audio: np.ndarray, sample_rate: int) -> bytes:
    """A complete 16-bit mono WAV file."""
    pcm = to_pcm16(audio)
    return _wav_header(sample_rate, data_bytes=len(pcm)) + pcm


class TempoChanger:
    """Changes speed without changing pitch (ffmpeg's WSOLA `atempo`), streaming."""

    def __init__(self, speed: float, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self._graph = av.filter.Graph()
        source = self._graph.add_abuffer(format="flt", sample_rate=sample_rate, layout="mono")
        node = source
        for factor in _atempo_factors(speed):
            stage = self._graph.add("atempo", f"{factor:.6f}")
            node.link_to(stage)
            node = stage
        sink = self._graph.add("abuffersink")
        node.link_to(sink)
        self._graph.configure()
        self._next_pts = 0

    def push(self, audio: np.ndarray) -> np.ndarray:
        if audio.size == 0:
            return audio
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(audio, dtype=np.float32)[None, :], format="flt", layout="mono"
        )
        frame.sample_rate = self.sample_rate
        frame.pts = self._next_pts
        self._next_pts += audio.size
        self._graph.push(frame)
        return self._pull()

    def flush(self) -> np.ndarray:
        self._graph.push(None)
        return self._pull()

    def _pull(self) -> np.ndarray:
        pieces = []
        while True:
            try:
                frame = self._graph.pull()
            except (av.BlockingIOError, av.EOFError):
                break
            pieces.append(frame.to_ndarray().reshape(-1).astype(np.float32))
        return np.concatenate(pieces) if pieces else np.zeros(0, np.float32)


def _atempo_factors(speed: float) -> list[float]:
    """atempo takes 0.5..100 per stage; slower speeds chain several 0.5 stages."""
    factors = []
    while speed < 0.5:
        factors.append(0.5)
        speed /= 0.5
    factors.append(speed)
    return factors


def decode_upload(data: bytes, *, max_seconds: float, param: str = "audio_sample") -> tuple[np.ndarray, int]:
    """Decodes any common audio file into mono float32 at its own sample rate.

    Stops decoding as soon as the clip is longer than `max_seconds`, so a huge clip costs little.
    """
    try:
        container = av.open(io.BytesIO(data), "r")
    except (av.FFmpegError, ValueError, OSError) as error:
        raise InvalidRequest("the uploaded file is not a readable audio file", param=param) from error
    with container:
        if not container.streams.audio:
            raise InvalidRequest("the uploaded file contains no audio stream", param=param)
        stream = container.streams.audio[0]
        pieces: list[np.ndarray] = []
        total = 0
        sample_rate = 0
        resampler = None
        try:
            for frame in container.decode(stream):
                if resampler is None:
                    sample_rate = frame.sample_rate
                    resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
                for mono in resampler.resample(frame):
                    samples = mono.to_ndarray().reshape(-1)
                    pieces.append(samples)
                    total += samples.size
                if total > max_seconds * sample_rate:
                    raise InvalidRequest(
                        f"the uploaded audio is longer than the {max_seconds:g} s limit; trim it", param=param
                    )
        except av.FFmpegError as error:
            raise InvalidRequest("the uploaded audio could not be decoded", param=param) from error
    if total == 0:
        raise InvalidRequest("the uploaded file contains no audio samples", param=param)
    return np.concatenate(pieces).astype(np.float32), sample_rate
