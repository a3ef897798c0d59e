"""Text front end: upstream punctuation normalisation, splitting long text into sentence-aligned pieces
that each fit one T3 generation, and the English BPE tokenizer. The parts every variant's tokenizer
shares live here too: the English-only language check (`EnglishOnly`), the [SPACE]-token encoding of
the English and multilingual vocabularies (`SpacedTokenizer`) and the makers of random-model vocabularies."""

from __future__ import annotations

import re
import string
from pathlib import Path

import torch
from tokenizers import Tokenizer
from tokenizers.models import BPE
from tokenizers.pre_tokenizers import Whitespace

from .errors import InvalidParameterError, InvalidTextError

SPACE_TOKEN = "[SPACE]"
UNK_TOKEN = "[UNK]"
START_TOKEN = "[START]"
STOP_TOKEN = "[STOP]"
TOKENIZER_FILE = "tokenizer.json"

MAX_TEXT_CHARS = 20_000
# One T3 generation stops after 1000 tokens (40 s); ~300 characters of English stay well inside it.
MAX_PIECE_CHARS = 300

PUNCTUATION_REPLACEMENTS = (
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

# Turbo's paralinguistic tags: the 19 added tokens (ids 50257-50275) of the official `added_tokens.json`,
# sounds then delivery styles. The random-weight Turbo/Nano tokenizers carry them too; a loaded model's
# own set is its tokenizer's `tags`. Models without tags have these removed from the text (reported
# back as dropped) instead of spelling them out.
PARALINGUISTIC_TAGS = (
    "[laugh]",
    "[chuckle]",
    "[gasp]",
    "[cough]",
    "[sigh]",
    "[groan]",
    "[sniff]",
    "[shush]",
    "[clear throat]",
    "[angry]",
    "[crying]",
    "[dramatic]",
    "[fear]",
    "[happy]",
    "[narration]",
    "[sarcastic]",
    "[surprised]",
    "[whispering]",
    "[advertisement]",
)
_TAG = re.compile(r"\[[a-z][a-z ]*\]")


def is_tag(token: str) -> bool:
    """A paralinguistic tag's spelling: lower-case words in square brackets, e.g. `[clear throat]`."""
    return _TAG.fullmatch(token) is not None


def drop_tags(text: str, understood: tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
    """Remove the known paralinguistic tags a model does not understand (with the spaces before them);
    returns the text and the distinct tags removed, in order of appearance. Tags it understands, and
    bracketed words that are no tag, stay as written."""
    unknown = [tag for tag in PARALINGUISTIC_TAGS if tag not in understood]
    if not unknown or "[" not in text:
        return text, ()
    pattern = re.compile(r"[ \t]*(" + "|".join(map(re.escape, unknown)) + ")")
    dropped = tuple(dict.fromkeys(match.group(1) for match in pattern.finditer(text)))
    return (pattern.sub("", text) if dropped else text), dropped


def punc_norm(
    text: str,
    replacements: tuple[tuple[str, str], ...] = PUNCTUATION_REPLACEMENTS,
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


# A few frequent English pairs, so the maker's tokenizer really is a BPE with merges.
_MERGES = [("t", "h"), ("i", "n"), ("th", "e"), ("a", "n"), ("e", "r"), ("o", "u"), ("r", "e"), ("o", "n")]


_EXTRA_SYMBOLS = "‐‑‒–—―‘’‚‛“”„‟…" + "".join(chr(c) for c in range(0xA1, 0x100) if chr(c).isprintable())


def make_tokenizer_json(vocab_size: int = 704) -> str:
    """A `tokenizer.json` laid out like the official English one: [STOP]=0, [UNK]=1, [SPACE]=2,
    printable ASCII characters and a few merges, [START]=255, Latin-1 and typographic punctuation,
    placeholders up to vocab_size."""
    vocab = {STOP_TOKEN: 0, UNK_TOKEN: 1, SPACE_TOKEN: 2}
    for symbol in string.ascii_letters + string.digits + string.punctuation:
        vocab[symbol] = len(vocab)
    for left, right in _MERGES:
        vocab[left + right] = len(vocab)
    start_id = 255
    pad_vocab(vocab, start_id)
    vocab[START_TOKEN] = start_id
    # Like the official vocabulary, Latin-1 letters and typographic punctuation follow [START].
    for symbol in _EXTRA_SYMBOLS:
        vocab[symbol] = len(vocab)
    pad_vocab(vocab, vocab_size)
    return spaced_tokenizer_json(vocab, _MERGES, [STOP_TOKEN, UNK_TOKEN, SPACE_TOKEN, START_TOKEN])


def pad_vocab(vocab: dict[str, int], size: int) -> None:
    """Fill unused ids up to size with placeholder entries, as the official vocabularies have."""
    while len(vocab) < size:
        vocab[f"[PLACEHOLDER{len(vocab)}]"] = len(vocab)


def spaced_tokenizer_json(vocab: dict[str, int], merges: list[tuple[str, str]], specials: list[str]) -> str:
    """A whitespace-split BPE over vocab with [UNK] for unknown symbols, as the official files are."""
    tokenizer = Tokenizer(BPE(vocab=vocab, merges=merges, unk_token=UNK_TOKEN))
    tokenizer.pre_tokenizer = Whitespace()
    tokenizer.add_special_tokens(specials)
    return tokenizer.to_str()


class EnglishOnly:
    """The language interface of the English-only front ends (English, Turbo)."""

    languages = {"en": "English"}
    unavailable: dict[str, str] = {}

    def check_language(self, language: object) -> str:
        if isinstance(language, str) and language.lower() == "en":
            return "en"
        raise InvalidParameterError(
            f"language {language!r} is not supported by this model, which speaks only English ('en'); "
            "load the multilingual variant for other languages",
            "language",
        )


class SpacedTokenizer:
    """A `tokenizers` vocabulary with [START]/[STOP]/[UNK]/[SPACE] specials, where spaces become the
    literal [SPACE] token before encoding (the English BPE and the multilingual graphemes)."""

    FILE = TOKENIZER_FILE
    tags: tuple[str, ...] = ()  # no paralinguistic tags: the English and multilingual models drop them

    def __init__(self, tokenizer: Tokenizer) -> None:
        vocab = tokenizer.get_vocab()
        missing = [t for t in (START_TOKEN, STOP_TOKEN, UNK_TOKEN, SPACE_TOKEN) if t not in vocab]
        if missing:
            raise ValueError(f"{self.FILE} lacks the special tokens {missing}")
        self.tokenizer = tokenizer
        self.unk_id = vocab[UNK_TOKEN]
        self.start_id = vocab[START_TOKEN]
        self.stop_id = vocab[STOP_TOKEN]

    def files(self) -> dict[str, str]:
        """File name -> text, for writing the tokenizer into a checkpoint folder."""
        return {self.FILE: self.tokenizer.to_str()}

    def _encode_spaced(self, text: str, unknown_message: str) -> list[int]:
        spaced = text.replace(" ", SPACE_TOKEN)
        encoding = self.tokenizer.encode(spaced)
        unknown = sorted(
            {spaced[slice(*encoding.offsets[i])] for i, t in enumerate(encoding.ids) if t == self.unk_id}
        )
        if unknown:
            raise InvalidTextError(f"{unknown_message}: {' '.join(unknown)}")
        return encoding.ids

    def _framed(self, ids: list[int]) -> torch.Tensor:
        """(1, L) ids framed by the start and stop text tokens."""
        return torch.tensor([[self.start_id, *ids, self.stop_id]], dtype=torch.long)


class EnTokenizer(EnglishOnly, SpacedTokenizer):
    """The English BPE (`tokenizer.json`)."""

    @classmethod
    def from_folder(cls, folder: Path) -> EnTokenizer:
        return cls.from_file(folder / TOKENIZER_FILE)

    @classmethod
    def from_file(cls, path: str | Path) -> EnTokenizer:
        return cls(Tokenizer.from_file(str(path)))

    @classmethod
    def from_str(cls, json_text: str) -> EnTokenizer:
        return cls(Tokenizer.from_str(json_text))

    @classmethod
    def random(cls, vocab_size: int) -> EnTokenizer:
        """The tokenizer of random-weight models (`make_tokenizer_json`)."""
        return cls.from_str(make_tokenizer_json(vocab_size))

    def encode(self, text: str) -> list[int]:
        """Normalised text -> token ids; characters the vocabulary lacks raise InvalidTextError."""
        return self._encode_spaced(text, "text contains unsupported characters")

    def text_tokens(self, text: str, language: str = "en") -> torch.Tensor:
        """Normalised text -> (1, L) ids framed by the start and stop text tokens."""
        return self._framed(self.encode(text))
