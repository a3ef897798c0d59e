"""Splits long input into sentence-sized pieces: Chatterbox garbles past ~300 characters per call."""

from __future__ import annotations

import re

_SENTENCE_END = re.compile(r"(?<=[.!?…;:])\s+|\n+")
_WORD_GAP = re.compile(r"\s+")


def split_for_synthesis(text: str, max_chars: int) -> list[str]:
    """Sentence-aligned pieces of at most `max_chars` (a longer sentence is cut at word gaps)."""
    pieces: list[str] = []
    current = ""
    for sentence in _SENTENCE_END.split(text.strip()):
        sentence = sentence.strip()
        if not sentence:
            continue
        for part in _cut_long(sentence, max_chars):
            if current and len(current) + 1 + len(part) > max_chars:
                pieces.append(current)
                current = part
            else:
                current = f"{current} {part}" if current else part
    if current:
        pieces.append(current)
    return pieces


def _cut_long(sentence: str, max_chars: int) -> list[str]:
    if len(sentence) <= max_chars:
        return [sentence]
    parts: list[str] = []
    current = ""
    for word in _WORD_GAP.split(sentence):
        while len(word) > max_chars:  # one unbroken run of characters: cut it hard
            if current:
                parts.append(current)
                current = ""
            parts.append(word[:max_chars])
            word = word[max_chars:]
        if current and len(current) + 1 + len(word) > max_chars:
            parts.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    if current:
        parts.append(current)
    return parts
