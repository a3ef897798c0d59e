"""Browser end-to-end fixtures: the built web UI served by a real `chatterbox-server` (random:tiny
weights), driven by headless Debian Chromium through Playwright. No browser is ever downloaded."""

from __future__ import annotations

import math
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
import wave
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from .harness import StudioServer

REPO = Path(__file__).resolve().parents[2]
WEBUI = REPO / "webui"
CHROMIUM = Path("/usr/bin/chromium")
STARTUP_TIMEOUT_S = 180
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # Generated speech must be allowed to play in a page nobody clicked before.
    "--autoplay-policy=no-user-gesture-required",
    # A synthetic microphone (a steady beep) for the record-a-sample path, granted without a prompt.
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _newest_mtime(folder: Path) -> float:
    return max((p.stat().st_mtime for p in folder.rglob("*") if p.is_file()), default=0.0)


@pytest.fixture(scope="session")
def webui_dist() -> Path:
    """webui/dist, rebuilt when the sources are newer (make test builds it first; this covers plain pytest)."""
    dist = WEBUI / "dist"
    sources_changed = (
        _newest_mtime(WEBUI / "src") > (dist / "index.html").stat().st_mtime if dist.exists() else True
    )
    if sources_changed:
        npm = shutil.which("npm")
        if npm is None:
            pytest.skip("npm is not installed, so the web UI cannot be built")
        if not (WEBUI / "node_modules").is_dir():
            subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=WEBUI, check=True)
        subprocess.run([npm, "run", "build", "--silent"], cwd=WEBUI, check=True)
    return dist


@contextmanager
def run_studio_server(webui_dist: Path, workdir: Path, model: str = "random:tiny") -> Iterator[StudioServer]:
    """A real chatterbox-server serving the built UI with `model` (random weights), until the block ends."""
    port = _free_port()
    env = {
        **os.environ,
        "CHATTERBOX_MODEL": model,
        "VOICE_LIBRARY_DIR": str(workdir / "voices"),
        "API_HOST": "127.0.0.1",
        "API_PORT": str(port),
        "WEBUI_DIR": str(webui_dist),
    }
    log_path = workdir / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "chatterbox-server")],
            env=env,
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = StudioServer(f"http://127.0.0.1:{port}", log_path)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"chatterbox-server exited with {process.returncode}:\n{server.log_tail()}")
            try:
                if server.api("GET", "/readyz")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"chatterbox-server not ready within {STARTUP_TIMEOUT_S} s:\n{server.log_tail()}")
            time.sleep(0.3)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def studio_server(webui_dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StudioServer]:
    with run_studio_server(webui_dist, tmp_path_factory.mktemp("studio-server")) as server:
        yield server


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (make test installs Debian's chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


def studio_page(browser, url: str) -> Iterator[object]:
    """A fresh browser profile (so no sessions persist between tests) on the start page of the studio at url."""
    context = browser.new_context(viewport={"width": 1366, "height": 900}, base_url=url)
    context.set_default_timeout(30_000)
    start_page = context.new_page()
    start_page.goto("/")
    yield start_page
    context.close()


@pytest.fixture
def page(browser, studio_server: StudioServer) -> Iterator[object]:
    yield from studio_page(browser, studio_server.url)


@pytest.fixture(scope="session")
def reference_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four seconds of a voiced, vowel-like tone with syllable-rate loudness changes: enough to clone."""
    path = tmp_path_factory.mktemp("reference") / "narrator.wav"
    rate = 24_000
    frames = bytearray()
    for n in range(rate * 4):
        t = n / rate
        pitch = 120 + 15 * math.sin(2 * math.pi * 0.7 * t)
        envelope = 0.35 + 0.3 * math.sin(2 * math.pi * 3.5 * t) ** 2
        sample = sum(math.sin(2 * math.pi * pitch * k * t) / k for k in range(1, 6))
        frames += struct.pack("<h", int(max(-1.0, min(1.0, envelope * sample * 0.5)) * 32767))
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(bytes(frames))
    return path
