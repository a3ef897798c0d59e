"""Audio front ends used by S3Gen (reference §7): 24 kHz prompt mel, S3 tokenizer log-mel, CAMPPlus fbank.

All take float waveforms in [-1, 1] shaped (B, T) and are deterministic. The VoiceEncoder's 40-band mel lives
with the VoiceEncoder, not here.
"""

from __future__ import annotations

import functools

import librosa
import torch
import torchaudio.compliance.kaldi as kaldi
import torchaudio.functional as AF

from .config import HOP_24K, MEL_BINS, S3_SR, S3GEN_SR

PROMPT_N_FFT = 1920
PROMPT_FMAX = 8000
S3_N_FFT = 400
S3_HOP = 160


@functools.lru_cache(maxsize=8)
def slaney_mel_filters(sample_rate: int, n_fft: int, n_mels: int, fmax: float | None = None) -> torch.Tensor:
    """librosa's (slaney) mel filterbank as a float32 CPU tensor (n_mels, n_fft // 2 + 1); do not mutate."""
    return torch.from_numpy(
        librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmax=fmax)
    ).float()


def resample(wav: torch.Tensor, orig_sr: int, new_sr: int) -> torch.Tensor:
    """torchaudio's windowed-sinc resampler with its defaults (what upstream's `embed_ref` uses)."""
    if orig_sr == new_sr:
        return wav
    return AF.resample(wav, orig_sr, new_sr)


def prompt_mel(wav24k: torch.Tensor) -> torch.Tensor:
    """Matcha/CosyVoice log-mel of 24 kHz audio: (B, T) -> (B, 80, floor(T / 480)).

    Reflect-pads (n_fft - hop) / 2 per side, then an uncentred STFT; magnitude with a 1e-9 floor inside the sqrt.
    """
    pad = (PROMPT_N_FFT - HOP_24K) // 2
    padded = torch.nn.functional.pad(wav24k.unsqueeze(1), (pad, pad), mode="reflect").squeeze(1)
    window = torch.hann_window(PROMPT_N_FFT, device=wav24k.device, dtype=wav24k.dtype)
    spec = torch.stft(
        padded,
        PROMPT_N_FFT,
        hop_length=HOP_24K,
        win_length=PROMPT_N_FFT,
        window=window,
        center=False,
        return_complex=True,
    )  # (B, 961, frames)
    spec = torch.view_as_real(spec)
    magnitude = torch.sqrt(spec.pow(2).sum(-1) + 1e-9)
    filters = slaney_mel_filters(S3GEN_SR, PROMPT_N_FFT, MEL_BINS, PROMPT_FMAX).to(
        wav24k.device, wav24k.dtype
    )
    return torch.log(torch.clamp(filters @ magnitude, min=1e-5))


def s3_log_mel(wav16k: torch.Tensor, mel_filters: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Whisper-style log-mel for the S3 tokenizer: (B, T) -> (B, 128, T // 160).

    The floor at (max - 8) uses the maximum over the whole batch, as upstream does for its batch of one;
    callers that batch several utterances must call this per utterance.
    """
    stft = torch.stft(wav16k, S3_N_FFT, S3_HOP, window=window, return_complex=True)
    power = stft[..., :-1].abs() ** 2
    log_spec = torch.clamp(mel_filters @ power, min=1e-10).log10()
    log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)
    return (log_spec + 4.0) / 4.0


def campplus_fbank(wav16k: torch.Tensor) -> torch.Tensor:
    """Kaldi 80-bin log fbank of one 16 kHz utterance (1, T) -> (1, frames, 80), mean over time removed."""
    if wav16k.dim() != 2 or wav16k.size(0) != 1:
        raise ValueError(f"campplus_fbank expects one utterance shaped (1, T), got {tuple(wav16k.shape)}")
    feats = kaldi.fbank(wav16k, num_mel_bins=MEL_BINS, sample_frequency=S3_SR)
    feats = feats - feats.mean(dim=0, keepdim=True)
    return feats.unsqueeze(0)
