"""Upsampling Conformer encoder (`flow.encoder.*`), reference §10.2.

Token embeddings (25 Hz) -> Linear+LayerNorm -> pre-lookahead convs -> N Conformer layers -> nearest x2
upsample + conv -> Linear+LayerNorm -> M Conformer layers -> LayerNorm, at 50 Hz. Conformer layers are pre-norm
with ESPnet relative-position self-attention and a SiLU FFN (no macaron FFN, no conv module). Attention is
bidirectional, masked by padding only.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import ConformerConfig


def espnet_rel_positions(length: int, d_model: int, device, dtype) -> torch.Tensor:
    """ESPnet relative sinusoidal table for relative offsets +(T-1) ... -(T-1): (1, 2T - 1, d_model)."""
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * -(math.log(10000.0) / d_model))
    positive = torch.zeros(length, d_model)
    negative = torch.zeros(length, d_model)
    positive[:, 0::2] = torch.sin(position * div_term)
    positive[:, 1::2] = torch.cos(position * div_term)
    negative[:, 0::2] = torch.sin(-position * div_term)
    negative[:, 1::2] = torch.cos(-position * div_term)
    table = torch.cat([positive.flip(0), negative[1:]], dim=0)
    return table.unsqueeze(0).to(device=device, dtype=dtype)


class LinearEmbed(nn.Module):
    """Linear + LayerNorm, then x·√d and the relative-position table (`embed.out.{0,1}`)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.out = nn.Sequential(nn.Linear(size, size), nn.LayerNorm(size, eps=1e-5))
        self.xscale = math.sqrt(size)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.out(x) * self.xscale
        return x, espnet_rel_positions(x.size(1), x.size(2), x.device, x.dtype)


