"""Live mode in a real browser against a real server: text typed into the socket is spoken sentence by
sentence while the user is still typing, and the whole session is kept like any other."""

from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import Page, WebSocket, expect

from .harness import save_screenshot

pytestmark = pytest.mark.e2e


def test_live_mode_speaks_each_sentence_while_typing(page: Page) -> None:
    sent: list[dict] = []

    def watch(socket: WebSocket) -> None:
        if socket.url.endswith("/v1/audio/speech/stream"):
            socket.on("framesent", lambda payload: sent.append(json.loads(payload)))

    page.on("websocket", watch)
    page.get_by_role("button", name="Go live").click()
    box = page.get_by_label("Text to speak")
    box.press_sequentially("Hello from live mode. ", delay=20)

    # The first sentence is heard before the user is done: audio arrives while the session is still live.
    waveform = page.get_by_test_id("waveform")
    expect(waveform).to_have_attribute("data-chunks", re.compile(r"^[1-9]\d*$"))
    expect(page.get_by_test_id("live-status")).to_have_text(re.compile("^Live"))

    box.press_sequentially("And this is the end.", delay=20)
    page.get_by_role("button", name="Finish").click()
    expect(page.get_by_test_id("player-status")).to_have_attribute("data-player", "ended")
    expect(page.get_by_test_id("metric-duration")).to_have_text(re.compile(r"^\d+\.\d\d s$"))

    text = "Hello from live mode. And this is the end."
    appended = [message["text"] for message in sent if message["type"] == "input.append"]
    assert "".join(appended) == text and len(appended) > 2  # typed in as it was written
    assert sent[0]["type"] == "session.update" and sent[0]["session"]["response_format"] == "pcm"
    assert sent[-1] == {"type": "input.done"}
    history = page.get_by_role("list", name="Past generations")
    expect(history).to_contain_text(text)
    expect(history).to_contain_text("done")
    save_screenshot(page, "studio-live-mode")
