"""A voice: everything the model needs from a reference recording, computed once and reused.

T3 needs the VoiceEncoder speaker embedding and S3 tokens of the first 6 s; S3Gen needs its own
reference (prompt tokens, prompt mel and CAMPPlus x-vector of the first 10 s). `Voice.from_reference`
checks the recording, levels its loudness (Turbo), resamples it and embeds it, as upstream's
`prepare_conditionals` does. Voices save to and load from safetensors (never pickle). The built-in voice
comes from the official `conds.pt`; random-weight models embed a synthetic reference instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import librosa
import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from .errors import CheckpointError, InvalidAudioError, InvalidParameterError
from .s3gen import S3Gen, S3GenReference
from .s3gen.config import S3_SR, S3GEN_SR
from .voice_encoder import VoiceEncoder

if TYPE_CHECKING:
    from .variants import VariantSpec

S3GEN_PROMPT_SECONDS = 10  # upstream DEC_COND_LEN
LOUDNESS_TARGET_LUFS = -27.0  # Turbo's reference level
_SILENCE_PEAK = 1e-3
_SAMPLE_RATE_RANGE = (8_000, 192_000)
_FORMAT = "chatterbox-voice/1"
_T3_PREFIX = "t3."
_S3GEN_PREFIX = "s3gen."


@dataclass(frozen=True)
class Voice:
    speaker_emb: Tensor  # (1, E) float, VoiceEncoder embedding with unit norm
    prompt_tokens: Tensor  # (1, P) long, S3 tokens of the first 6 s (P <= 150)
    s3gen_ref: S3GenReference

    @classmethod
    @torch.inference_mode()
    def from_reference(
        cls, audio: np.ndarray | torch.Tensor, sample_rate: int, spec: VariantSpec, s3gen: S3Gen,
        voice_encoder: VoiceEncoder, prompt_len: int,
    ) -> Voice:  # fmt: skip
        """Embed a mono float reference recording for one model (`spec`, its S3Gen and VoiceEncoder,
        T3's speech prompt length), checked first (InvalidAudioError)."""
        # As upstream: the reference at 24 kHz for S3Gen (first 10 s), and that resampled to 16 kHz for
        # the T3 speech prompt (first 6 s; Turbo 15 s) and the VoiceEncoder (all of it).
        ref24 = resample(
            check_reference(audio, sample_rate, spec.min_reference_seconds), int(sample_rate), S3GEN_SR
        )
        if spec.loudness_normalise:
            ref24 = normalise_loudness(ref24, S3GEN_SR)
        ref16 = resample(ref24, S3GEN_SR, S3_SR)
        s3gen_ref = s3gen.embed_ref(torch.from_numpy(ref24[: S3GEN_PROMPT_SECONDS * S3GEN_SR])[None])
        prompt_wav = torch.from_numpy(ref16[: spec.t3_prompt_seconds * S3_SR])[None]
        prompt_tokens, _ = s3gen.tokenize(prompt_wav, max_len=prompt_len)
        speaker_emb = voice_encoder.embed(ref16)
        return cls(
            speaker_emb=speaker_emb.float().cpu(),
            prompt_tokens=prompt_tokens.long().cpu(),
            s3gen_ref=s3gen_ref.to("cpu"),
        )

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
    ref = voice.s3gen_ref
    if not all(bool(torch.isfinite(t).all()) for t in (voice.speaker_emb, ref.prompt_feat, ref.embedding)):
        # A damaged voice file: its NaNs would only surface as a sampling failure deep in the loop.
        raise InvalidParameterError("this voice holds NaN or infinite values; embed it again", "voice")


def check_reference(audio, sample_rate, min_seconds: float, what: str = "reference audio") -> np.ndarray:
    """Validate a mono recording (a voice reference, or `what` else) and return it as float32 numpy."""
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int | np.integer):
        raise InvalidAudioError(f"sample_rate must be an integer number of Hz, got {sample_rate!r}")
    low, high = _SAMPLE_RATE_RANGE
    if not low <= sample_rate <= high:
        raise InvalidAudioError(f"sample_rate {sample_rate} Hz is outside the supported {low}-{high} Hz")
    if isinstance(audio, torch.Tensor):
        audio = audio.detach().cpu().numpy()
    audio = np.asarray(audio)
    if audio.dtype.kind not in "fiu":
        raise InvalidAudioError(f"audio must be numeric samples, got dtype {audio.dtype}")
    if audio.dtype.kind != "f":
        raise InvalidAudioError("audio must be float samples in [-1, 1], not integer PCM")
    if audio.ndim == 2 and 1 in audio.shape:
        audio = audio.reshape(-1)
    if audio.ndim != 1:
        raise InvalidAudioError(f"audio must be mono and 1-D (samples,), got shape {audio.shape}")
    if not np.isfinite(audio).all():
        raise InvalidAudioError("audio contains NaN or infinite samples")
    seconds = audio.size / sample_rate
    if seconds < min_seconds:
        raise InvalidAudioError(f"{what} is {seconds:.2f} s long; at least {min_seconds:g} s are needed")
    peak = float(np.abs(audio).max())
    if peak < _SILENCE_PEAK:
        raise InvalidAudioError(f"{what} is silent")
    if peak > 10.0:
        raise InvalidAudioError(f"audio samples must lie in [-1, 1]; the peak is {peak:.1f}")
    return np.clip(audio, -1.0, 1.0).astype(np.float32)


def normalise_loudness(
    audio: np.ndarray, sample_rate: int, target_lufs: float = LOUDNESS_TARGET_LUFS
) -> np.ndarray:
    """Turbo levels references to -27 LUFS (BS.1770, pyloudnorm) first; unmeasurable audio stays as is."""
    import pyloudnorm

    # Measured on the float32 samples as upstream does (its filters then run in float32 too).
    loudness = pyloudnorm.Meter(sample_rate).integrated_loudness(audio)
    gain = 10.0 ** ((target_lufs - loudness) / 20.0)
    if not np.isfinite(gain) or gain <= 0.0:
        return audio
    # float32 arithmetic, as upstream gets under its numpy<2 pin (value-based scalar casting).
    return audio * np.float32(gain)


def resample(audio: np.ndarray, orig_sr: int, new_sr: int) -> np.ndarray:
    """librosa's default (soxr_hq) resampler, as upstream's `prepare_conditionals` uses."""
    if orig_sr == new_sr:
        return audio
    return librosa.resample(audio, orig_sr=orig_sr, target_sr=new_sr).astype(np.float32)


def default_reference(spec: VariantSpec) -> tuple[np.ndarray, int]:
    """The reference random-weight models (no built-in `conds.pt`) embed as their default voice: a
    synthetic one, long enough for the variant (Turbo needs over 5 s and prompts with up to 15 s: 8 s)."""
    return synthetic_reference(max(4.0, 1.6 * spec.min_reference_seconds))


def synthetic_reference(seconds: float = 4.0, sample_rate: int = S3GEN_SR) -> tuple[np.ndarray, int]:
    """A deterministic voiced-sounding signal (gliding harmonics, syllable envelope)."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    f0 = 140 + 30 * np.sin(2 * np.pi * 0.5 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 8))
    envelope = 0.5 * (1 - np.cos(2 * np.pi * 3 * t)) * (t % 1.0 < 0.8)
    rng = np.random.default_rng(7)
    audio = 0.25 * voiced * envelope + 0.01 * rng.standard_normal(t.size)
    return audio.astype(np.float32), sample_rate