class PreLookaheadLayer(nn.Module):
    """Right-pad `lookahead` frames -> conv -> leaky ReLU -> causal conv k3 -> residual."""

    def __init__(self, channels: int, lookahead: int) -> None:
        super().__init__()
        self.lookahead = lookahead
        self.conv1 = nn.Conv1d(channels, channels, lookahead + 1)
        self.conv2 = nn.Conv1d(channels, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.pad(x.transpose(1, 2), (0, self.lookahead))  # (B, C, T + lookahead)
        h = F.leaky_relu(self.conv1(h))
        h = self.conv2(F.pad(h, (2, 0)))
        return h.transpose(1, 2) + x


class Upsample1D(nn.Module):
    def __init__(self, channels: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv1d(channels, channels, stride * 2 + 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, C, T) -> (B, C, stride·T)."""
        x = F.interpolate(x, scale_factor=float(self.stride), mode="nearest")
        return self.conv(F.pad(x, (self.stride * 2, 0)))


class RelPositionAttention(nn.Module):
    def __init__(self, size: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.d_k = size // heads
        self.linear_q = nn.Linear(size, size)
        self.linear_k = nn.Linear(size, size)
        self.linear_v = nn.Linear(size, size)
        self.linear_out = nn.Linear(size, size)
        self.linear_pos = nn.Linear(size, size, bias=False)
        self.pos_bias_u = nn.Parameter(torch.empty(heads, self.d_k))
        self.pos_bias_v = nn.Parameter(torch.empty(heads, self.d_k))
        nn.init.xavier_uniform_(self.pos_bias_u)
        nn.init.xavier_uniform_(self.pos_bias_v)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor, pos_emb: torch.Tensor) -> torch.Tensor:
        """x (B, T, C); key_mask (B, 1, T) bool, True = valid; pos_emb (1, 2T - 1, C)."""
        b, t, _ = x.shape
        q = self.linear_q(x).view(b, t, self.heads, self.d_k)
        k = self.linear_k(x).view(b, t, self.heads, self.d_k).transpose(1, 2)  # (B, H, T, d)
        v = self.linear_v(x).view(b, t, self.heads, self.d_k).transpose(1, 2)
        p = self.linear_pos(pos_emb).view(1, -1, self.heads, self.d_k).transpose(1, 2)  # (1, H, 2T-1, d)
        content = torch.matmul((q + self.pos_bias_u).transpose(1, 2), k.transpose(-2, -1))  # (B, H, T, T)
        position = torch.matmul((q + self.pos_bias_v).transpose(1, 2), p.transpose(-2, -1))  # (B, H, T, 2T-1)
        scores = (content + self._rel_shift(position)) / math.sqrt(self.d_k)
        if bool(key_mask.all()):
            attn = torch.softmax(scores, dim=-1)
        else:
            pad = ~key_mask.unsqueeze(1)  # (B, 1, 1, T)
            attn = torch.softmax(scores.masked_fill(pad, -float("inf")), dim=-1).masked_fill(pad, 0.0)
        out = torch.matmul(attn, v).transpose(1, 2).reshape(b, t, -1)
        return self.linear_out(out)

    @staticmethod
    def _rel_shift(scores: torch.Tensor) -> torch.Tensor:
        """(B, H, T, 2T-1) indexed by relative offset -> (B, H, T, T) with [i, j] = offset j - i.

        Column c of the table is offset (T-1) - c, so [i, j] lives at column (T-1) - i + j; the zero-pad/reshape
        trick (Transformer-XL) gathers exactly that without building an index tensor.
        """
        b, h, t, n = scores.shape
        padded = torch.cat([scores.new_zeros(b, h, t, 1), scores], dim=-1).view(b, h, n + 1, t)
        return padded[:, :, 1:].reshape(b, h, t, n)[..., : n // 2 + 1]


class FeedForward(nn.Module):
    def __init__(self, size: int, hidden: int) -> None:
        super().__init__()
        self.w_1 = nn.Linear(size, hidden)
        self.w_2 = nn.Linear(hidden, size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w_2(F.silu(self.w_1(x)))


class ConformerLayer(nn.Module):
    def __init__(self, cfg: ConformerConfig) -> None:
        super().__init__()
        self.self_attn = RelPositionAttention(cfg.size, cfg.heads)
        self.feed_forward = FeedForward(cfg.size, cfg.linear_units)
        self.norm_mha = nn.LayerNorm(cfg.size, eps=1e-12)
        self.norm_ff = nn.LayerNorm(cfg.size, eps=1e-12)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor, pos_emb: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.norm_mha(x), key_mask, pos_emb)
        return x + self.feed_forward(self.norm_ff(x))


class UpsampleConformerEncoder(nn.Module):
    def __init__(self, cfg: ConformerConfig) -> None:
        super().__init__()
        self.embed = LinearEmbed(cfg.size)
        self.pre_lookahead_layer = PreLookaheadLayer(cfg.size, cfg.pre_lookahead_len)
        self.encoders = nn.ModuleList(ConformerLayer(cfg) for _ in range(cfg.num_blocks))
        self.up_layer = Upsample1D(cfg.size, cfg.upsample_stride)
        self.up_embed = LinearEmbed(cfg.size)
        self.up_encoders = nn.ModuleList(ConformerLayer(cfg) for _ in range(cfg.num_up_blocks))
        self.after_norm = nn.LayerNorm(cfg.size, eps=1e-5)
        self.stride = cfg.upsample_stride

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, T, C) token embeddings, lengths (B,) -> (h (B, stride·T, C), mask (B, 1, stride·T) bool)."""
        mask = torch.arange(x.size(1), device=x.device)[None, :] < lengths[:, None]  # (B, T)
        x, pos_emb = self.embed(x)
        x = self.pre_lookahead_layer(x)
        for layer in self.encoders:
            x = layer(x, mask[:, None], pos_emb)
        x = self.up_layer(x.transpose(1, 2)).transpose(1, 2)
        lengths = lengths * self.stride
        mask = torch.arange(x.size(1), device=x.device)[None, :] < lengths[:, None]
        x, pos_emb = self.up_embed(x)
        for layer in self.up_encoders:
            x = layer(x, mask[:, None], pos_emb)
        return self.after_norm(x), mask[:, None]
