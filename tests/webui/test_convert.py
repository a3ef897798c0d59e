"""The studio's Convert panel in a real browser against a real server: upload or record a clip, pick a
voice, hear the conversion and download it; a file that is not audio gets the server's reason."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from .harness import StudioServer, save_screenshot

pytestmark = pytest.mark.e2e


def convert_panel(page: Page):
    return page.get_by_role("region", name="Convert a recording")


def test_upload_a_clip_convert_it_into_a_library_voice_play_and_download(
    page: Page, studio_server: StudioServer, reference_wav: Path
) -> None:
    voice_id = studio_server.clone_voice("Convert Target", reference_wav)
    page.reload()
    panel = convert_panel(page)
    panel.get_by_label(re.compile("Speech to convert")).set_input_files(reference_wav)
    panel.get_by_label("Target voice").select_option(voice_id)
    with page.expect_response(lambda r: r.url.endswith("/v1/audio/voice-conversion")) as reply:
        panel.get_by_role("button", name="Convert", exact=True).click()
    assert reply.value.status == 200

    result = panel.get_by_role("group", name="Converted audio")
    expect(result).to_contain_text("Convert Target")
    player = result.get_by_test_id("converted-audio")
    # The browser decodes the result: as long as the 4 s source, and it plays through.
    duration = player.evaluate(
        "a => a.readyState >= 1 ? a.duration : new Promise(r => a.addEventListener('loadedmetadata', () => r(a.duration)))"
    )
    assert abs(duration - 4.0) < 0.1
    assert player.evaluate("a => a.play().then(() => new Promise(r => a.addEventListener('ended', () => r(true))))")
    save_screenshot(page, "studio-convert")

    with page.expect_download() as download:
        result.get_by_role("link", name=re.compile("Download")).click()
    wav = Path(download.value.path()).read_bytes()
    assert download.value.suggested_filename == "narrator-as-Convert Target.wav"
    assert wav[:4] == b"RIFF" and struct.unpack_from("<HHI", wav, 20) == (1, 1, 24_000)
    assert struct.unpack_from("<I", wav, 40)[0] == len(wav) - 44 == 4 * 24_000 * 2  # a real length


def test_record_a_clip_and_convert_it(page: Page) -> None:
    page.context.grant_permissions(["microphone"])
    panel = convert_panel(page)
    panel.get_by_role("button", name="● Record").click()
    stop = panel.get_by_role("button", name="■ Stop recording")
    expect(stop).to_be_visible()
    page.wait_for_timeout(2000)  # a couple of seconds from the synthetic microphone
    stop.click()
    expect(panel.get_by_text(re.compile(r"^recording\.(webm|ogg|m4a)$"))).to_be_visible()
    panel.get_by_label("File type").select_option("mp3")
    panel.get_by_role("button", name="Convert", exact=True).click()
    expect(panel.get_by_role("link", name=re.compile(r"Download recording-as-default\.mp3"))).to_be_visible()


def test_a_file_that_is_not_audio_shows_the_servers_reason(page: Page, tmp_path: Path) -> None:
    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("these are not samples")
    panel = convert_panel(page)
    panel.get_by_label(re.compile("Speech to convert")).set_input_files(not_audio)
    panel.get_by_role("button", name="Convert", exact=True).click()
    toast = page.get_by_role("alert")
    expect(toast).to_contain_text("Conversion failed")
    expect(toast).to_contain_text("not a readable audio file")
    expect(panel.get_by_role("group", name="Converted audio")).to_have_count(0)
