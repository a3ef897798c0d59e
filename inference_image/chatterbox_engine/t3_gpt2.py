"""Turbo T3: the GPT-2 backbone variant of T3 (reference §4.3, §6.2, §6.8); it decodes in `decoding.py`.

Differences from the Llama T3 (`t3.py`): GPT-2 blocks (LayerNorm, biased projections stored as
HF `Conv1D` (in, out) matrices, gelu_new MLP, learned absolute positions `tfmr.wpe` over the whole
sequence); conditioning is only the speaker embedding plus the raw speech-prompt embeddings (no
perceiver, no emotion); text has no start/stop tokens; a request decodes one row without CFG and its
processors are temperature -> top-k -> top-p -> repetition penalty. Parameter names mirror
`checkpoint-keys/t3_turbo.tsv`; the unused `tfmr.wte` in the file is accepted and dropped on load.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import runtime
from .config import FlatConfig
from .sampling import SamplingParams, apply_repetition_penalty, apply_top_p
from .t3 import CachePositions, KVCache

UNUSED_KEYS = ("tfmr.wte.weight",)  # GPT-2's own token table: in the official file, never used
TOP_K = 1000  # upstream `generate(top_k=1000)`; not a user knob
# Conditioning keys and values kept per T3: Nano's voice prefix is 14 MB in bf16 (12 layers x 376 positions),
# Turbo's 37 MB, so this holds 18 Nano voices in bf16 or 3 Turbo voices in fp32.
CONDITIONING_KV_BYTES = 256 * 2**20


@dataclass(frozen=True)
class GPT2T3Config(FlatConfig):
    """The GPT-2 T3's shapes; the defaults are the official Turbo (GPT-2 medium)."""

    hidden_size: int = 1024
    num_layers: int = 24
    num_heads: int = 16
    max_positions: int = 8196
    layer_norm_eps: float = 1e-5
    text_vocab_size: int = 50276
    speech_vocab_size: int = 6563
    max_text_tokens: int = 2048
    max_speech_tokens: int = 4096
    start_speech_token: int = 6561
    stop_speech_token: int = 6562
    speaker_embed_size: int = 256
    speech_cond_prompt_len: int = 375

    @classmethod
    def nano(cls) -> GPT2T3Config:
        """The official Nano shapes (GPT-2 small): Turbo's architecture, 768 wide, 12 blocks, 12 heads."""
        return cls(hidden_size=768, num_layers=12, num_heads=12)

    @classmethod
    def tiny_nano(cls) -> GPT2T3Config:
        """Nano's tiny test shapes: one block fewer than Turbo's, so the two random models differ."""
        return cls(hidden_size=64, num_layers=1, num_heads=4, speaker_embed_size=32)

    @classmethod
    def tiny(cls) -> GPT2T3Config:
        return cls(hidden_size=64, num_layers=2, num_heads=4, speaker_embed_size=32, text_vocab_size=50276)

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads


