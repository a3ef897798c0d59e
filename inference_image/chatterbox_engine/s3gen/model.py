"""`S3Gen`: speech tokens + reference -> 24 kHz waveform; also the reference front end (`embed_ref`).

Children mirror `s3gen.safetensors`: `tokenizer`, `speaker_encoder`, `flow`, `mel2wav`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .campplus import CAMPPlus
from .config import (
    HOP_24K,
    MEL_BINS,
    S3_SR,
    S3GEN_SR,
    SPEECH_VOCAB_SIZE,
    TOKEN_MEL_RATIO,
    XVECTOR_DIM,
    S3GenConfig,
)
from .flow import Flow
from .frontends import campplus_fbank, prompt_mel, resample
from .hift import HiFTGenerator
from .tokenizer import S3Tokenizer

# The first 20 ms of output are silenced and the next 20 ms faded in: this hides bleed from the prompt mel.
TRIM_SAMPLES = S3GEN_SR // 50
# Two 40 ms token periods: below this there is no prompt to condition on (the engine asks for far more).
MIN_REFERENCE_SAMPLES = 2 * 2 * HOP_24K


def trim_fade_window(device=None, dtype=torch.float32) -> torch.Tensor:
    fade = torch.zeros(2 * TRIM_SAMPLES, device=device)
    fade[TRIM_SAMPLES:] = (torch.cos(torch.linspace(torch.pi, 0, TRIM_SAMPLES, device=device)) + 1) / 2
    return fade.to(dtype=dtype)


@dataclass
class S3GenReference:
    """What S3Gen needs from a reference voice (upstream's `ref_dict`, minus the unused feat length)."""

    prompt_token: torch.Tensor  # (1, Np) long
    prompt_token_len: torch.Tensor  # (1,) long
    prompt_feat: torch.Tensor  # (1, 2 Np, 80) float, 24 kHz log-mel
    embedding: torch.Tensor  # (1, 192) float, CAMPPlus x-vector

    def __post_init__(self) -> None:
        n_prompt = self.prompt_token.shape[-1]
        if self.prompt_token.dim() != 2 or self.prompt_token.size(0) != 1:
            raise ValueError(f"prompt_token must be (1, Np), got {tuple(self.prompt_token.shape)}")
        # Upstream's embed_ref can leave one extra prompt frame (reference not a whole number of 40 ms), e.g. in
        # conds.pt; such a reference is accepted and, as upstream, yields one frame less of output.
        n_frames = TOKEN_MEL_RATIO * n_prompt
        if (
            self.prompt_feat.dim() != 3
            or self.prompt_feat.shape[::2] != (1, MEL_BINS)
            or not (n_frames <= self.prompt_feat.size(1) <= n_frames + 1)
        ):
            raise ValueError(
                f"prompt_feat must be (1, {n_frames}, {MEL_BINS}) for {n_prompt} prompt tokens, "
                f"got {tuple(self.prompt_feat.shape)}"
            )
        if tuple(self.embedding.shape) != (1, XVECTOR_DIM):
            raise ValueError(f"embedding must be (1, {XVECTOR_DIM}), got {tuple(self.embedding.shape)}")

    def to_tensors(self) -> dict[str, torch.Tensor]:
        return {
            "prompt_token": self.prompt_token,
            "prompt_token_len": self.prompt_token_len,
            "prompt_feat": self.prompt_feat,
            "embedding": self.embedding,
        }

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> S3GenReference:
        missing = {"prompt_token", "prompt_feat", "embedding"} - set(tensors)
        if missing:
            raise ValueError(f"S3Gen reference is missing {sorted(missing)}")
        prompt_token = tensors["prompt_token"].long()
        token_len = tensors.get("prompt_token_len")
        if token_len is None:
            token_len = torch.tensor([prompt_token.size(-1)])
        ref = cls(prompt_token, token_len.long().reshape(1), tensors["prompt_feat"], tensors["embedding"])
        # Voices come back from disk: reject values that would otherwise fail deep inside the model. (Checked
        # here, once per load, not in __post_init__: `to()` builds a reference for every rendered window.)
        if prompt_token.numel() and (prompt_token.min() < 0 or prompt_token.max() >= SPEECH_VOCAB_SIZE):
            raise ValueError(f"prompt_token values must lie in [0, {SPEECH_VOCAB_SIZE})")
        if not (torch.isfinite(ref.prompt_feat).all() and torch.isfinite(ref.embedding).all()):
            raise ValueError("prompt_feat and embedding must be finite")
        return ref

    def output_frames(self, n_tokens: int) -> int:
        """Mel frames S3Gen renders for n_tokens new tokens: 2 per token, one less with an odd prompt frame."""
        prompt_frames = self.prompt_feat.size(1)
        return TOKEN_MEL_RATIO * (self.prompt_token.size(-1) + n_tokens) - prompt_frames

    def to(self, device=None, dtype=None) -> S3GenReference:
        return S3GenReference(
            self.prompt_token.to(device),
            self.prompt_token_len.to(device),
            self.prompt_feat.to(device=device, dtype=dtype),
            self.embedding.to(device=device, dtype=dtype),
        )


@dataclass(frozen=True)
class SynthesisWindow:
    """One utterance's tokens to render, with what makes its audio its own: reference, generator and the
    excitation carried over from its previous window (streaming)."""

    tokens: torch.Tensor  # (1, N) long speech tokens
    ref: S3GenReference
    generator: torch.Generator | None
    source: torch.Tensor | None = None  # (1, 1, S): overrides the first S excitation samples

    @property
    def batch_key(self) -> tuple[int, int, int]:
        """Windows with equal keys have equal shapes all the way through S3Gen, so they batch exactly."""
        return (self.tokens.size(-1), self.ref.prompt_token.size(-1), self.ref.prompt_feat.size(1))


class S3Gen(nn.Module):
    def __init__(self, cfg: S3GenConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or S3GenConfig.full()
        self.tokenizer = S3Tokenizer(self.cfg.tokenizer)
        self.speaker_encoder = CAMPPlus(self.cfg.speaker_encoder)
        self.flow = Flow(self.cfg)
        self.mel2wav = HiFTGenerator(self.cfg.hift)
        # Built on the CPU explicitly: under `torch.device("meta")` construction a non-persistent buffer would
        # stay meta, as `load_state_dict(assign=True)` never fills it.
        self.register_buffer("trim_fade", trim_fade_window(device="cpu"), persistent=False)
        self.eval()

    def _apply(self, fn, recurse: bool = True):
        # `.to(dtype)` / `.half()` cast the synthesis path only. The reference front end stays float32 (moved,
        # never cast): S3 codes and x-vectors must not depend on the serving precision, and it runs once per voice.
        probe = fn(torch.zeros(1))
        if not recurse or probe.dtype == torch.float32:
            return super()._apply(fn, recurse)
        front_end = (self.tokenizer, self.speaker_encoder)
        for child in self.children():
            child._apply((lambda t: t.to(probe.device)) if any(child is m for m in front_end) else fn)
        self.trim_fade = self.trim_fade.to(probe.device)
        return self

    @property
    def device(self) -> torch.device:
        return self.flow.encoder_proj.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.flow.encoder_proj.weight.dtype

    # -- reference front end ---------------------------------------------------------------------------

    @torch.inference_mode()
    def tokenize(self, wav16k: torch.Tensor, max_len: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """16 kHz audio (B, T) -> S3 codes (B, N) long and lengths (B,) long; N <= max_len when given."""
        return self.tokenizer(wav16k.to(self.device), max_len=max_len)

    @torch.inference_mode()
    def speaker_embedding(self, wav16k: torch.Tensor) -> torch.Tensor:
        """16 kHz audio (1, T) -> CAMPPlus x-vector (1, 192)."""
        return self.speaker_encoder(campplus_fbank(wav16k.to(self.device, torch.float32)))

    @torch.inference_mode()
    def embed_ref(self, wav24k: torch.Tensor) -> S3GenReference:
        """24 kHz reference (1, T), already cut to <= 10 s, -> prompt tokens, prompt mel and x-vector."""
        if wav24k.dim() != 2 or wav24k.size(0) != 1:
            raise ValueError(
                f"embed_ref expects one 24 kHz reference shaped (1, T), got {tuple(wav24k.shape)}"
            )
        if wav24k.size(1) < MIN_REFERENCE_SAMPLES:
            raise ValueError(
                f"reference audio is too short: at least {MIN_REFERENCE_SAMPLES / S3GEN_SR} s needed"
            )
        if not torch.isfinite(wav24k).all():
            raise ValueError("reference audio contains NaN or infinite samples")
        wav24k = wav24k.to(self.device, torch.float32)
        prompt_feat = prompt_mel(wav24k).transpose(1, 2)  # (1, F, 80) float32, like the whole reference
        wav16k = resample(wav24k, S3GEN_SR, S3_SR)
        embedding = self.speaker_embedding(wav16k)
        tokens, token_lens = self.tokenize(wav16k)
        # Keep exactly 2 mel frames per prompt token. Upstream trims only the tokens, so a reference that is not a
        # whole number of 40 ms keeps an odd prompt frame and the output drifts by one frame; we drop that frame
        # (a deliberate difference, so that N tokens always give 2N frames).
        n_tokens = min(tokens.size(1), prompt_feat.size(1) // TOKEN_MEL_RATIO)
        tokens = tokens[:, :n_tokens]
        prompt_feat = prompt_feat[:, : TOKEN_MEL_RATIO * n_tokens]
        return S3GenReference(tokens, torch.tensor([n_tokens], device=self.device), prompt_feat, embedding)

    # -- synthesis ---------------------------------------------------------------------------------------

    def check_tokens(self, speech_tokens: torch.Tensor) -> torch.Tensor:
        speech_tokens = torch.atleast_2d(speech_tokens)
        if speech_tokens.size(0) != 1:
            raise ValueError("S3Gen synthesises one utterance at a time: speech_tokens must be (1, N)")
        if speech_tokens.numel() == 0:
            raise ValueError("speech_tokens is empty")
        if speech_tokens.min() < 0 or speech_tokens.max() >= SPEECH_VOCAB_SIZE:
            raise ValueError(f"speech tokens must lie in [0, {SPEECH_VOCAB_SIZE}); drop special tokens first")
        return speech_tokens.to(self.device).long()

    @torch.inference_mode()
    def flow_inference(
        self,
        speech_tokens: torch.Tensor,
        ref: S3GenReference,
        generator: torch.Generator | None,
        n_timesteps: int | None = None,
        noise: torch.Tensor | None = None,
        finalize: bool = True,
    ) -> torch.Tensor:
        """Tokens (1, N) -> mel (1, 80, 2N) (2N - 6 when `finalize` is False: the last frames await lookahead;
        one frame less for a reference carrying an odd extra prompt frame, as upstream).

        `noise` (1, 80, 2 Np + 2N [- 6]) replaces the generator draw for the ODE start (prompt + new frames).
        """
        return self._flow(
            [self.check_tokens(speech_tokens)], [ref], [generator], n_timesteps, noise, finalize
        )

    def _flow(
        self,
        tokens: list[torch.Tensor],
        refs: list[S3GenReference],
        generators: list[torch.Generator | None],
        n_timesteps: int | None,
        noise: torch.Tensor | None = None,
        finalize: bool = True,
    ) -> torch.Tensor:
        """Equal-shape utterances, one row each, through the flow in one batch -> mel (B, 80, F)."""
        refs = [ref.to(self.device, self.dtype) for ref in refs]
        return self.flow.inference(
            torch.cat(tokens),
            torch.cat([ref.prompt_token for ref in refs]),
            torch.cat([ref.prompt_feat for ref in refs]),
            torch.cat([ref.embedding for ref in refs]),
            noise,
            generators,
            n_timesteps or self.cfg.cfm.n_timesteps,
            finalize,
        )

    @torch.inference_mode()
    def hift_inference(
        self, mel: torch.Tensor, generator: torch.Generator | None, source: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """mel (1, 80, F) -> (wav (1, 480 F), excitation source (1, 1, 480 F)).

        `source` (1, 1, S) overrides the first S excitation samples: pass the tail of the previous chunk's
        source when re-vocoding overlapping mel so the chunks' excitation phases line up.
        """
        return self._hift(mel.to(self.device), [generator], [source])

    def _hift(
        self,
        mel: torch.Tensor,
        generators: list[torch.Generator | None],
        sources: list[torch.Tensor | None],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """mel (B, 80, F) -> (wav (B, 480 F), excitation (B, 1, 480 F)); row i's excitation is drawn from
        generators[i] alone (as if unbatched) and starts with sources[i] when given."""
        if mel.size(0) != len(generators):
            raise ValueError(f"need one generator per mel row: {len(generators)} for {mel.size(0)} rows")
        rows = []
        for i, (generator, source) in enumerate(zip(generators, sources, strict=True)):
            excitation = self.mel2wav.source(mel[i : i + 1], generator)
            if source is not None and source.size(-1) > 0:
                n = min(source.size(-1), excitation.size(-1))
                excitation[..., :n] = source[..., :n].to(excitation)
            rows.append(excitation)
        excitation = torch.cat(rows)
        return self.mel2wav.decode(mel, excitation), excitation

    @torch.inference_mode()
    def synthesize(
        self, windows: list[SynthesisWindow], n_timesteps: int | None = None
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Render equal-shape windows (same `batch_key`) in one batch through flow and vocoder.

        Returns per window (wav (1, 480 F), excitation (1, 1, 480 F)), no trim/fade applied. Each window's
        audio is what it would be alone: its noise and excitation come from its own generator, and the rows
        never mix (only the matrix products see more rows, so floats may differ in the last bits).
        """
        if not windows:
            return []
        if len({w.batch_key for w in windows}) != 1:
            raise ValueError("windows batched together must share one shape (SynthesisWindow.batch_key)")
        generators = [w.generator for w in windows]
        mel = self._flow(
            [self.check_tokens(w.tokens) for w in windows], [w.ref for w in windows], generators, n_timesteps
        )
        wav, excitation = self._hift(mel, generators, [w.source for w in windows])
        # Copies, so that a stream keeping its row does not keep the whole batch alive.
        return [(wav[i : i + 1].clone(), excitation[i : i + 1].clone()) for i in range(len(windows))]

    @torch.inference_mode()
    def inference(
        self,
        speech_tokens: torch.Tensor,
        ref: S3GenReference,
        generator: torch.Generator | None,
        n_timesteps: int | None = None,
    ) -> torch.Tensor:
        """Tokens (1, N) -> 24 kHz waveform (1, 960 N) with the trim/fade of the first 40 ms applied."""
        mel = self.flow_inference(speech_tokens, ref, generator, n_timesteps)
        wav, _ = self.hift_inference(mel, generator)
        return apply_trim_fade(wav, self.trim_fade)


def apply_trim_fade(wav: torch.Tensor, fade: torch.Tensor) -> torch.Tensor:
    n = min(fade.numel(), wav.size(-1))
    wav[..., :n] *= fade[:n]
    return wav


__all__ = [
    "HOP_24K",
    "S3Gen",
    "S3GenConfig",
    "S3GenReference",
    "SynthesisWindow",
    "apply_trim_fade",
    "trim_fade_window",
]
