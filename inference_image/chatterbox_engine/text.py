"""Text front end: upstream punctuation normalisation, the English BPE tokenizer, and splitting long
text into sentence-aligned pieces that each fit one T3 generation."""

from __future__ import annotations

import re
from pathlib import Path

import torch
from tokenizers import Tokenizer

from .errors import InvalidTextError

SPACE_TOKEN = "[SPACE]"
UNK_TOKEN = "[UNK]"
START_TOKEN = "[START]"
STOP_TOKEN = "[STOP]"

MAX_TEXT_CHARS = 20_000
# One T3 generation stops after 1000 tokens (40 s); ~300 characters of English stay well inside it.
MAX_PIECE_CHARS = 300

_PUNCTUATION_REPLACEMENTS = (
    ("...", ", "),
    ("…", ", "),
    (":", ","),
    (" - ", ", "),
    (";", ", "),
    ("—", "-"),
    ("–", "-"),
    (" ,", ","),
    ("“", '"'),
    ("”", '"'),
    ("‘", "'"),
    ("’", "'"),
)
_SENTENCE_ENDINGS = (".", "!", "?", "-", ",")


def punc_norm(
    text: str,
    replacements: tuple[tuple[str, str], ...] = _PUNCTUATION_REPLACEMENTS,
    endings: tuple[str, ...] = _SENTENCE_ENDINGS,
) -> str:
    """Upstream's cleanup of punctuation the model rarely saw (callers reject empty text first);
    variants pass their own replacement table and accepted sentence endings."""
    if text[:1].islower():
        text = text[0].upper() + text[1:]
    text = " ".join(text.split())
    for old, new in replacements:
        text = text.replace(old, new)
    text = text.rstrip(" ")
    if not text.endswith(endings):
        text += "."
    return text


def check_text(text: object) -> str:
    """Reject what no model can speak: non-strings, empty or whitespace-only text, huge inputs,
    control characters."""
    if not isinstance(text, str):
        raise InvalidTextError(f"text must be a string, got {type(text).__name__}")
    if not text.strip():
        raise InvalidTextError("text is empty: give at least one word to speak")
    if len(text) > MAX_TEXT_CHARS:
        raise InvalidTextError(f"text is too long: {len(text)} characters, at most {MAX_TEXT_CHARS}")
    control = sorted({c for c in text if ord(c) < 32 and c not in "\t\n\r" or 0x7F <= ord(c) < 0xA0})
    if control:
        raise InvalidTextError(f"text contains control characters: {', '.join(map(repr, control))}")
    return text


def split_sentences(text: str, max_chars: int = MAX_PIECE_CHARS) -> list[str]:
    """Split text at sentence boundaries into pieces of at most ~max_chars, packing short sentences
    together; an over-long sentence is cut at commas, then at spaces."""
    sentences = [s for s in re.split(r"(?<=[.!?…])\s+|\n\s*\n", text.strip()) if s.strip()]
    pieces: list[str] = []
    for sentence in sentences:
        for part in _cut_long(sentence.strip(), max_chars):
            if pieces and len(pieces[-1]) + 1 + len(part) <= max_chars:
                pieces[-1] = f"{pieces[-1]} {part}"
            else:
                pieces.append(part)
    return pieces


def _cut_long(sentence: str, max_chars: int) -> list[str]:
    if len(sentence) <= max_chars:
        return [sentence]
    for separator in (", ", " "):
        parts = sentence.split(separator)
        if len(parts) > 1:
            out: list[str] = []
            for part in parts:
                candidate = f"{out[-1]}{separator}{part}" if out else part
                if out and len(candidate) <= max_chars:
                    out[-1] = candidate
                else:
                    out.extend(_cut_long(part, max_chars) if len(part) > max_chars else [part])
            return out
    return [sentence[i : i + max_chars] for i in range(0, len(sentence), max_chars)]


class EnTokenizer:
    """The English BPE (`tokenizer.json`): spaces become the literal [SPACE] token before encoding."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        vocab = tokenizer.get_vocab()
        missing = [t for t in (START_TOKEN, STOP_TOKEN, UNK_TOKEN, SPACE_TOKEN) if t not in vocab]
        if missing:
            raise ValueError(f"tokenizer.json lacks the special tokens {missing}")
        self.tokenizer = tokenizer
        self.unk_id = vocab[UNK_TOKEN]
        self.start_id = vocab[START_TOKEN]
        self.stop_id = vocab[STOP_TOKEN]

    @classmethod
    def from_file(cls, path: str | Path) -> EnTokenizer:
        return cls(Tokenizer.from_file(str(path)))

    @classmethod
    def from_str(cls, json_text: str) -> EnTokenizer:
        return cls(Tokenizer.from_str(json_text))

    def encode(self, text: str) -> list[int]:
        """Normalised text -> token ids; characters the vocabulary lacks raise InvalidTextError."""
        spaced = text.replace(" ", SPACE_TOKEN)
        encoding = self.tokenizer.encode(spaced)
        unknown = sorted(
            {spaced[slice(*encoding.offsets[i])] for i, t in enumerate(encoding.ids) if t == self.unk_id}
        )
        if unknown:
            raise InvalidTextError(f"text contains unsupported characters: {' '.join(unknown)}")
        return encoding.ids

    def text_tokens(self, text: str) -> torch.Tensor:
        """Normalised text -> (1, L) ids framed by the start and stop text tokens."""
        return torch.tensor([[self.start_id, *self.encode(text), self.stop_id]], dtype=torch.long)