class Conv1D(nn.Module):
    """HF GPT-2's projection: weight stored (in, out), so the official tensors load unchanged."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_in, n_out).normal_(std=0.02))
        self.bias = nn.Parameter(torch.zeros(n_out))

    def forward(self, x: Tensor) -> Tensor:
        return runtime.linear(self, x, self.weight, self.bias, in_out=True)


class Linear(nn.Linear):
    """nn.Linear (same parameters) whose products may read a prepacked weight (`runtime.linear`)."""

    def forward(self, x: Tensor) -> Tensor:
        return runtime.linear(self, x, self.weight, self.bias)


class GPT2Attention(nn.Module):
    def __init__(self, cfg: GPT2T3Config) -> None:
        super().__init__()
        self.num_heads, self.head_dim = cfg.num_heads, cfg.head_dim
        self.c_attn = Conv1D(cfg.hidden_size, 3 * cfg.hidden_size)
        self.c_proj = Conv1D(cfg.hidden_size, cfg.hidden_size)

    def forward(self, x: Tensor, cache: KVCache, layer: int, at: CachePositions) -> Tensor:
        B, T, C = x.shape
        H = self.num_heads
        qkv = self.c_attn(x).view(B, T, 3 * H, self.head_dim)  # heads of q, then k, then v
        k, v = cache.write(layer, at, qkv[:, :, H:])  # (B, H, kv_len, D) each
        out = F.scaled_dot_product_attention(qkv[:, :, :H].transpose(1, 2), k, v, attn_mask=at.mask)
        return self.c_proj(out.transpose(1, 2).reshape(B, T, C))


class GPT2MLP(nn.Module):
    def __init__(self, cfg: GPT2T3Config) -> None:
        super().__init__()
        self.c_fc = Conv1D(cfg.hidden_size, 4 * cfg.hidden_size)
        self.c_proj = Conv1D(4 * cfg.hidden_size, cfg.hidden_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))  # gelu_new


class GPT2Block(nn.Module):
    def __init__(self, cfg: GPT2T3Config) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.attn = GPT2Attention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.mlp = GPT2MLP(cfg)

    def forward(self, x: Tensor, cache: KVCache, layer: int, at: CachePositions) -> Tensor:
        x = x + self.attn(self.ln_1(x), cache, layer, at)
        return x + self.mlp(self.ln_2(x))


class GPT2Backbone(nn.Module):
    """The `tfmr.*` subtree without `wte`: positions, blocks and the final LayerNorm."""

    def __init__(self, cfg: GPT2T3Config) -> None:
        super().__init__()
        self.wpe = nn.Embedding(cfg.max_positions, cfg.hidden_size)
        self.h = nn.ModuleList(GPT2Block(cfg) for _ in range(cfg.num_layers))
        self.ln_f = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, embeds: Tensor, input_pos: Tensor, cache: KVCache, kv_len: int) -> Tensor:
        """embeds (B, T, C) at positions input_pos (B, T) long -> final-normed hidden states (B, T, C)."""
        at = CachePositions.of(input_pos, kv_len, embeds.dtype)
        x = embeds + self.wpe(input_pos)
        for index, block in enumerate(self.h):
            x = block(x, cache, index, at)
        return self.ln_f(x)


class SpeakerProjection(nn.Module):
    """`cond_enc.spkr_enc`: the only conditioning network Turbo has."""

    def __init__(self, cfg: GPT2T3Config) -> None:
        super().__init__()
        self.spkr_enc = nn.Linear(cfg.speaker_embed_size, cfg.hidden_size)


class GPT2T3(nn.Module):
    def __init__(self, cfg: GPT2T3Config) -> None:
        super().__init__()
        self.cfg = cfg
        self.tfmr = GPT2Backbone(cfg)
        self.cond_enc = SpeakerProjection(cfg)
        self.text_emb = nn.Embedding(cfg.text_vocab_size, cfg.hidden_size)
        # Training-only text head, kept so the official file loads strictly.
        self.text_head = nn.Linear(cfg.hidden_size, cfg.text_vocab_size, bias=False)
        self.speech_emb = nn.Embedding(cfg.speech_vocab_size, cfg.hidden_size)
        self.speech_head = Linear(cfg.hidden_size, cfg.speech_vocab_size, bias=True)
        self._conditioning_kv = LRUCache(CONDITIONING_KV_BYTES)

    def conditioning_kv(self, cond: Tensor) -> tuple[Tensor, Tensor]:
        """Keys and values (layers, 1, H, P, D) of the conditioning positions cond (1, P, C) from
        `embed_conditioning`: they sit at positions 0..P with absolute positions and see nothing after them,
        so every request with the voice starts with exactly these; computed once per distinct conditioning
        and these weights, then reused (`decoding.DecodeBatch.prefill` copies them into a request's cache)."""
        key = (_fingerprint(cond), *[(p.data_ptr(), runtime.version_of(p)) for p in self.tfmr.parameters()])
        return self._conditioning_kv.get(key, lambda: self._compute_conditioning_kv(cond))

    def _compute_conditioning_kv(self, cond: Tensor) -> tuple[Tensor, Tensor]:
        length = cond.shape[1]
        cache = self.new_cache(1, length)
        self.tfmr(cond, torch.arange(length, device=cond.device)[None], cache, length)
        return cache.keys, cache.values

    def embed_conditioning(self, speaker_emb: Tensor, prompt_tokens: Tensor, exaggeration: Tensor) -> Tensor:
        """speaker (1, S), prompt tokens (1, P) -> (1, 1 + P, C); `exaggeration` has no input here."""
        speaker = self.cond_enc.spkr_enc(speaker_emb)[:, None]
        return torch.cat((speaker, self.speech_emb(prompt_tokens)), dim=1)

    def embed_speech_rows(self, tokens: Tensor, speech_positions: Tensor) -> Tensor:
        """One token per row, tokens (B, 1) long -> (B, 1, C). Turbo's positions are absolute (`tfmr.wpe`,
        added in forward), so the speech positions are not needed."""
        return self.speech_emb(tokens)

    def prefill_embeds(self, cond: Tensor, text_tokens: Tensor, cfg_rows: bool = False) -> Tensor:
        """[speaker][prompt][text][speech BOS] (text without start/stop tokens): one row, Turbo has no
        CFG (cfg_rows is accepted, and ignored, as for every variant's T3)."""
        bos = torch.full((1, 1), self.cfg.start_speech_token, device=text_tokens.device, dtype=torch.long)
        return torch.cat((cond, self.text_emb(text_tokens), self.speech_emb(bos)), dim=1)

    def forward(
        self, embeds: Tensor, input_pos: Tensor, cache: KVCache, kv_len: int, logits_at: Tensor | None = None
    ) -> Tensor:
        """As `T3.forward`: embeds (B, T, C) at positions input_pos (B, T) -> speech logits (B, T, V), or
        (B, V) at index logits_at[b] of each row."""
        hidden = self.tfmr(embeds, input_pos, cache, kv_len)
        if logits_at is not None:
            hidden = hidden[torch.arange(hidden.shape[0], device=hidden.device), logits_at]  # (B, C)
        return self.speech_head(hidden)

    def sample(
        self,
        logits: Tensor,
        history: Tensor,
        sampled: int,
        params: SamplingParams,
        generator: torch.Generator,
    ) -> Tensor:
        """One request's next token (1, 1) from its logits (1, V); history (1, N) holds the speech BOS then
        the `sampled` tokens so far. The first step penalises the BOS, later ones only generated tokens."""
        seen = history[:, 1 : sampled + 1] if sampled else history[:, :1]
        probs = process_turbo_logits(
            logits.float(), seen, params.temperature, params.top_p, params.repetition_penalty
        ).softmax(-1)
        return torch.multinomial(probs, num_samples=1, generator=generator)

    @property
    def max_positions(self) -> int:
        """Cache positions one request may reach: the learned position table's length."""
        return self.cfg.max_positions

    def new_cache(self, rows: int, max_len: int) -> KVCache:
        weight, cfg = self.speech_head.weight, self.cfg
        return KVCache(
            cfg.num_layers, cfg.num_heads, cfg.head_dim, rows, max_len, weight.device, weight.dtype
        )


def apply_top_k(logits: Tensor, top_k: int) -> Tensor:
    """Keep the top_k largest logits (ties with the k-th kept), as HF `TopKLogitsWarper`."""
    top_k = min(top_k, logits.shape[-1])
    kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, -float("inf"))


