"""1-D convolutions over channels-last activations, the layout oneDNN convolves fastest on CPU.

Given torch's default (B, C, L) layout, oneDNN reorders each conv1d's input to channels-last and its output
back; in bf16 those copies cost more than the convolution itself. Activations kept as (B, C, 1, L)
channels-last tensors (physically (B, L, C)) and convolved by conv2d over a (C_out, C_in, 1, k) view of the
same weight skip both copies: on this CPU (AVX-512, AMX) a HiFT resblock conv ran 3.4x faster in bf16, 1.1-1.3x
in fp32. Elementwise ops keep the layout. Each output is the same sum of products: bit-identical in bf16 here,
within 4e-6 in fp32 (oneDNN may pick another blocking).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def to_nwc(x: torch.Tensor) -> torch.Tensor:
    """(B, C, L) -> (B, C, 1, L) channels-last."""
    return x.unsqueeze(2).contiguous(memory_format=torch.channels_last)


def from_nwc(x: torch.Tensor) -> torch.Tensor:
    """(B, C, 1, L) -> (B, C, L) view (strided, no copy)."""
    return x.squeeze(2)


def channels_last_view(x: torch.Tensor) -> torch.Tensor:
    """(B, C, 1, L) channels-last <-> (B, L, C) contiguous, both ways a view (for per-frame layers)."""
    if x.dim() == 4:
        return x.permute(0, 2, 3, 1).flatten(1, 2)
    return x.unsqueeze(1).permute(0, 3, 1, 2)


def conv_nwc(conv: nn.Conv1d | nn.ConvTranspose1d, x: torch.Tensor) -> torch.Tensor:
    """Run a Conv1d / ConvTranspose1d module (its own weight, bias and geometry) on (B, C, 1, L) channels-last."""
    (stride,), (padding,), (dilation,) = conv.stride, conv.padding, conv.dilation
    if conv.padding_mode != "zeros" or isinstance(padding, str):
        raise ValueError("conv_nwc supports explicit zero padding only")
    weight = conv.weight.unsqueeze(2)
    if isinstance(conv, nn.ConvTranspose1d):
        return F.conv_transpose2d(
            x, weight, conv.bias, (1, stride), (0, padding), (0, conv.output_padding[0]), conv.groups,
            (1, dilation),
        )  # fmt: skip
    return F.conv2d(x, weight, conv.bias, (1, stride), (0, padding), (1, dilation), conv.groups)
