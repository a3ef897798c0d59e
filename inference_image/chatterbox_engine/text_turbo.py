"""Turbo text front end: its punctuation table and the GPT-2 byte-level BPE with paralinguistic tags.

The official files are HF's slow-tokenizer layout (`vocab.json`, `merges.txt`, `added_tokens.json`,
`special_tokens_map.json`, `tokenizer_config.json`); we build the same byte-level BPE with the
`tokenizers` library (no transformers at serving time). Byte-level BPE has no unknown characters.
Text gets no start/stop tokens (upstream feeds the ids as they are).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tokenizers import AddedToken, Tokenizer, decoders, pre_tokenizers
from tokenizers.models import BPE

from .text import PARALINGUISTIC_TAGS, PUNCTUATION_REPLACEMENTS, EnglishOnly, is_tag

VOCAB_FILE = "vocab.json"
MERGES_FILE = "merges.txt"
ADDED_TOKENS_FILE = "added_tokens.json"
SPECIAL_TOKENS_FILE = "special_tokens_map.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
TURBO_TOKENIZER_FILES = (
    VOCAB_FILE,
    MERGES_FILE,
    ADDED_TOKENS_FILE,
    SPECIAL_TOKENS_FILE,
    TOKENIZER_CONFIG_FILE,
)
END_OF_TEXT = "<|endoftext|>"
TURBO_VOCAB_SIZE = 50276
GPT2_BASE_VOCAB = 50257

# Turbo's punc_norm keeps "...", " - " and ";", which the English table rewrites.
TURBO_PUNCTUATION_REPLACEMENTS = tuple(
    (old, new) for old, new in PUNCTUATION_REPLACEMENTS if old not in ("...", " - ", ";")
)


class TurboTokenizer(EnglishOnly):
    def __init__(self, tokenizer: Tokenizer, files: dict[str, str], tags: tuple[str, ...] = ()) -> None:
        self.tokenizer = tokenizer
        self._files = files  # the HF-layout texts it was built from, for writing checkpoints
        self.tags = tags  # the added tokens that are paralinguistic tags (`[laugh]`, ...), in id order

    def files(self) -> dict[str, str]:
        """File name -> text, for writing the tokenizer into a checkpoint folder."""
        return dict(self._files)

    @classmethod
    def random(cls, vocab_size: int) -> TurboTokenizer:
        """The tokenizer of random-weight models (`turbo_tokenizer_files`)."""
        return cls.from_files(turbo_tokenizer_files(vocab_size))

    @classmethod
    def from_folder(cls, folder: Path) -> TurboTokenizer:
        return cls.from_files(
            {
                name: (folder / name).read_text(encoding="utf-8")
                for name in TURBO_TOKENIZER_FILES
                if (folder / name).exists()
            }
        )

    @classmethod
    def from_files(cls, files: dict[str, str]) -> TurboTokenizer:
        vocab = json.loads(files[VOCAB_FILE])
        merges = [
            tuple(line.split(" "))
            for line in files[MERGES_FILE].splitlines()
            if line and not line.startswith("#version")
        ]
        tokenizer = Tokenizer(BPE(vocab=vocab, merges=merges))
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        if END_OF_TEXT in vocab:
            tokenizer.add_special_tokens([END_OF_TEXT])  # matched whole in text, as HF does
        added = json.loads(files.get(ADDED_TOKENS_FILE, "{}"))
        # In id order, so each tag gets the id the file gives it.
        tokenizer.add_tokens(
            [AddedToken(content) for content, _ in sorted(added.items(), key=lambda kv: kv[1])]
        )
        mismatched = {t: i for t, i in added.items() if tokenizer.token_to_id(t) != i}
        if mismatched:
            raise ValueError(f"{ADDED_TOKENS_FILE} ids do not follow the vocabulary: {mismatched}")
        in_id_order = [tag for tag, _ in sorted(added.items(), key=lambda kv: kv[1])]
        return cls(tokenizer, files, tags=tuple(tag for tag in in_id_order if is_tag(tag)))

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def text_tokens(self, text: str, language: str = "en") -> torch.Tensor:
        """Normalised text -> (1, L) ids, without start/stop tokens."""
        return torch.tensor([self.encode(text)], dtype=torch.long)


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    table, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            table[byte] = chr(byte)
        else:
            table[byte] = chr(256 + extra)
            extra += 1
    return table


def turbo_tokenizer_files(vocab_size: int = TURBO_VOCAB_SIZE) -> dict[str, str]:
    """A GPT-2-layout byte-level BPE (256 byte symbols, a few English merges, placeholders up to
    50256, `<|endoftext|>`, then paralinguistic tags as added tokens) as HF's files: name -> text."""
    byte_chars = list(_bytes_to_unicode().values())
    vocab = {char: index for index, char in enumerate(byte_chars)}
    space = _bytes_to_unicode()[ord(" ")]
    merges = [("t", "h"), (space, "t"), ("h", "e"), ("i", "n"), (space + "t", "he"), ("e", "r"), ("o", "u")]
    merges += [(space, "a"), ("a", "n"), ("r", "e"), ("o", "n"), (space, "s"), ("e", "s"), ("in", "g")]
    for left, right in merges:
        vocab.setdefault(left + right, len(vocab))
    while len(vocab) < GPT2_BASE_VOCAB - 1:
        vocab[f"<|placeholder{len(vocab)}|>"] = len(vocab)
    vocab[END_OF_TEXT] = GPT2_BASE_VOCAB - 1
    tags = PARALINGUISTIC_TAGS[: vocab_size - GPT2_BASE_VOCAB]
    added = {tag: GPT2_BASE_VOCAB + index for index, tag in enumerate(tags)}
    special = {"bos_token": END_OF_TEXT, "eos_token": END_OF_TEXT, "unk_token": END_OF_TEXT}
    config = {
        "tokenizer_class": "GPT2Tokenizer",
        "model_max_length": 1024,
        "add_prefix_space": False,
        **special,
        "added_tokens_decoder": {
            str(index): {
                "content": content,
                "special": content == END_OF_TEXT,
                "normalized": True,
                "lstrip": False,
                "rstrip": False,
                "single_word": False,
            }
            for content, index in [(END_OF_TEXT, GPT2_BASE_VOCAB - 1), *added.items()]
        },
    }
    return {
        VOCAB_FILE: json.dumps(vocab, ensure_ascii=False),
        MERGES_FILE: "\n".join(["#version: 0.2"] + [f"{left} {right}" for left, right in merges]) + "\n",
        ADDED_TOKENS_FILE: json.dumps(added, ensure_ascii=False),
        SPECIAL_TOKENS_FILE: json.dumps(special),
        TOKENIZER_CONFIG_FILE: json.dumps(config, indent=2),
    }
