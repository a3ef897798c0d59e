"""CAMPPlus speaker encoder (`speaker_encoder.*`): Kaldi fbank -> 192-d x-vector, reference §9.

Module names mirror the checkpoint keys (`head.layer1.0.bn1`, `xvector.block1.tdnnd1.cam_layer.linear1`, ...).
BatchNorm always runs on its running statistics: callers keep the module in eval mode.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import CAMPPlusConfig

CAM_SEGMENT_FRAMES = 100


class BasicResBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=(stride, 1), padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=(stride, 1), bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out)) + self.shortcut(x)
        return F.relu(out)


class FCM(nn.Module):
    """2-D conv stem over (frequency, time); three stride-2 steps in frequency: 80 bins -> 10."""

    def __init__(self, channels: int, feat_dim: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.layer1 = nn.Sequential(
            BasicResBlock(channels, channels, 2), BasicResBlock(channels, channels, 1)
        )
        self.layer2 = nn.Sequential(
            BasicResBlock(channels, channels, 2), BasicResBlock(channels, channels, 1)
        )
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=(2, 1), padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.out_channels = channels * (feat_dim // 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x.unsqueeze(1))))  # (B, C, F, T)
        out = self.layer2(self.layer1(out))
        out = F.relu(self.bn2(self.conv2(out)))
        return out.flatten(1, 2)  # (B, C * F/8, T)


class BatchNormReLU(nn.Module):
    """Upstream's `nonlinear` Sequential: BatchNorm1d (optionally non-affine) then ReLU (unless final)."""

    def __init__(self, channels: int, affine: bool = True, relu: bool = True) -> None:
        super().__init__()
        self.batchnorm = nn.BatchNorm1d(channels, affine=affine)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.batchnorm(x)
        return F.relu(x) if self.relu else x


class TDNNLayer(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int) -> None:
        super().__init__()
        padding = (kernel_size - 1) // 2
        self.linear = nn.Conv1d(
            in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False
        )
        self.nonlinear = BatchNormReLU(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.nonlinear(self.linear(x))


class CAMLayer(nn.Module):
    """Context-aware masking: a local conv gated by an MLP of (global mean + 100-frame segment mean)."""

    def __init__(self, bn_channels: int, out_channels: int, kernel_size: int, dilation: int) -> None:
        super().__init__()
        padding = (kernel_size - 1) // 2 * dilation
        self.linear_local = nn.Conv1d(
            bn_channels, out_channels, kernel_size, padding=padding, dilation=dilation, bias=False
        )
        self.linear1 = nn.Conv1d(bn_channels, bn_channels // 2, 1)
        self.linear2 = nn.Conv1d(bn_channels // 2, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        local = self.linear_local(x)
        context = x.mean(-1, keepdim=True) + self._segment_mean(x)
        gate = torch.sigmoid(self.linear2(F.relu(self.linear1(context))))
        return local * gate

    @staticmethod
    def _segment_mean(x: torch.Tensor) -> torch.Tensor:
        seg = F.avg_pool1d(x, CAM_SEGMENT_FRAMES, CAM_SEGMENT_FRAMES, ceil_mode=True)  # (B, C, S)
        return seg.repeat_interleave(CAM_SEGMENT_FRAMES, dim=-1)[..., : x.size(-1)]


class CAMDenseTDNNLayer(nn.Module):
    def __init__(self, in_channels: int, growth: int, bn_channels: int, dilation: int) -> None:
        super().__init__()
        self.nonlinear1 = BatchNormReLU(in_channels)
        self.linear1 = nn.Conv1d(in_channels, bn_channels, 1, bias=False)
        self.nonlinear2 = BatchNormReLU(bn_channels)
        self.cam_layer = CAMLayer(bn_channels, growth, 3, dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cam_layer(self.nonlinear2(self.linear1(self.nonlinear1(x))))


class CAMDenseTDNNBlock(nn.Module):
    """Densely connected: each layer's `growth` channels are appended to its input."""

    def __init__(
        self, num_layers: int, in_channels: int, growth: int, bn_channels: int, dilation: int
    ) -> None:
        super().__init__()
        for i in range(num_layers):
            layer = CAMDenseTDNNLayer(in_channels + i * growth, growth, bn_channels, dilation)
            self.add_module(f"tdnnd{i + 1}", layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.children():
            x = torch.cat([x, layer(x)], dim=1)
        return x


class TransitLayer(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.nonlinear = BatchNormReLU(in_channels)
        self.linear = nn.Conv1d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.nonlinear(x))


class DenseLayer(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.linear = nn.Conv1d(in_channels, out_channels, 1, bias=False)
        self.nonlinear = BatchNormReLU(out_channels, affine=False, relu=False)

    def forward(self, stats: torch.Tensor) -> torch.Tensor:
        return self.nonlinear(self.linear(stats.unsqueeze(-1)).squeeze(-1))


class XVector(nn.Module):
    def __init__(self, cfg: CAMPPlusConfig, in_channels: int) -> None:
        super().__init__()
        self.tdnn = TDNNLayer(in_channels, cfg.init_channels, 5, stride=2)
        channels = cfg.init_channels
        bn_channels = cfg.bn_size * cfg.growth_rate
        for i, (layers, dilation) in enumerate(zip(cfg.block_layers, cfg.block_dilations, strict=True)):
            block = CAMDenseTDNNBlock(layers, channels, cfg.growth_rate, bn_channels, dilation)
            self.add_module(f"block{i + 1}", block)
            channels += layers * cfg.growth_rate
            self.add_module(f"transit{i + 1}", TransitLayer(channels, channels // 2))
            channels //= 2
        self.out_nonlinear = BatchNormReLU(channels)
        self.dense = DenseLayer(channels * 2, cfg.embedding_size)
        self.num_blocks = len(cfg.block_layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.tdnn(x)
        for i in range(1, self.num_blocks + 1):
            x = getattr(self, f"transit{i}")(getattr(self, f"block{i}")(x))
        x = self.out_nonlinear(x)
        stats = torch.cat([x.mean(dim=-1), x.std(dim=-1, unbiased=True)], dim=-1)  # (B, 2C)
        return self.dense(stats)


class CAMPPlus(nn.Module):
    def __init__(self, cfg: CAMPPlusConfig) -> None:
        super().__init__()
        self.head = FCM(cfg.head_channels, cfg.feat_dim)
        self.xvector = XVector(cfg, self.head.out_channels)

    def forward(self, fbank: torch.Tensor) -> torch.Tensor:
        """fbank (B, frames, 80) -> x-vector (B, 192)."""
        return self.xvector(self.head(fbank.transpose(1, 2)))
