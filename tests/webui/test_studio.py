"""The studio in a real browser against a real server: generate and hear streamed speech with its
metrics, clone/use/delete a voice, refuse over-long input, surface server errors, fit a phone."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from .harness import StudioServer, save_screenshot

pytestmark = pytest.mark.e2e

SPEECH_PATH = "/v1/audio/speech"


def record_speech_requests(page: Page) -> list[dict]:
    """Collects the JSON bodies the page posts to the speech endpoint."""
    bodies: list[dict] = []
    page.on("request", lambda r: bodies.append(r.post_data_json) if r.url.endswith(SPEECH_PATH) else None)
    return bodies


def text_box(page: Page):
    return page.get_by_label("Text to speak")


def generate_button(page: Page):
    return page.get_by_role("button", name="Generate", exact=True)


def expect_played_with_metrics(page: Page) -> None:
    # "ended" is reported only after every scheduled chunk has played through Web Audio.
    expect(page.get_by_test_id("player-status")).to_have_attribute("data-player", "ended")
    expect(page.get_by_test_id("metric-ttfa")).to_have_text(re.compile(r"^\d+ ms$"))
    expect(page.get_by_test_id("metric-rtf")).to_have_text(re.compile(r"^\d+\.\d\d×$"))
    expect(page.get_by_test_id("metric-duration")).to_have_text(re.compile(r"^\d+\.\d\d s$"))
    assert page.get_by_test_id("metric-duration").inner_text() != "0.00 s"


# Random tiny models end an utterance after ~1-2 s, but now and then after a few tokens (8 in 1 of 400
# seeds), which fits the 0.4 s first chunk: one SSE event. This seed speaks 37 tokens, so two.
SEED_WITH_TWO_CHUNKS = 7


def test_typed_text_streams_audio_and_shows_metrics(page: Page) -> None:
    requests = record_speech_requests(page)
    text = "Hello from the studio. This sentence is streamed as it is spoken. A third one follows."
    page.get_by_label("Seed", exact=True).fill(str(SEED_WITH_TWO_CHUNKS))
    text_box(page).fill(text)
    expect(page.get_by_test_id("char-count")).to_have_text(f"{len(text)} / 4,096 characters")
    with page.expect_response(lambda r: r.url.endswith(SPEECH_PATH)) as speech:
        text_box(page).press("Control+Enter")  # the keyboard shortcut, not the mouse

    expect_played_with_metrics(page)
    # The server sent the audio in several SSE chunks, and every one reached the player.
    assert speech.value.headers["content-type"].startswith("text/event-stream")
    deltas = speech.value.text().count('"speech.audio.delta"')
    assert deltas >= 2
    expect(page.get_by_test_id("waveform")).to_have_attribute("data-chunks", str(deltas))
    assert len(requests) == 1
    assert requests[0]["stream_format"] == "sse"
    assert requests[0]["input"] == text
    assert requests[0]["voice"] == "default"
    assert requests[0]["seed"] == SEED_WITH_TWO_CHUNKS
    assert page.get_by_test_id("waveform").locator("rect").count() > 0
    history = page.get_by_role("list", name="Past generations")
    expect(history).to_contain_text(text)
    expect(history).to_contain_text("done")
    save_screenshot(page, "studio-after-generation")

    # Sessions (with their audio and metrics) survive a reload and can be replayed.
    page.reload()
    expect(history.get_by_role("listitem")).to_have_count(1)
    expect(page.get_by_test_id("metric-ttfa")).to_have_text(re.compile(r"^\d+ ms$"))
    page.get_by_role("button", name="▶ Play").click()
    expect(page.get_by_test_id("player-status")).to_have_attribute("data-player", "ended")


def test_download_in_the_chosen_format(page: Page) -> None:
    requests = record_speech_requests(page)
    text_box(page).fill("Save this line to a file.")
    generate_button(page).click()
    expect_played_with_metrics(page)

    # WAV is assembled in the browser from the streamed samples.
    with page.expect_download() as wav_download:
        page.get_by_role("button", name="Download").click()
    wav = Path(wav_download.value.path()).read_bytes()
    assert wav_download.value.suggested_filename.endswith(".wav")
    assert wav[:4] == b"RIFF" and wav[8:12] == b"WAVE"
    assert struct.unpack_from("<HHI", wav, 20) == (1, 1, 24_000)  # PCM, mono, 24 kHz
    assert len(wav) > 44

    # Compressed formats are encoded by the server from the session's recorded seed.
    page.get_by_label("Format").select_option("mp3")
    with page.expect_download() as mp3_download:
        page.get_by_role("button", name="Download").click()
    mp3 = Path(mp3_download.value.path()).read_bytes()
    assert mp3_download.value.suggested_filename.endswith(".mp3")
    assert mp3[:3] == b"ID3" or (mp3[0] == 0xFF and mp3[1] & 0xE0 == 0xE0)
    # No seed was set: the session drew one, and the download re-ran the session with it.
    assert [request["response_format"] for request in requests] == ["pcm", "mp3"]
    assert isinstance(requests[0]["seed"], int) and requests[1]["seed"] == requests[0]["seed"]


def test_clone_voice_then_generate_with_it_and_delete_it(
    page: Page, studio_server: StudioServer, reference_wav
) -> None:
    library = page.get_by_role("region", name="Voice library")
    library.get_by_label("Voice name").fill("E2E Narrator")
    library.get_by_label(re.compile("Reference audio")).set_input_files(reference_wav)
    library.get_by_role("button", name="Clone voice").click()

    row = library.get_by_test_id("voice-row").filter(has_text="E2E Narrator")
    expect(row).to_be_visible()
    voice_id = row.get_attribute("data-voice-id")
    assert voice_id and voice_id in studio_server.voice_ids()
    picker = page.get_by_label("Voice", exact=True)
    expect(picker).to_have_value(voice_id)  # a new clone is selected straight away
    expect(picker.locator(f'option[value="{voice_id}"]')).to_contain_text("E2E Narrator")
    save_screenshot(page, "studio-voice-cloned")

    preview = row.get_by_role("button", name="Preview E2E Narrator")
    with page.expect_response(lambda r: r.url.endswith(f"/v1/audio/voices/{voice_id}/sample")) as sample:
        preview.click()
    assert sample.value.status == 200
    expect(preview).to_have_text("♪ Playing")
    expect(preview).to_have_text("▶ Preview")  # the whole reference clip played through
    expect(page.get_by_role("alert")).to_have_count(0)

    requests = record_speech_requests(page)
    text_box(page).fill("Now speaking with the freshly cloned voice.")
    generate_button(page).click()
    expect_played_with_metrics(page)
    assert requests[-1]["voice"] == voice_id

    row.get_by_role("button", name="Delete E2E Narrator").click()
    confirm = row.get_by_role("group", name="Confirm deleting E2E Narrator")
    expect(confirm).to_be_visible()
    save_screenshot(page, "studio-voice-delete-confirmation")
    confirm.get_by_role("button", name="Confirm delete").click()

    expect(row).to_have_count(0)
    expect(picker).to_have_value("default")
    expect(picker.locator(f'option[value="{voice_id}"]')).to_have_count(0)
    assert voice_id not in studio_server.voice_ids()


def test_record_a_sample_and_clone_it(page: Page, studio_server: StudioServer) -> None:
    page.context.grant_permissions(["microphone"])
    library = page.get_by_role("region", name="Voice library")
    library.get_by_label("Voice name").fill("Recorded Voice")
    library.get_by_role("button", name="● Record").click()
    stop = library.get_by_role("button", name="■ Stop recording")
    expect(stop).to_be_visible()
    page.wait_for_timeout(2500)  # record a couple of seconds from the synthetic microphone
    stop.click()
    expect(library.get_by_text(re.compile(r"^recording\.(webm|ogg|m4a)$"))).to_be_visible()
    library.get_by_role("button", name="Clone voice").click()

    row = library.get_by_test_id("voice-row").filter(has_text="Recorded Voice")
    expect(row).to_be_visible()
    assert row.get_attribute("data-voice-id") in studio_server.voice_ids()


def test_input_over_4096_characters_is_refused_with_a_message(page: Page) -> None:
    requests = record_speech_requests(page)
    text_box(page).fill("a" * 4097)

    expect(page.get_by_role("alert")).to_have_text("Text is 4,097 characters; the limit is 4,096.")
    expect(page.get_by_test_id("char-count")).to_have_text("4,097 / 4,096 characters")
    expect(generate_button(page)).to_be_disabled()
    text_box(page).press("Control+Enter")
    save_screenshot(page, "studio-input-too-long", full_page=False)

    text_box(page).press("End")
    text_box(page).press("Backspace")
    expect(generate_button(page)).to_be_enabled()
    expect(page.get_by_role("alert")).to_have_count(0)
    assert requests == []  # neither the button nor the shortcut sent anything while over the limit


def test_server_error_is_shown_in_a_toast(page: Page, studio_server: StudioServer, reference_wav) -> None:
    # A voice that someone deletes after this page loaded its voice list: the server refuses it.
    voice_id = studio_server.clone_voice("Soon Gone", reference_wav)
    page.reload()
    page.get_by_label("Voice", exact=True).select_option(voice_id)
    status, _ = studio_server.api("DELETE", f"/v1/audio/voices/{voice_id}")
    assert status in (200, 204)

    text_box(page).fill("This request names a voice that no longer exists.")
    generate_button(page).click()

    toast = page.get_by_role("alert").filter(has_text="Generation failed")
    expect(toast).to_be_visible()
    expect(toast.get_by_test_id("toast-message")).to_contain_text(voice_id)
    expect(toast.get_by_test_id("toast-message")).to_contain_text("not found")
    expect(page.get_by_role("list", name="Past generations")).to_contain_text("error")
    expect(generate_button(page)).to_be_enabled()
    save_screenshot(page, "studio-server-error-toast", full_page=False)
    toast.get_by_role("button", name="Dismiss notification").click()
    expect(toast).to_have_count(0)


def test_works_at_phone_width(browser, studio_server: StudioServer) -> None:
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True, base_url=studio_server.url
    )
    try:
        phone = context.new_page()
        phone.goto("/")
        text_box(phone).fill("Small screens get the whole studio too.")
        generate_button(phone).tap()
        expect_played_with_metrics(phone)
        # Nothing may stick out sideways: the page must not scroll horizontally.
        assert phone.evaluate("document.documentElement.scrollWidth") <= 390
        for name in ("Text", "Player", "Parameters", "Voice library", "Sessions"):
            expect(phone.get_by_role("region", name=name)).to_be_visible()
        save_screenshot(phone, "studio-phone")
    finally:
        context.close()
