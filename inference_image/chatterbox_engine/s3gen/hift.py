"""HiFT vocoder (`mel2wav.*`): mel (50 Hz) -> 24 kHz waveform, reference §11.

An F0 predictor drives a neural-source-filter excitation (sines at 9 harmonics plus noise), whose STFT is
injected at every upsampling stage; the generator predicts an STFT (n_fft 16, hop 4) that is inverted.
Weight-normed convs are plain convs at runtime (see weight_norm.py).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import HOP_24K, S3GEN_SR, HiFTConfig
from .nwc import conv_nwc, from_nwc, to_nwc
from .weight_norm import WNConv1d, WNConvTranspose1d


def _same_padding(kernel_size: int, dilation: int = 1) -> int:
    return (kernel_size * dilation - dilation) // 2


class Snake(nn.Module):
    """x + sin²(αx) / α, α per channel (dim 1; linear scale)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = self.alpha.view(1, -1, *(1,) * (x.dim() - 2))
        return x + (1.0 / (alpha + 1e-9)) * torch.sin(x * alpha).pow(2)


class ResBlock(nn.Module):
    def __init__(self, channels: int, kernel_size: int, dilations: tuple[int, ...]) -> None:
        super().__init__()
        self.convs1 = nn.ModuleList(
            WNConv1d(channels, channels, kernel_size, dilation=d, padding=_same_padding(kernel_size, d))
            for d in dilations
        )
        self.convs2 = nn.ModuleList(
            WNConv1d(channels, channels, kernel_size, padding=_same_padding(kernel_size)) for _ in dilations
        )
        self.activations1 = nn.ModuleList(Snake(channels) for _ in dilations)
        self.activations2 = nn.ModuleList(Snake(channels) for _ in dilations)
        for conv in (*self.convs1, *self.convs2):
            nn.init.normal_(conv.weight, 0.0, 0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, C, 1, L) channels-last (see nwc.py)."""
        for conv1, conv2, act1, act2 in zip(
            self.convs1, self.convs2, self.activations1, self.activations2, strict=True
        ):
            x = x + conv_nwc(conv2, act2(conv_nwc(conv1, act1(x))))
        return x


class F0Predictor(nn.Module):
    """`ConvRNNF0Predictor` (no RNN): five weight-normed k3 convs with ELU, then a linear head, |.|."""

    def __init__(self, in_channels: int, channels: int, num_layers: int = 5) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(num_layers):
            layers += [WNConv1d(in_channels if i == 0 else channels, channels, 3, padding=1), nn.ELU()]
        self.condnet = nn.Sequential(*layers)
        self.classifier = nn.Linear(channels, 1)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """mel (B, 80, F) -> f0 in Hz (B, F)."""
        return self.classifier(self.condnet(mel).transpose(1, 2)).squeeze(-1).abs()


class SourceModule(nn.Module):
    """Harmonic-plus-noise source: SineGen (deterministic given phases and noise) -> Linear -> tanh."""

    def __init__(self, cfg: HiFTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.l_linear = nn.Linear(cfg.nb_harmonics + 1, 1)

    def sine_waves(self, f0: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """f0 per sample (B, T) -> harmonic excitation (B, T, H) with random initial phases and noise."""
        cfg = self.cfg
        b, n = f0.shape
        harmonics = torch.arange(1, cfg.nb_harmonics + 2, device=f0.device, dtype=f0.dtype)
        cycles = f0.unsqueeze(1) * harmonics[None, :, None] / S3GEN_SR  # (B, H, T)
        theta = 2 * math.pi * (torch.cumsum(cycles, dim=-1) % 1)
        # U(-pi, pi) initial phases, drawn before the noise (upstream's order, so a generator seeded like
        # upstream's global RNG reproduces its source).
        phase = torch.rand(b, harmonics.numel(), 1, generator=generator, device=f0.device, dtype=f0.dtype)
        phase = -math.pi + phase * (2 * math.pi)
        phase[:, 0] = 0  # the fundamental starts at phase 0
        voiced = (f0 > cfg.nsf_voiced_threshold).to(f0.dtype).unsqueeze(1)  # (B, 1, T)
        noise_amp = voiced * cfg.nsf_sigma + (1 - voiced) * cfg.nsf_alpha / 3
        noise = torch.randn(theta.shape, generator=generator, device=f0.device, dtype=f0.dtype)
        sines = cfg.nsf_alpha * torch.sin(theta + phase) * voiced + noise_amp * noise
        return sines.transpose(1, 2)

    def forward(self, sines: torch.Tensor) -> torch.Tensor:
        """(B, T, H) -> excitation (B, 1, T)."""
        weight, bias = self.l_linear.weight.float(), self.l_linear.bias.float()
        return torch.tanh(F.linear(sines.float(), weight, bias)).transpose(1, 2)


class HiFTGenerator(nn.Module):
    def __init__(self, cfg: HiFTConfig, in_channels: int = 80) -> None:
        super().__init__()
        self.cfg = cfg
        base = cfg.base_channels
        n_stft = cfg.istft_n_fft + 2
        self.m_source = SourceModule(cfg)
        self.conv_pre = WNConv1d(in_channels, base, 7, padding=3)
        self.ups = nn.ModuleList(
            WNConvTranspose1d(base // 2**i, base // 2 ** (i + 1), k, u, padding=(k - u) // 2)
            for i, (u, k) in enumerate(zip(cfg.upsample_rates, cfg.upsample_kernel_sizes, strict=True))
        )
        # The source STFT (hop 4) is brought down to each stage's rate: cumulative rates 15, 3, 1 for (8, 5, 3).
        down_rates = [1, *reversed(cfg.upsample_rates[1:])]
        cumulative = [math.prod(down_rates[: i + 1]) for i in range(len(down_rates))][::-1]
        self.source_downs = nn.ModuleList()
        self.source_resblocks = nn.ModuleList()
        for i, (u, k) in enumerate(zip(cumulative, cfg.source_resblock_kernel_sizes, strict=True)):
            ch = base // 2 ** (i + 1)
            conv = nn.Conv1d(n_stft, ch, 1) if u == 1 else nn.Conv1d(n_stft, ch, u * 2, u, padding=u // 2)
            self.source_downs.append(conv)
            self.source_resblocks.append(ResBlock(ch, k, cfg.resblock_dilations))
        self.resblocks = nn.ModuleList(
            ResBlock(base // 2 ** (i + 1), k, cfg.resblock_dilations)
            for i in range(len(self.ups))
            for k in cfg.resblock_kernel_sizes
        )
        self.conv_post = WNConv1d(base // 2 ** len(self.ups), n_stft, 7, padding=3)
        for conv in (*self.ups, self.conv_post):
            nn.init.normal_(conv.weight, 0.0, 0.01)
        self.f0_predictor = F0Predictor(in_channels, cfg.f0_channels)

    def source(self, mel: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """mel (B, 80, F) -> excitation (B, 1, 480 F), float32 (phase accumulation needs the precision)."""
        f0 = self.f0_predictor(mel.to(self.conv_pre.weight.dtype)).float()  # (B, F)
        f0 = f0.repeat_interleave(HOP_24K, dim=-1)  # nearest upsampling to one value per sample
        return self.m_source(self.m_source.sine_waves(f0, generator))

    def _window(self, device: torch.device) -> torch.Tensor:
        # float64 then cast, like upstream's scipy window, so the (i)STFT matches to the last bit
        return torch.hann_window(self.cfg.istft_n_fft, periodic=True, dtype=torch.float64).to(
            device, torch.float32
        )

    def decode(self, mel: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        """mel (B, 80, F), source (B, 1, 480 F) -> float32 waveform (B, 480 F) in [-0.99, 0.99].

        The convolutions run in the module's dtype on channels-last activations (nwc.py); the STFT, its inverse
        and the exp/sin head in float32.
        """
        cfg = self.cfg
        dtype = self.conv_pre.weight.dtype
        window = self._window(mel.device)
        n_fft, hop = cfg.istft_n_fft, cfg.istft_hop
        spec = torch.stft(source.squeeze(1).float(), n_fft, hop, n_fft, window=window, return_complex=True)
        s_stft = to_nwc(torch.cat([spec.real, spec.imag], dim=1).to(dtype))  # (B, 18, 1, 120 F + 1)
        x = conv_nwc(self.conv_pre, to_nwc(mel.to(dtype)))
        n_kernels = len(cfg.resblock_kernel_sizes)
        for i, up in enumerate(self.ups):
            x = conv_nwc(up, F.leaky_relu(x, cfg.lrelu_slope))
            if i == len(self.ups) - 1:
                x = torch.cat([x[..., 1:2], x], dim=-1)  # reflect-pad one frame on the left
            x = x + self.source_resblocks[i](conv_nwc(self.source_downs[i], s_stft))
            blocks = self.resblocks[i * n_kernels : (i + 1) * n_kernels]
            x = sum(block(x) for block in blocks) / n_kernels
        # default slope 0.01 here, as upstream
        x = from_nwc(conv_nwc(self.conv_post, F.leaky_relu(x))).float()
        half = n_fft // 2 + 1
        magnitude = torch.exp(x[:, :half]).clamp(max=1e2)
        phase = torch.sin(x[:, half:])
        spec = torch.complex(magnitude * torch.cos(phase), magnitude * torch.sin(phase))
        wav = torch.istft(spec, n_fft, hop, n_fft, window=window)
        return wav.clamp(-cfg.audio_limit, cfg.audio_limit)
