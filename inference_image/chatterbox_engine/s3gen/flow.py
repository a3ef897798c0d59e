"""Token-to-mel flow (`flow.*`): upsampling Conformer -> mu, then conditional flow matching, reference §10.

`Flow.inference` concatenates the reference's prompt tokens with the new tokens, encodes them to mu at 50 Hz,
puts the prompt mel in `cond`, integrates the CFM ODE from Gaussian noise and returns only the new frames.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .config import MEL_BINS, SPEECH_VOCAB_SIZE, TOKEN_MEL_RATIO, XVECTOR_DIM, CFMConfig, S3GenConfig
from .conformer import UpsampleConformerEncoder
from .estimator import ConditionalDecoder


class CausalConditionalCFM(nn.Module):
    """Euler solver for the flow-matching ODE (`flow.decoder`); holds only the estimator's weights."""

    def __init__(self, cfg: S3GenConfig) -> None:
        super().__init__()
        self.cfm: CFMConfig = cfg.cfm
        self.meanflow = cfg.estimator.meanflow
        self.estimator = ConditionalDecoder(cfg.estimator)

    def time_grid(self, n_timesteps: int, like: torch.Tensor) -> torch.Tensor:
        t = torch.linspace(0, 1, n_timesteps + 1, device=like.device, dtype=like.dtype)
        # Cosine schedule spends more steps near t = 0 (noise); meanflow models use the linear grid.
        return t if self.meanflow else 1 - torch.cos(t * 0.5 * torch.pi)

    def forward(
        self,
        noise: torch.Tensor,
        mu: torch.Tensor,
        mask: torch.Tensor,
        spks: torch.Tensor,
        cond: torch.Tensor,
        n_timesteps: int,
    ) -> torch.Tensor:
        """noise, mu, cond (B, 80, T); mask (B, 1, T); spks (B, 80) -> mel (B, 80, T) float32.

        The ODE state and time grid stay float32 whatever the estimator's dtype (Euler sums lose little there).
        """
        dtype = mu.dtype
        x = noise.float()
        t_span = self.time_grid(n_timesteps, x)
        if self.meanflow:
            rows = x.size(0)
            for t, r in zip(t_span[:-1], t_span[1:], strict=True):
                v = self.estimator(
                    x.to(dtype), mask, mu, t.expand(rows).to(dtype), spks, cond, r=r.expand(rows).to(dtype)
                )
                x = x + (r - t) * v.float()
            return x
        # Classifier-free guidance as one batch of 2B: the second half sees zeros for mu, speaker and cond.
        rate = self.cfm.inference_cfg_rate
        mask2 = torch.cat([mask, mask])
        mu2 = torch.cat([mu, torch.zeros_like(mu)])
        spks2 = torch.cat([spks, torch.zeros_like(spks)])
        cond2 = torch.cat([cond, torch.zeros_like(cond)])
        for t, r in zip(t_span[:-1], t_span[1:], strict=True):
            x2 = torch.cat([x, x]).to(dtype)
            v_cond, v_uncond = (
                self.estimator(x2, mask2, mu2, t.expand(x2.size(0)).to(dtype), spks2, cond2).float().chunk(2)
            )
            x = x + (r - t) * ((1.0 + rate) * v_cond - rate * v_uncond)
        return x


class Flow(nn.Module):
    """`CausalMaskedDiffWithXvec`: token embedding + x-vector conditioning + Conformer + CFM decoder."""

    def __init__(self, cfg: S3GenConfig) -> None:
        super().__init__()
        size = cfg.encoder.size
        self.pre_lookahead_len = cfg.encoder.pre_lookahead_len
        self.input_embedding = nn.Embedding(SPEECH_VOCAB_SIZE, size)
        self.spk_embed_affine_layer = nn.Linear(XVECTOR_DIM, MEL_BINS)
        self.encoder = UpsampleConformerEncoder(cfg.encoder)
        self.encoder_proj = nn.Linear(size, MEL_BINS)
        self.decoder = CausalConditionalCFM(cfg)

    def encode(self, tokens: torch.Tensor, finalize: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens (B, Np + N) -> (mu (B, 80, T), mask (B, 1, T)); T = 2(Np + N), minus the lookahead frames
        when `finalize` is False (those frames still depend on tokens not generated yet)."""
        lengths = torch.full((tokens.size(0),), tokens.size(1), device=tokens.device)
        h, mask = self.encoder(self.input_embedding(tokens), lengths)  # (B, T, C), (B, 1, T)
        if not finalize:
            keep = h.size(1) - self.pre_lookahead_len * TOKEN_MEL_RATIO
            h, mask = h[:, :keep], mask[..., :keep]
        return self.encoder_proj(h).transpose(1, 2), mask

    def draw_noise(
        self, mu: torch.Tensor, prompt_frames: int, generator: torch.Generator | None
    ) -> torch.Tensor:
        """The ODE start, drawn in upstream's order so a generator seeded like its global RNG reproduces it."""
        # float32 whatever the model dtype, so a seed gives the same start in every precision
        options = {"generator": generator, "device": mu.device, "dtype": torch.float32}
        if not self.decoder.meanflow:
            return torch.randn(mu.shape, **options)
        # Meanflow upstream draws the new frames first, then the whole sequence, and keeps the first draw
        # for the new frames.
        new_frames = torch.randn(mu.size(0), mu.size(1), mu.size(2) - prompt_frames, **options)
        noise = torch.randn(mu.shape, **options)
        noise[..., prompt_frames:] = new_frames
        return noise

    def inference(
        self,
        tokens: torch.Tensor,
        prompt_token: torch.Tensor,
        prompt_feat: torch.Tensor,
        embedding: torch.Tensor,
        noise: torch.Tensor | None,
        generators: Sequence[torch.Generator | None],
        n_timesteps: int,
        finalize: bool = True,
    ) -> torch.Tensor:
        """tokens (B, N), prompt_token (B, Np), prompt_feat (B, Fp, 80), embedding (B, 192) -> mel (B, 80, F).

        Rows are independent utterances of equal shape (batched stream windows). `noise` (B, 80, Fp + F) is
        the ODE's starting point over prompt and new frames; when None, row i's is drawn from `generators[i]`,
        exactly as if it ran alone.
        """
        if len(generators) != tokens.size(0):
            raise ValueError(f"need one generator per row: {len(generators)} for {tokens.size(0)} rows")
        spks = self.spk_embed_affine_layer(F.normalize(embedding, dim=1))  # (B, 80)
        mu, mask = self.encode(torch.cat([prompt_token, tokens], dim=1), finalize)
        prompt_frames = prompt_feat.size(1)
        cond = torch.zeros_like(mu)
        cond[:, :, :prompt_frames] = prompt_feat.transpose(1, 2)
        if noise is None:
            noise = torch.cat(
                [self.draw_noise(mu[i : i + 1], prompt_frames, g) for i, g in enumerate(generators)]
            )
        elif noise.shape != mu.shape:
            raise ValueError(f"noise must be shaped {tuple(mu.shape)}, got {tuple(noise.shape)}")
        mask = mask.to(mu.dtype)
        mel = self.decoder(noise, mu, mask, spks, cond, n_timesteps)
        return mel[:, :, prompt_frames:]
