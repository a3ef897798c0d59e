"""A voice: everything the model needs from a reference recording, computed once and reused.

T3 needs the VoiceEncoder speaker embedding and S3 tokens of the first 6 s; S3Gen needs its own
reference (prompt tokens, prompt mel and CAMPPlus x-vector of the first 10 s). Voices save to and load
from safetensors (never pickle). The built-in voice comes from the official `conds.pt`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from .errors import CheckpointError, InvalidParameterError
from .s3gen import S3GenReference

_FORMAT = "chatterbox-voice/1"
_T3_PREFIX = "t3."
_S3GEN_PREFIX = "s3gen."


@dataclass(frozen=True)
class Voice:
    speaker_emb: Tensor  # (1, E) float, VoiceEncoder embedding with unit norm
    prompt_tokens: Tensor  # (1, P) long, S3 tokens of the first 6 s (P <= 150)
    s3gen_ref: S3GenReference

    def to_tensors(self) -> dict[str, Tensor]:
        tensors = {
            f"{_T3_PREFIX}speaker_emb": self.speaker_emb,
            f"{_T3_PREFIX}prompt_tokens": self.prompt_tokens,
        }
        for name, tensor in self.s3gen_ref.to_tensors().items():
            tensors[f"{_S3GEN_PREFIX}{name}"] = tensor
        return {k: v.detach().cpu().contiguous() for k, v in tensors.items()}

    @classmethod
    def from_tensors(cls, tensors: dict[str, Tensor]) -> Voice:
        try:
            s3gen = {k[len(_S3GEN_PREFIX) :]: v for k, v in tensors.items() if k.startswith(_S3GEN_PREFIX)}
            return cls(
                speaker_emb=tensors[f"{_T3_PREFIX}speaker_emb"].float(),
                prompt_tokens=tensors[f"{_T3_PREFIX}prompt_tokens"].long(),
                s3gen_ref=S3GenReference.from_tensors(s3gen),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise CheckpointError(f"not a valid voice: missing or malformed tensor {error}") from error

    def save(self, path: str | Path) -> None:
        """Write the voice as a safetensors file."""
        save_file(self.to_tensors(), str(path), metadata={"format": _FORMAT})

    @classmethod
    def load(cls, path: str | Path) -> Voice:
        """Read a voice written by `save`."""
        try:
            tensors = load_file(str(path))
        except (OSError, SafetensorError) as error:
            raise CheckpointError(f"cannot read voice file {path}: {error}") from error
        return cls.from_tensors(tensors)

    @classmethod
    def from_conds(cls, path: str | Path) -> Voice:
        """The built-in voice from upstream's `conds.pt` (a torch.save dict of plain tensors)."""
        try:
            conds = torch.load(str(path), map_location="cpu", weights_only=True)
            t3, gen = conds["t3"], conds["gen"]
            return cls(
                speaker_emb=t3["speaker_emb"].float().reshape(1, -1),
                prompt_tokens=t3["cond_prompt_speech_tokens"].long().reshape(1, -1),
                s3gen_ref=S3GenReference.from_tensors({k: v for k, v in gen.items() if v is not None}),
            )
        except Exception as error:
            raise CheckpointError(f"cannot read the built-in voice {path}: {error}") from error

    def to_conds(self) -> dict:
        """The upstream `conds.pt` structure (weights_only-loadable), for writing official layouts."""
        gen: dict[str, Tensor | None] = dict(self.s3gen_ref.to_tensors())
        gen.setdefault("prompt_feat_len", None)
        return {
            "t3": {
                "speaker_emb": self.speaker_emb.cpu(),
                "clap_emb": None,
                "cond_prompt_speech_tokens": self.prompt_tokens.cpu(),
                "cond_prompt_speech_emb": None,
                "emotion_adv": torch.full((1, 1, 1), 0.5),
            },
            "gen": gen,
        }


def check_voice(voice: object, t3_cfg, vocab_size: int) -> None:
    """Raise InvalidParameterError unless voice is a Voice whose shapes and prompt tokens fit this
    model (T3 config `t3_cfg`, S3 codes below vocab_size): a voice embedded by another model does not."""
    if not isinstance(voice, Voice):
        raise InvalidParameterError(f"voice must be a Voice, got {type(voice).__name__}", "voice")
    tokens = voice.prompt_tokens
    fits = (
        tuple(voice.speaker_emb.shape) == (1, t3_cfg.speaker_embed_size)
        and tokens.dim() == 2
        and tokens.shape[0] == 1
        and 0 < tokens.shape[1] <= t3_cfg.max_speech_tokens
        and int(tokens.min()) >= 0
        and int(tokens.max()) < vocab_size
    )
    if not fits:
        raise InvalidParameterError(
            f"this voice was not made for this model (speaker embedding {tuple(voice.speaker_emb.shape)}, "
            f"prompt tokens {tuple(tokens.shape)}); embed the reference audio again with this engine",
            "voice",
        )
