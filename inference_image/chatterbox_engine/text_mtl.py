"""Multilingual v2 text front end: language-specific normalisation and the grapheme tokenizer
(`grapheme_mtl_merged_expanded_v1.json`, 2454 entries), as upstream 0.1.7's `MTLTokenizer`.

Every language is lower-cased and NFKD-decomposed, then: ko -> Hangul syllables split into Jamo;
ja -> kanji read as hiragana (pykakasi); zh -> words segmented (spacy-pkuseg) and each Han
character spelt as Cangjie codes `[cj_x]...[cj_.]` from `Cangjie5_TC.json`. Hebrew diacritics and
Russian stress marks are optional upstream (their packages are not dependencies of chatterbox-tts and
the text passes unchanged without them); we follow that default. Then the language tag `[xx]` is
prefixed and spaces become `[SPACE]`.
"""

from __future__ import annotations

import json
import os
import threading
import unicodedata
from collections.abc import Callable
from pathlib import Path

import torch
from tokenizers import Tokenizer

from .errors import InvalidParameterError
from .text import (
    SPACE_TOKEN,
    START_TOKEN,
    STOP_TOKEN,
    UNK_TOKEN,
    SpacedTokenizer,
    pad_vocab,
    spaced_tokenizer_json,
)

MTL_TOKENIZER_FILE = "grapheme_mtl_merged_expanded_v1.json"
CANGJIE_FILE = "Cangjie5_TC.json"
MTL_VOCAB_SIZE = 2454

LANGUAGES = {
    "ar": "Arabic",
    "da": "Danish",
    "de": "German",
    "el": "Greek",
    "en": "English",
    "es": "Spanish",
    "fi": "Finnish",
    "fr": "French",
    "he": "Hebrew",
    "hi": "Hindi",
    "it": "Italian",
    "ja": "Japanese",
    "ko": "Korean",
    "ms": "Malay",
    "nl": "Dutch",
    "no": "Norwegian",
    "pl": "Polish",
    "pt": "Portuguese",
    "ru": "Russian",
    "sv": "Swedish",
    "sw": "Swahili",
    "tr": "Turkish",
    "zh": "Chinese",
}
# Sentence endings upstream's multilingual punc_norm accepts besides the English ones.
CJK_SENTENCE_ENDINGS = ("、", "，", "。", "？", "！")


