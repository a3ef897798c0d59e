"""Runs a real `chatterbox-server` process (CHATTERBOX_MODEL=random:tiny) per test module, over real HTTP."""

from __future__ import annotations

import dataclasses
import io
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import av
import httpx
import numpy as np
import pytest

STARTUP_TIMEOUT_S = 300
# Generous: the CPU may be shared; the tests assert behaviour, never speed.
CLIENT_TIMEOUT_S = 600


@dataclasses.dataclass
class RunningServer:
    url: str
    process: subprocess.Popen
    voice_dir: Path
    log_path: Path

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=CLIENT_TIMEOUT_S, **kwargs)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(workdir: Path, voice_dir: Path | None = None, **settings: object) -> RunningServer:
    """Starts the console script with `settings` as environment variables; returns once /readyz is 200."""
    return wait_until_ready(launch_server(workdir, voice_dir, **settings))


def launch_server(workdir: Path, voice_dir: Path | None = None, **settings: object) -> RunningServer:
    """Starts the console script with `settings` as environment variables; returns at once."""
    port = free_port()
    voice_dir = voice_dir or workdir / "voices"
    env = {
        **os.environ,
        "CHATTERBOX_MODEL": "random:tiny",
        "API_HOST": "127.0.0.1",
        "API_PORT": str(port),
        "VOICE_LIBRARY_DIR": str(voice_dir),
        "WEBUI_DIR": str(workdir / "no-webui"),
        "LOG_LEVEL": "info",
    }
    env.update({key.upper(): str(value) for key, value in settings.items()})
    log_path = workdir / "server.log"
    server_script = Path(sys.executable).parent / "chatterbox-server"
    process = subprocess.Popen(
        [str(server_script)], env=env, cwd=workdir, stdout=log_path.open("wb"), stderr=subprocess.STDOUT
    )
    return RunningServer(f"http://127.0.0.1:{port}", process, voice_dir, log_path)


def wait_until_ready(server: RunningServer) -> RunningServer:
    """Waits for /readyz 200 (the server listens at once and loads the model in the background)."""
    process = server.process
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"chatterbox-server exited with {process.returncode}:\n{server.log_tail()}")
        try:
            if httpx.get(f"{server.url}/readyz", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    server.stop()
    pytest.fail(f"chatterbox-server was not ready within {STARTUP_TIMEOUT_S} s:\n{server.log_tail()}")


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """The shared server. Small text pieces (MAX_CHUNK_CHARS=50) make sentence chunking visible with short,
    quick inputs."""
    running = start_server(
        tmp_path_factory.mktemp("server"), max_concurrent=2, max_queue=32, max_chunk_chars=50
    )
    yield running
    running.stop()


def decode_audio(data: bytes) -> tuple[np.ndarray, int, str]:
    """Decodes an encoded clip with PyAV: (mono samples, sample rate, codec name)."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        frames = [frame.to_ndarray().reshape(frame.samples, -1)[:, 0] for frame in container.decode(stream)]
        rate = stream.codec_context.sample_rate
        codec = stream.codec_context.name
    return np.concatenate(frames).astype(np.float32), rate, codec


def speech_sample(seconds: float = 3.0, audio_format: str = "mp3", sample_rate: int = 22_050) -> bytes:
    """A voice-like reference clip (a gliding tone with harmonics) encoded with PyAV."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    pitch = 140 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / sample_rate
    audio = sum(0.25 / k * np.sin(k * phase) for k in range(1, 6)).astype(np.float32)
    buffer = io.BytesIO()
    codec = {"mp3": "libmp3lame", "wav": "pcm_s16le", "flac": "flac", "ogg": "libopus"}[audio_format]
    with av.open(buffer, "w", format=audio_format) as container:
        stream = container.add_stream(
            codec, rate=48_000 if codec == "libopus" else sample_rate, layout="mono"
        )
        frame = av.AudioFrame.from_ndarray(audio[None, :], format="flt", layout="mono")
        frame.sample_rate = sample_rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()


def pcm_seconds(data: bytes, sample_rate: int = 24_000) -> float:
    return len(data) / 2 / sample_rate


def gauge(server: RunningServer, name: str) -> float:
    for line in httpx.get(f"{server.url}/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not exported")


def wait_until_idle(server: RunningServer, attempts: int = 1200) -> None:
    for _ in range(attempts):
        if (
            gauge(server, "chatterbox_inflight_requests") == 0
            and gauge(server, "chatterbox_queue_depth") == 0
        ):
            return
        time.sleep(0.1)
    raise AssertionError("the server never went idle: a slot leaked")
