"""S3 speech tokenizer v2 (25 Hz, FSQ with 3**8 = 6561 codes), reference §8.

The transformer encoder (conv stem, rotary MHA with FSMN memory) is `s3tokenizer.model_v2.AudioEncoderV2` from
the pinned `s3tokenizer==0.3.0`, the same field library upstream builds on (its LayerNorm eps changed between
releases, hence the pin). The log-mel front end and the FSQ code path are ours.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from s3tokenizer.model_v2 import AudioEncoderV2, precompute_freqs_cis
from torch import nn

from .config import TokenizerConfig
from .frontends import S3_N_FFT, s3_log_mel, slaney_mel_filters

MEL_FRAMES_PER_TOKEN = 4  # 100 Hz mel -> 25 Hz tokens
MAX_MEL_FRAMES = 3000  # 30 s: the encoder's rotary table and training length
WINDOW_STRIDE_FRAMES = 2600  # long audio: 30 s windows with 4 s overlap
OVERLAP_HALF_TOKENS = 50  # 2 s at 25 Hz, dropped from each side of a joint
ROTARY_DIM = 64  # s3tokenizer's rotary table: head dim 64, 2048 positions
ROTARY_POSITIONS = 2048
FSQ_DIGITS = 8
FSQ_LEVELS = 3
# float32(0.999), as upstream spells it; keeps tanh outputs strictly inside (-1, 1) before rounding
_FSQ_SHRINK = 0.9990000128746033


class FSQCodebook(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.project_down = nn.Linear(dim, FSQ_DIGITS)

    def encode(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden (B, N, D) -> codes (B, N) in [0, 6561): base-3 digits round(0.999 · tanh(Wx + b)) + 1."""
        digits = (torch.tanh(self.project_down(hidden).float()) * _FSQ_SHRINK).round() + 1  # (B, N, 8)
        powers = FSQ_LEVELS ** torch.arange(FSQ_DIGITS, device=hidden.device, dtype=digits.dtype)
        return (digits * powers).sum(dim=-1).long()


class FSQQuantizer(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self._codebook = FSQCodebook(dim)


class S3Tokenizer(nn.Module):
    def __init__(self, cfg: TokenizerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        # Persistent because the official file stores them; rebuilt by the load hook if a file lacks them.
        self.register_buffer("_mel_filters", self._default_mel_filters())
        self.register_buffer("window", torch.hann_window(S3_N_FFT))
        self.encoder = AudioEncoderV2(
            cfg.n_mels, cfg.n_state, cfg.n_head, cfg.n_layer, stride=2, use_sdpa=False
        )
        if self.encoder.freqs_cis.is_meta:
            # The rotary table is a plain attribute, not a buffer: loading never fills it, so a model built on
            # the meta device (to load with assign=True) needs it rebuilt for real.
            with torch.device("cpu"):
                self.encoder.freqs_cis = precompute_freqs_cis(ROTARY_DIM, ROTARY_POSITIONS)
        self.quantizer = FSQQuantizer(cfg.n_state)
        self.register_load_state_dict_pre_hook(S3Tokenizer._fill_missing_front_end)

    def _default_mel_filters(self) -> torch.Tensor:
        return slaney_mel_filters(16_000, S3_N_FFT, self.cfg.n_mels).clone()

    def _fill_missing_front_end(self, state_dict: dict, prefix: str, *args) -> None:
        # Some checkpoints (e.g. s3gen_v3.pt) omit the two front-end buffers; they are fixed functions anyway.
        state_dict.setdefault(prefix + "_mel_filters", self._default_mel_filters())
        state_dict.setdefault(prefix + "window", torch.hann_window(S3_N_FFT))

    @torch.inference_mode()
    def forward(self, wav16k: torch.Tensor, max_len: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """wav16k (B, T) float at 16 kHz -> (codes (B, N) long, lens (B,) long); max_len caps N."""
        if wav16k.dim() != 2:
            raise ValueError(f"tokenize expects (B, T) audio, got shape {tuple(wav16k.shape)}")
        wav16k = wav16k.float()
        # Per utterance: the log-mel floor depends on each utterance's own maximum.
        mels = torch.cat([s3_log_mel(w[None], self._mel_filters, self.window) for w in wav16k])  # (B, 128, F)
        if max_len is not None:
            mels = mels[..., : max_len * MEL_FRAMES_PER_TOKEN]
        if mels.size(-1) > MAX_MEL_FRAMES:
            return self._encode_long(mels)
        return self._encode(mels, torch.full((mels.size(0),), mels.size(-1), device=mels.device))

    def _encode(self, mels: torch.Tensor, mel_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden, code_lens = self.encoder(mels, mel_lens)  # (B, N, D)
        return self.quantizer._codebook.encode(hidden), code_lens.long()

    def _encode_long(self, mels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Audio over 30 s, as s3tokenizer does it: 30 s windows every 26 s, each zero-padded to 30 s and
        encoded with its true length; at each joint half of the 4 s overlap is taken from either side."""
        n_frames = mels.size(-1)
        starts = range(0, n_frames, WINDOW_STRIDE_FRAMES)
        merged = []
        for mel in mels:
            windows = [
                F.pad(mel[:, s : s + MAX_MEL_FRAMES], (0, max(0, s + MAX_MEL_FRAMES - n_frames)))
                for s in starts
            ]
            lens = torch.tensor([min(MAX_MEL_FRAMES, n_frames - s) for s in starts], device=mels.device)
            codes, code_lens = self._encode(torch.stack(windows), lens)
            pieces = []
            for i, (window_codes, n) in enumerate(zip(codes, code_lens.tolist(), strict=True)):
                window_codes = window_codes[:n]
                left = 0 if i == 0 else OVERLAP_HALF_TOKENS
                right = n if i == len(windows) - 1 else n - OVERLAP_HALF_TOKENS
                pieces.append(window_codes[left:right])
            merged.append(torch.cat(pieces))
        lens = torch.tensor([len(m) for m in merged], device=mels.device)
        return torch.nn.utils.rnn.pad_sequence(merged, batch_first=True), lens