def korean_to_jamo(text: str) -> str:
    """Split precomposed Hangul syllables into leading consonant, vowel and optional final Jamo."""
    out = []
    for char in text:
        code = ord(char) - 0xAC00
        if 0 <= code < 11172:
            out.append(chr(0x1100 + code // 588) + chr(0x1161 + (code % 588) // 28))
            if code % 28:
                out.append(chr(0x11A7 + code % 28))
        else:
            out.append(char)
    return "".join(out).strip()


def _is_kanji(char: str) -> bool:
    return 0x4E00 <= ord(char) <= 0x9FFF


def _is_katakana(char: str) -> bool:
    return 0x30A1 <= ord(char) <= 0x30FA


class JapaneseReader:
    """Kanji phrases -> hiragana (pykakasi); katakana and kana kept; then NFKD."""

    def __init__(self) -> None:
        import pykakasi

        self._kakasi = pykakasi.kakasi()
        self._lock = threading.Lock()  # pykakasi keeps per-call state

    def __call__(self, text: str) -> str:
        with self._lock:
            phrases = self._kakasi.convert(text)
        out = []
        for phrase in phrases:
            original, hiragana = phrase["orig"], phrase["hira"]
            if any(_is_kanji(c) for c in original):
                # A particle read as は/へ starts a new word in upstream's training text.
                out.append(" " + hiragana if hiragana[:1] in ("は", "へ") else hiragana)
            else:
                out.append(original)
        return unicodedata.normalize("NFKD", "".join(out))


def pkuseg_model_dir() -> Path:
    """Where spacy-pkuseg keeps its downloaded default model ($PKUSEG_HOME, else ~/.pkuseg)."""
    home = Path(os.path.expanduser(os.environ.get("PKUSEG_HOME", "~/.pkuseg")))
    return home / "spacy_ontonotes"


class ChineseCangjie:
    """Segment into words (spacy-pkuseg), then spell each Han character as its Cangjie code."""

    def __init__(self, table: dict[str, str], segment: Callable[[str], list[str]] | None = None) -> None:
        if segment is None:
            from spacy_pkuseg import pkuseg

            segment = pkuseg().cut  # loads the model from pkuseg_model_dir(); checked before
        self._segment = segment
        self._lock = threading.Lock()  # pkuseg keeps per-call state
        self._codes = table

    @staticmethod
    def read_table(path: Path) -> dict[str, str]:
        """`Cangjie5_TC.json`: entries "glyph<TAB>code"; a code shared by several glyphs gets the
        glyph's index among them appended (the first one none)."""
        entries = json.loads(path.read_text(encoding="utf-8"))
        glyph_code: dict[str, str] = {}
        by_code: dict[str, list[str]] = {}
        for entry in entries:
            glyph, code = entry.split("\t")[:2]
            glyph_code[glyph] = code
            by_code.setdefault(code, []).append(glyph)
        table = {}
        for glyph, code in glyph_code.items():
            index = by_code[code].index(glyph)
            table[glyph] = code + (str(index) if index > 0 else "")
        return table

    def __call__(self, text: str) -> str:
        with self._lock:
            words = self._segment(text)
        out = []
        for char in " ".join(words):
            code = self._codes.get(char) if unicodedata.category(char) == "Lo" else None
            out.append("".join(f"[cj_{c}]" for c in code) + "[cj_.]" if code else char)
        return "".join(out)


class MultilingualTokenizer(SpacedTokenizer):
    """Language-aware front end over the grapheme tokenizer; `languages` lists what this install can
    speak (zh needs the Cangjie table and pkuseg's model; ja needs pykakasi)."""

    FILE = MTL_TOKENIZER_FILE

    def __init__(self, tokenizer: Tokenizer, cangjie_table: Path | None = None) -> None:
        super().__init__(tokenizer)
        self._cangjie_table = cangjie_table
        self._converters: dict[str, object] = {}
        self._lock = threading.Lock()
        self.unavailable = self._unavailable_languages()
        self.languages = {code: name for code, name in LANGUAGES.items() if code not in self.unavailable}

    @classmethod
    def from_folder(cls, folder: Path) -> MultilingualTokenizer:
        cangjie = folder / CANGJIE_FILE
        return cls(
            Tokenizer.from_file(str(folder / MTL_TOKENIZER_FILE)), cangjie if cangjie.exists() else None
        )

    @classmethod
    def random(cls, vocab_size: int) -> MultilingualTokenizer:
        """The tokenizer of random-weight models (`make_mtl_tokenizer_json`, no Cangjie table)."""
        return cls(Tokenizer.from_str(make_mtl_tokenizer_json(vocab_size)))

    def _unavailable_languages(self) -> dict[str, str]:
        """Language code -> why this install cannot speak it."""
        reasons = {}
        try:
            import pykakasi  # noqa: F401
        except ImportError:
            reasons["ja"] = "Japanese needs the pykakasi package"
        if self._cangjie_table is None:
            reasons["zh"] = f"Chinese needs {CANGJIE_FILE} next to the model files"
        else:
            try:
                import spacy_pkuseg  # noqa: F401
            except ImportError:
                reasons["zh"] = "Chinese needs the spacy-pkuseg package"
            else:
                if not pkuseg_model_dir().is_dir():
                    reasons["zh"] = f"Chinese needs spacy-pkuseg's segmentation model in {pkuseg_model_dir()}"
        return reasons

    def check_language(self, language: object) -> str:
        """Return the canonical language code, or raise InvalidParameterError naming the choices."""
        code = language.lower() if isinstance(language, str) else language
        if code in self.languages:
            return code
        if code in self.unavailable:
            raise InvalidParameterError(
                f"language {code!r} is not available here: {self.unavailable[code]}", "language"
            )
        raise InvalidParameterError(
            f"language {language!r} is not supported by the multilingual model; "
            f"supported: {', '.join(sorted(self.languages))}",
            "language",
        )

    def _converter(self, language: str):
        with self._lock:
            if language not in self._converters:
                if language == "ja":
                    self._converters[language] = JapaneseReader()
                else:
                    self._converters[language] = ChineseCangjie(
                        ChineseCangjie.read_table(self._cangjie_table)
                    )
            return self._converters[language]

    def normalise(self, text: str, language: str) -> str:
        """Upstream's preprocessing up to (not including) the language tag and [SPACE] mapping."""
        text = unicodedata.normalize("NFKD", text.lower())
        if language == "ko":
            return korean_to_jamo(text)
        if language in ("ja", "zh"):
            return self._converter(language)(text)
        return text

    def encode(self, text: str, language: str) -> list[int]:
        tagged = f"[{language}]{self.normalise(text, language)}"
        return self._encode_spaced(tagged, f"text contains characters the {language!r} model lacks")

    def text_tokens(self, text: str, language: str) -> torch.Tensor:
        """Normalised text -> (1, L) ids framed by the start and stop text tokens."""
        return self._framed(self.encode(text, language))


def make_mtl_tokenizer_json(vocab_size: int = MTL_VOCAB_SIZE) -> str:
    """A grapheme tokenizer laid out like the official one: specials, the 23 language tags,
    Latin/Greek/Cyrillic/Arabic/Hebrew/Devanagari letters and combining marks, Hangul Jamo, kana,
    Cangjie code tokens; placeholders up to vocab_size."""
    vocab = {STOP_TOKEN: 0, UNK_TOKEN: 1, SPACE_TOKEN: 2}
    latin_greek_cyrillic = [(0x21, 0x7F), (0xA1, 0x250), (0x300, 0x370), (0x370, 0x400), (0x400, 0x460)]
    hebrew_arabic_devanagari = [(0x5B0, 0x5F5), (0x600, 0x6FF), (0x900, 0x980)]
    jamo_kana_punctuation = [(0x1100, 0x1200), (0x3041, 0x3097), (0x3099, 0x309D), (0x30A1, 0x30FB)]
    jamo_kana_punctuation += [(0x3000, 0x3020), (0xFF01, 0xFF20), (0x2010, 0x2027)]
    ranges = latin_greek_cyrillic + hebrew_arabic_devanagari + jamo_kana_punctuation
    symbols = [chr(c) for start, end in ranges for c in range(start, end) if not chr(c).isupper()]
    symbols = [s for s in symbols if unicodedata.normalize("NFKD", s) == s]
    for symbol in symbols[:252]:
        vocab[symbol] = len(vocab)
    pad_vocab(vocab, 255)
    vocab[START_TOKEN] = 255
    for symbol in symbols[252:]:
        vocab.setdefault(symbol, len(vocab))
    for code in LANGUAGES:
        vocab[f"[{code}]"] = len(vocab)
    for letter in "abcdefghijklmnopqrstuvwxyz.":
        vocab[f"[cj_{letter}]"] = len(vocab)
    pad_vocab(vocab, vocab_size)
    if len(vocab) > vocab_size:
        raise ValueError(f"grapheme vocabulary needs {len(vocab)} entries, more than {vocab_size}")
    specials = [STOP_TOKEN, UNK_TOKEN, SPACE_TOKEN, START_TOKEN]
    specials += [f"[{code}]" for code in LANGUAGES] + [f"[cj_{c}]" for c in "abcdefghijklmnopqrstuvwxyz."]
    return spaced_tokenizer_json(vocab, [], specials)