def process_turbo_logits(
    logits: Tensor, history: Tensor, temperature: float, top_p: float, repetition_penalty: float
) -> Tensor:
    """Upstream `inference_turbo` order: temperature -> top-k -> top-p -> repetition penalty."""
    if temperature != 1.0:
        logits = logits / temperature
    logits = apply_top_k(logits, TOP_K)
    logits = apply_top_p(logits, top_p)
    if repetition_penalty != 1.0:
        logits = apply_repetition_penalty(logits, history, repetition_penalty)
    return logits


def _fingerprint(tensor: Tensor) -> tuple:
    """What tells one tensor's contents from another's: shape, dtype and a digest of its bytes."""
    data = tensor.detach().cpu().contiguous().view(torch.uint8).numpy()
    return tuple(tensor.shape), tensor.dtype, hashlib.blake2b(data, digest_size=16).digest()


class LRUCache:
    """Thread-safe least-recently-used cache of tensor tuples, bounded by their total bytes."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[object, tuple[Tensor, ...]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def __reduce__(self):
        return LRUCache, (self.max_bytes,)  # a copied or pickled model starts with an empty cache

    def get(self, key, compute) -> tuple[Tensor, ...]:
        """The entry for key, computed with compute() (outside the lock) when absent."""
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
        value = compute()
        size = sum(t.numel() * t.element_size() for t in value)
        with self._lock:
            if key not in self._entries and size <= self.max_bytes:
                self._entries[key] = value
                self._bytes += size
                while self._bytes > self.max_bytes:
                    _, evicted = self._entries.popitem(last=False)
                    self._bytes -= sum(t.numel() * t.element_size() for t in evicted)
        return value
