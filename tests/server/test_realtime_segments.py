"""The streaming session's pure parts: sentence segmentation and click-free joins (no server, no model)."""

from __future__ import annotations

import random

import numpy as np
import pytest
from chatterbox_server.services.realtime import MAX_SEGMENT_CHARS, SentenceSegmenter, _EdgeFader

TEXTS = [
    "Hello there. How are you? I'm fine!",
    'He said "stop." Then he left.',
    "Pi is 3.14159 and e is 2.71828. Numbers stay whole.",
    "Wait… what?! Really.",
    "第一句。第二句！第三句？",
    "A line without a stop\nand the next line.",
    "..., !!! Real words.",
    "word " * 150,
]


def segments_of(pieces: list[str]) -> list[str]:
    segmenter = SentenceSegmenter()
    out = [segment for piece in pieces for segment in segmenter.push(piece)]
    return out + segmenter.flush()


@pytest.mark.parametrize("text", TEXTS)
def test_segments_do_not_depend_on_how_the_text_was_split(text: str) -> None:
    whole = segments_of([text])
    assert segments_of(list(text)) == whole
    generator = random.Random(len(text))
    for _ in range(20):
        cuts = sorted(generator.sample(range(1, len(text)), k=min(5, len(text) - 1)))
        pieces = [text[start:end] for start, end in zip([0, *cuts], [*cuts, len(text)], strict=True)]
        assert segments_of(pieces) == whole


def test_sentences_end_at_punctuation_followed_by_space_or_a_line_break() -> None:
    assert segments_of(["Hello there. How are you? I'm fine!"]) == [
        "Hello there.",
        "How are you?",
        "I'm fine!",
    ]
    assert segments_of(['He said "stop." Then he left.']) == ['He said "stop."', "Then he left."]
    assert segments_of(["Pi is 3.14 exactly."]) == ["Pi is 3.14 exactly."]
    assert segments_of(["第一句。第二句！"]) == ["第一句。", "第二句！"]
    assert segments_of(["A line\nanother"]) == ["A line", "another"]


def test_a_sentence_is_complete_once_the_next_character_arrives() -> None:
    segmenter = SentenceSegmenter()
    assert segmenter.push("Hello there.") == []
    assert segmenter.push(" Next") == ["Hello there."]
    assert segmenter.flush() == ["Next"]


def test_a_run_on_is_cut_at_the_length_cap_on_a_space() -> None:
    segments = segments_of(["word " * 150])
    assert all(len(segment) <= MAX_SEGMENT_CHARS for segment in segments)
    assert " ".join(segments).split() == ["word"] * 150
    assert segments_of(["x" * (MAX_SEGMENT_CHARS + 5)]) == ["x" * MAX_SEGMENT_CHARS, "x" * 5]


def test_punctuation_alone_is_not_spoken() -> None:
    assert segments_of(["... !!! ", "Real words."]) == ["Real words."]
    assert segments_of(["  \n  "]) == []


def test_joins_start_and_end_at_silence_and_keep_the_middle() -> None:
    fader = _EdgeFader(120)
    loud = np.full(1000, 20_000, np.int16)
    # Chunk boundaries anywhere: the output is the same.
    out = np.concatenate(
        [fader.push(loud[:50]), fader.push(loud[50:700]), fader.push(loud[700:]), fader.end()]
    )
    assert out.size == loud.size
    assert abs(int(out[0])) < 200 and abs(int(out[-1])) < 200
    assert np.array_equal(out[120:-120], loud[120:-120])
    assert np.all(np.diff(out[:120].astype(int)) >= 0) and np.all(np.diff(out[-120:].astype(int)) <= 0)
    # The next segment ramps in again.
    again = np.concatenate([fader.push(loud), fader.end()])
    assert abs(int(again[0])) < 200 and np.array_equal(again, out)
