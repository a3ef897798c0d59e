"""VoiceEncoder: the 256-d speaker embedding that conditions T3.

A 3-layer LSTM over 1.6 s windows of a 40-band "amp" mel (no log), projected, ReLU'd and L2-normalised
per window, then averaged over windows. Parameter names mirror `checkpoint-keys/ve.tsv`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import librosa
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import FlatConfig

VE_SAMPLE_RATE = 16_000


@dataclass(frozen=True)
class VoiceEncoderConfig(FlatConfig):
    num_mels: int = 40
    hidden_size: int = 256
    embed_size: int = 256
    num_layers: int = 3
    n_fft: int = 400
    hop_size: int = 160
    fmax: float = 8000.0
    partial_frames: int = 160  # 1.6 s windows
    partial_rate: float = 1.3  # windows per second -> a 77-frame step
    min_coverage: float = 0.8
    trim_top_db: float = 20.0

    @classmethod
    def tiny(cls) -> VoiceEncoderConfig:
        return cls(hidden_size=32, embed_size=32, num_layers=1)

    @property
    def frame_step(self) -> int:
        return int(np.round((VE_SAMPLE_RATE / self.partial_rate) / self.partial_frames))


@functools.lru_cache(maxsize=4)
def _mel_basis(n_fft: int, num_mels: int, fmax: float) -> np.ndarray:
    return librosa.filters.mel(sr=VE_SAMPLE_RATE, n_fft=n_fft, n_mels=num_mels, fmin=0, fmax=fmax)


def voice_encoder_mel(wav16k: np.ndarray, cfg: VoiceEncoderConfig) -> np.ndarray:
    """Trimmed 16 kHz mono float waveform -> power mel (T, num_mels), T = 1 + len // hop."""
    spec = librosa.stft(wav16k, n_fft=cfg.n_fft, hop_length=cfg.hop_size, center=True, pad_mode="reflect")
    power = np.abs(spec) ** 2
    return (_mel_basis(cfg.n_fft, cfg.num_mels, cfg.fmax) @ power).T.astype(np.float32)


def partial_windows(n_frames: int, cfg: VoiceEncoderConfig) -> tuple[int, int]:
    """How many windows cover n_frames, and the padded/trimmed mel length they span."""
    step, size = cfg.frame_step, cfg.partial_frames
    n_wins, remainder = divmod(max(n_frames - size + step, 0), step)
    if n_wins == 0 or (remainder + (size - step)) / size >= cfg.min_coverage:
        n_wins += 1
    return n_wins, size + step * (n_wins - 1)


class VoiceEncoder(nn.Module):
    def __init__(self, cfg: VoiceEncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.lstm = nn.LSTM(cfg.num_mels, cfg.hidden_size, num_layers=cfg.num_layers, batch_first=True)
        self.proj = nn.Linear(cfg.hidden_size, cfg.embed_size)
        # Training-only (GE2E loss scale), kept so the official file loads strictly.
        self.similarity_weight = nn.Parameter(torch.tensor([10.0]))
        self.similarity_bias = nn.Parameter(torch.tensor([-5.0]))

    def forward(self, partials: Tensor) -> Tensor:
        """partials (N, partial_frames, num_mels) -> L2-normalised window embeddings (N, E)."""
        _, (hidden, _) = self.lstm(partials)
        raw = F.relu(self.proj(hidden[-1]))
        return raw / torch.linalg.norm(raw, dim=1, keepdim=True)

    @torch.inference_mode()
    def embed(self, wav16k: np.ndarray) -> Tensor:
        """One 16 kHz mono utterance -> utterance embedding (1, E) with unit norm."""
        cfg = self.cfg
        trimmed, _ = librosa.effects.trim(wav16k, top_db=cfg.trim_top_db)
        mel = voice_encoder_mel(trimmed, cfg)
        n_wins, target = partial_windows(len(mel), cfg)
        if target > len(mel):
            mel = np.concatenate((mel, np.zeros((target - len(mel), cfg.num_mels), dtype=np.float32)))
        mels = torch.from_numpy(mel[:target]).to(self.proj.weight.device, self.proj.weight.dtype)
        partials = mels.unfold(0, cfg.partial_frames, cfg.frame_step).transpose(1, 2)  # (N, frames, mels)
        mean = self(partials[:n_wins]).float().mean(dim=0, keepdim=True)
        return mean / torch.linalg.norm(mean, dim=1, keepdim=True)
