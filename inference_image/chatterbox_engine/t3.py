"""T3: the text-to-speech-token transformer of Chatterbox (English / multilingual Llama variant).

A Llama-3 style decoder (RMSNorm, SiLU-gated MLP, RoPE with llama3 frequency scaling) fed with custom
input embeddings: [conditioning (speaker, perceiver-resampled speech prompt, emotion)] [text] [speech].
Module and parameter names mirror the official checkpoint keys (`checkpoint-keys/t3_en.tsv`), so
`t3_cfg.safetensors` loads with strict key matching. The model is pure math with one forward
(gpt-fast's `forward(idx, input_pos)`): the decode loop that owns the KV cache lives in `decoding.py`.
"""

from __future__ import annotations

import functools
import math
import threading
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import runtime
from .config import FlatConfig
from .sampling import SamplingParams, sample_next


@dataclass(frozen=True)
class T3Config(FlatConfig):
    """The Llama T3's shapes; the defaults are the official English `t3_cfg` (Llama 520M)."""

    hidden_size: int = 1024
    num_layers: int = 30
    num_heads: int = 16
    intermediate_size: int = 4096
    rms_norm_eps: float = 1e-5
    rope_theta: float = 500_000.0
    # llama3 RoPE scaling: applied to inv_freq whatever the sequence length.
    rope_factor: float = 8.0
    rope_low_freq_factor: float = 1.0
    rope_high_freq_factor: float = 4.0
    rope_original_max_positions: int = 8192
    # `tfmr.embed_tokens` exists in the checkpoint but is unused: T3 feeds its own embeddings.
    backbone_vocab_size: int = 8
    text_vocab_size: int = 704
    speech_vocab_size: int = 8194
    max_text_tokens: int = 2048
    max_speech_tokens: int = 4096
    start_text_token: int = 255
    stop_text_token: int = 0
    start_speech_token: int = 6561
    stop_speech_token: int = 6562
    speaker_embed_size: int = 256
    speech_cond_prompt_len: int = 150
    perceiver_queries: int = 32
    perceiver_heads: int = 4

    @classmethod
    def tiny(cls) -> T3Config:
        """Tiny shapes for fast tests and demos; token ids and vocabularies stay official."""
        return cls(hidden_size=64, num_layers=2, num_heads=4, intermediate_size=128, speaker_embed_size=32)

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def cond_len(self) -> int:
        """Conditioning positions: speaker (1) + perceiver queries + emotion (1)."""
        return 1 + self.perceiver_queries + 1


@functools.lru_cache(maxsize=8)
def llama3_inv_freq(cfg: T3Config) -> Tensor:
    """RoPE inverse frequencies with the llama3 long-context rescaling (as HF `rope_type="llama3"`)."""
    dim = cfg.head_dim
    inv_freq = 1.0 / (cfg.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
    low_freq_wavelen = cfg.rope_original_max_positions / cfg.rope_low_freq_factor
    high_freq_wavelen = cfg.rope_original_max_positions / cfg.rope_high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > low_freq_wavelen, inv_freq / cfg.rope_factor, inv_freq)
    smooth = (cfg.rope_original_max_positions / wavelen - cfg.rope_low_freq_factor) / (
        cfg.rope_high_freq_factor - cfg.rope_low_freq_factor
    )
    smoothed = (1 - smooth) * scaled / cfg.rope_factor + smooth * scaled
    is_medium = ~(wavelen < high_freq_wavelen) & ~(wavelen > low_freq_wavelen)
    return torch.where(is_medium, smoothed, scaled)


@functools.lru_cache(maxsize=8)
def _inv_freq_on(cfg: T3Config, device: str) -> Tensor:
    # Kept per device: a host-to-device copy is not allowed while a CUDA graph is being captured.
    return llama3_inv_freq(cfg).to(device)


def rope_tables(cfg: T3Config, positions: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """cos and signed sin (..., D) of the rotary angles at float positions (...), for `apply_rope_`."""
    inv_freq = _inv_freq_on(cfg, str(positions.device))
    freqs = positions[..., None] * inv_freq  # (..., D/2)
    angles = torch.cat((freqs, freqs), dim=-1)  # (..., D)
    sin, half = angles.sin().to(dtype), freqs.shape[-1]
    # HF's rotate_half(x) * sin is cat(-x2, x1) * cat(s1, s2): bit for bit x.roll(D/2) * cat(-s1, s2).
    return angles.cos().to(dtype), torch.cat((-sin[..., :half], sin[..., half:]), dim=-1)


def apply_rope_(x: Tensor, cos: Tensor, signed_sin: Tensor) -> None:
    """Rotate x (..., D) in place by `rope_tables`' angles: HF's x * cos + rotate_half(x) * sin, same bits."""
    rotated = x.roll(x.shape[-1] // 2, dims=-1).mul_(signed_sin)
    x.mul_(cos).add_(rotated)


@dataclass(frozen=True)
class CachePositions:
    """Where the tokens of one forward call sit in the KV cache; built once per call, read by every layer.

    Row b of the call is cache row b; its T tokens go to cache positions input_pos[b]. A query attends to
    the keys of its own row up to its own position, so one call serves a prefill (positions 0..T), a
    right-padded prefill (shorter rows' padding comes after their real positions, which never see it) and a
    decode step (T = 1, each row at its own position)."""

    rows: Tensor  # (B, 1) long: arange(B)
    input_pos: Tensor  # (B, T) long
    mask: Tensor  # (B, 1, T, kv_len) additive, in the compute dtype: 0 where a query sees a key, else -inf
    kv_len: int  # cache positions read: past the furthest position (the whole cache under CUDA graphs)

    @classmethod
    def of(cls, input_pos: Tensor, kv_len: int, dtype: torch.dtype) -> CachePositions:
        keys = torch.arange(kv_len, device=input_pos.device)
        hidden = keys > input_pos[..., None]  # (B, T, kv_len)
        # The additive mask attention makes of a boolean one (same values, same bits), made once, not per layer.
        mask = torch.zeros(hidden.shape, device=input_pos.device, dtype=dtype).masked_fill_(hidden, -math.inf)
        return cls(
            rows=torch.arange(input_pos.shape[0], device=input_pos.device)[:, None],
            input_pos=input_pos,
            mask=mask[:, None],
            kv_len=kv_len,
        )


class KVCache:
    """Static key/value cache: rows x positions per layer, zeroed once, written in place.

    A layer's keys and values are one tensor `kv` (rows, 2H, positions, D), keys in heads 0..H and values
    in heads H..2H, so one indexed write stores both; `keys` and `values` are views of it.

    Batched decoding shares one cache: each request owns a block of rows, and `rows` gives the view one
    prefill writes to. Positions a row has not written yet hold finite values (zeros, or a padded
    prefill's garbage) that attention masks out: 0 * NaN would leak through the mask.
    """

    def __init__(
        self, num_layers: int, num_heads: int, head_dim: int, rows: int, max_len: int, device, dtype
    ) -> None:
        self.kv = torch.zeros(
            (num_layers, rows, 2 * num_heads, max_len, head_dim), device=device, dtype=dtype
        )

    @property
    def keys(self) -> Tensor:
        """(layers, rows, H, positions, D)"""
        return self.kv[:, :, : self.kv.shape[2] // 2]

    @property
    def values(self) -> Tensor:
        return self.kv[:, :, self.kv.shape[2] // 2 :]

    @property
    def max_len(self) -> int:
        return self.kv.shape[3]

    @classmethod
    def _wrap(cls, kv: Tensor) -> KVCache:
        cache = cls.__new__(cls)
        cache.kv = kv
        return cache

    def write(self, layer: int, at: CachePositions, kv: Tensor) -> tuple[Tensor, Tensor]:
        """Store kv (B, T, 2H, D), keys then values, of rows 0..B at their positions and return those rows'
        keys and values (B, H, kv_len, D)."""
        self.kv[layer][at.rows, :, at.input_pos] = kv  # indexed as (B, T, 2H, D)
        return self.kv[layer, : kv.shape[0], :, : at.kv_len].chunk(2, dim=1)

    def rows(self, start: int, stop: int) -> KVCache:
        """A cache sharing this one's storage, limited to rows start..stop."""
        return KVCache._wrap(self.kv[:, start:stop])

    def move_rows(self, source: int, stop: int, target: int) -> None:
        """Copy rows source..stop down to target.. (compaction after a request leaves the batch)."""
        self.kv[:, target : target + stop - source] = self.kv[:, source:stop].clone()

    def grown(self, rows: int, max_len: int) -> KVCache:
        """A cache of at least as many rows and positions holding this one's contents."""
        layers, own_rows, heads, own_len, head_dim = self.kv.shape
        kv = self.kv.new_zeros((layers, rows, heads, max_len, head_dim))
        kv[:, :own_rows, :, :own_len] = self.kv
        return KVCache._wrap(kv)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        # Normalise in fp32 whatever the compute dtype, then scale in it, as HF Llama does. torch's rms_norm
        # is HF's x * rsqrt(mean(x^2) + eps) (same bits), in one call instead of eight.
        return self.weight * F.rms_norm(x.float(), self.weight.shape, eps=self.eps).to(x.dtype)


class Projection(nn.Module):
    """Bias-free nn.Linear layers that read the same input, multiplied as one matrix; holds no parameters.

    At the first call (and again after `.to()`, a reload or any in-place write to the weights) the
    layers' weights become row blocks, i.e. views, of one concatenated weight: memory neutral, the
    same parameters and checkpoint keys. One product over the concatenation gives each output column
    the same dot product as the layer's own (checked in tests), with one matrix read and one parallel
    region per group instead of one per layer; `runtime.linear` multiplies (from a oneDNN-prepacked
    copy where that is faster: bf16 on CPU, 1.2-1.6x per decode step)."""

    def __init__(self, *linears: nn.Linear) -> None:
        super().__init__()
        self._linears = linears  # a tuple: registers nothing, the layers stay their parents' children
        self._lock = threading.Lock()
        self._forget()

    def _forget(self) -> None:
        self._weight: Tensor | None = None  # the concatenation the layers' weights are views of
        self._built_from: tuple | None = None  # the weights' `_identity()` when it was made
        self.__dict__.pop("_prepacked_weight", None)  # `runtime.linear`'s copy of it

    def forward(self, x: Tensor) -> Tensor:
        if self._built_from != self._identity():
            self._build()
        return runtime.linear(self, x, self._weight, None)

    def _identity(self) -> tuple:
        """Each weight's address and in-place write count (each parameter has its own, view or not); read
        through `_parameters`, 4x cheaper than attribute access."""
        weights = [linear._parameters["weight"] for linear in self._linears]
        return tuple((w.data_ptr(), runtime.version_of(w)) for w in weights)

    def _build(self) -> None:
        weights = [linear.weight for linear in self._linears]
        # Made in the weights' own mode: weights made outside inference mode must stay writable there.
        with self._lock, torch.inference_mode(weights[0].is_inference()):
            if self._built_from == self._identity():
                return  # another thread was first
            if len(weights) == 1:
                weight = weights[0].detach()  # shares the parameter's storage
            else:
                weight = torch.cat([w.detach() for w in weights])
                start = 0
                for w in weights:
                    w.data, start = weight[start : start + w.shape[0]], start + w.shape[0]
            self._weight = weight
            self._built_from = self._identity()

    def _apply(self, fn, recurse: bool = True):
        self._forget()  # the layers' weights are being replaced: free the old layout now
        return super()._apply(fn, recurse)

    def __getstate__(self) -> dict:
        # Copies and pickles rebuild the layout: oneDNN's packed tensors have no storage to copy.
        state = super().__getstate__()
        state.pop("_prepacked_weight", None)
        state.update(_weight=None, _built_from=None, _lock=None)
        return state

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self._lock = threading.Lock()

    def extra_repr(self) -> str:
        return f"{len(self._linears)} layer(s) as one product"


class SelfAttention(nn.Module):
    def __init__(self, cfg: T3Config) -> None:
        super().__init__()
        self.num_heads, self.head_dim = cfg.num_heads, cfg.head_dim
        self.q_proj = nn.Linear(cfg.hidden_size, cfg.hidden_size, bias=False)
        self.k_proj = nn.Linear(cfg.hidden_size, cfg.hidden_size, bias=False)
        self.v_proj = nn.Linear(cfg.hidden_size, cfg.hidden_size, bias=False)
        self.o_proj = nn.Linear(cfg.hidden_size, cfg.hidden_size, bias=False)
        self.qkv = Projection(self.q_proj, self.k_proj, self.v_proj)
        self.out = Projection(self.o_proj)

    def forward(
        self, x: Tensor, cos: Tensor, sin: Tensor, cache: KVCache, layer: int, at: CachePositions
    ) -> Tensor:
        """x (B, T, C) at the positions `at`; cos, signed_sin (B, T, 1, D) from `rope_tables`."""
        B, T, _ = x.shape
        H = self.num_heads
        qkv = self.qkv(x).view(B, T, 3 * H, self.head_dim)  # heads of q, then k, then v
        apply_rope_(qkv[:, :, : 2 * H], cos, sin)  # q and k in one pass, in place: k and v stay adjacent
        k, v = cache.write(layer, at, qkv[:, :, H:])  # (B, H, kv_len, D) each
        out = F.scaled_dot_product_attention(qkv[:, :, :H].transpose(1, 2), k, v, attn_mask=at.mask)
        return self.out(out.transpose(1, 2).reshape(B, T, self.num_heads * self.head_dim))


class GatedMLP(nn.Module):
    def __init__(self, cfg: T3Config) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)
        self.gate_up = Projection(self.gate_proj, self.up_proj)
        self.down = Projection(self.down_proj)

    def forward(self, x: Tensor) -> Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


class DecoderLayer(nn.Module):
    def __init__(self, cfg: T3Config) -> None:
        super().__init__()
        self.self_attn = SelfAttention(cfg)
        self.mlp = GatedMLP(cfg)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward(
        self, x: Tensor, cos: Tensor, sin: Tensor, cache: KVCache, layer: int, at: CachePositions
    ) -> Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, cache, layer, at)
        return x + self.mlp(self.post_attention_layernorm(x))


class LlamaBackbone(nn.Module):
    """The `tfmr.*` subtree: decoder layers and the final norm, driven by input embeddings."""

    def __init__(self, cfg: T3Config) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.backbone_vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.num_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.cfg = cfg

    def forward(self, embeds: Tensor, input_pos: Tensor, cache: KVCache, kv_len: int) -> Tensor:
        """embeds (B, T, C) at cache positions input_pos (B, T) long -> final-normed hidden states (B, T, C).
        Attention reads cache positions below kv_len, masked per row to the row's own past."""
        at = CachePositions.of(input_pos, kv_len, embeds.dtype)
        cos, sin = rope_tables(self.cfg, input_pos.float(), embeds.dtype)  # (B, T, D)
        cos, sin = cos[:, :, None], sin[:, :, None]  # (B, T, 1, D): the same angles for every head
        x = embeds
        for index, layer in enumerate(self.layers):
            x = layer(x, cos, sin, cache, index, at)
        return self.norm(x)


class PositionTable(nn.Module):
    """Learned absolute positions (`*_pos_emb.emb`)."""

    def __init__(self, length: int, dim: int) -> None:
        super().__init__()
        self.emb = nn.Embedding(length, dim)

    def forward(self, start: int, length: int) -> Tensor:
        return self.emb.weight[start : start + length]  # (length, C)


class PerceiverAttention(nn.Module):
    """One pre-norm attention block; the same LayerNorm normalises the query and key/value sides."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, dim)
        self.to_k = nn.Linear(dim, dim)
        self.to_v = nn.Linear(dim, dim)
        self.proj_out = nn.Linear(dim, dim)

    def forward(self, queries: Tensor, context: Tensor) -> Tensor:
        B, Tq, C = queries.shape
        q_in, kv_in = self.norm(queries), self.norm(context)

        def split(t: Tensor) -> Tensor:
            return t.view(B, -1, self.heads, C // self.heads).transpose(1, 2)  # (B, h, T, C/h)

        out = F.scaled_dot_product_attention(
            split(self.to_q(q_in)), split(self.to_k(kv_in)), split(self.to_v(kv_in))
        )
        # Residual onto the un-normalised queries.
        return queries + self.proj_out(out.transpose(1, 2).reshape(B, Tq, C))


class Perceiver(nn.Module):
    """Resamples the speech prompt to a fixed number of learned queries: cross- then self-attention,
    both with the same block weights."""

    def __init__(self, cfg: T3Config) -> None:
        super().__init__()
        self.pre_attention_query = nn.Parameter(torch.zeros(1, cfg.perceiver_queries, cfg.hidden_size))
        self.attn = PerceiverAttention(cfg.hidden_size, cfg.perceiver_heads)

    def forward(self, prompt: Tensor) -> Tensor:
        queries = self.pre_attention_query.expand(prompt.shape[0], -1, -1)
        resampled = self.attn(queries, prompt)  # (B, Q, C)
        return self.attn(resampled, resampled)


class CondEncoder(nn.Module):
    """Speaker, speech-prompt and emotion conditioning -> `cond_len` embedding positions."""

    def __init__(self, cfg: T3Config) -> None:
        super().__init__()
        self.spkr_enc = nn.Linear(cfg.speaker_embed_size, cfg.hidden_size)
        self.emotion_adv_fc = nn.Linear(1, cfg.hidden_size, bias=False)
        self.perceiver = Perceiver(cfg)

    def forward(self, speaker_emb: Tensor, prompt_emb: Tensor, exaggeration: Tensor) -> Tensor:
        speaker = self.spkr_enc(speaker_emb)[:, None]  # (B, 1, C)
        prompt = self.perceiver(prompt_emb)  # (B, Q, C)
        emotion = self.emotion_adv_fc(exaggeration.view(-1, 1, 1))  # (B, 1, C)
        return torch.cat((speaker, prompt, emotion), dim=1)


class T3(nn.Module):
    def __init__(self, cfg: T3Config) -> None:
        super().__init__()
        self.cfg = cfg
        self.tfmr = LlamaBackbone(cfg)
        self.cond_enc = CondEncoder(cfg)
        self.text_emb = nn.Embedding(cfg.text_vocab_size, cfg.hidden_size)
        self.speech_emb = nn.Embedding(cfg.speech_vocab_size, cfg.hidden_size)
        self.text_pos_emb = PositionTable(cfg.max_text_tokens + 2, cfg.hidden_size)
        self.speech_pos_emb = PositionTable(cfg.max_speech_tokens + 4, cfg.hidden_size)
        # Training-only text head, kept so the official file loads strictly.
        self.text_head = nn.Linear(cfg.hidden_size, cfg.text_vocab_size, bias=False)
        self.speech_head = nn.Linear(cfg.hidden_size, cfg.speech_vocab_size, bias=False)
        self.head = Projection(self.speech_head)

    def embed_conditioning(self, speaker_emb: Tensor, prompt_tokens: Tensor, exaggeration: Tensor) -> Tensor:
        """speaker_emb (B, S), prompt_tokens (B, P) long, exaggeration (B,) -> (B, cond_len, C)."""
        prompt_emb = self.speech_emb(prompt_tokens) + self.speech_pos_emb(0, prompt_tokens.shape[1])
        return self.cond_enc(speaker_emb, prompt_emb, exaggeration)

    def embed_text(self, text_tokens: Tensor, unconditional_row: bool) -> Tensor:
        """text_tokens (1, L) incl. start/stop -> (B, L, C); with CFG a second row has its token
        embeddings zeroed but keeps the text positions (as upstream)."""
        emb = self.text_emb(text_tokens)  # (1, L, C)
        if unconditional_row:
            emb = torch.cat((emb, torch.zeros_like(emb)))
        return emb + self.text_pos_emb(0, text_tokens.shape[1])

    def embed_speech(self, tokens: Tensor, start: int) -> Tensor:
        """tokens (B, T) long at speech positions start..start+T -> (B, T, C)."""
        return self.speech_emb(tokens) + self.speech_pos_emb(start, tokens.shape[1])

    def embed_speech_rows(self, tokens: Tensor, speech_positions: Tensor) -> Tensor:
        """One token per row, tokens (B, 1) long, each at its own speech position (B,) -> (B, 1, C)."""
        return self.speech_emb(tokens) + self.speech_pos_emb.emb(speech_positions)[:, None]

    def prefill_embeds(self, cond: Tensor, text_tokens: Tensor, cfg_rows: bool) -> Tensor:
        """[cond][text][BOS][BOS]: upstream appends the speech BOS twice, both at speech position 0."""
        text = self.embed_text(text_tokens, unconditional_row=cfg_rows)  # (B, L, C)
        batch = text.shape[0]
        bos = torch.full((1, 1), self.cfg.start_speech_token, device=text.device, dtype=torch.long)
        bos_emb = self.embed_speech(bos, 0).expand(batch, -1, -1)
        return torch.cat((cond.expand(batch, -1, -1), text, bos_emb, bos_emb), dim=1)

    def forward(
        self, embeds: Tensor, input_pos: Tensor, cache: KVCache, kv_len: int, logits_at: Tensor | None = None
    ) -> Tensor:
        """The one forward: embeds (B, T, C) at cache positions input_pos (B, T) -> speech logits (B, T, V),
        or (B, V) at index logits_at[b] (B,) long of each row (a prefill needs only its last real position).

        A prefill, a right-padded prefill of rows of different lengths and a batched decode step (T = 1,
        every row at its own position) are all this call; the decode step runs eagerly on CPU and is
        replayed from CUDA graphs on GPU (`cuda_graphs.py`)."""
        hidden = self.tfmr(embeds, input_pos, cache, kv_len)
        if logits_at is not None:
            hidden = hidden[torch.arange(hidden.shape[0], device=hidden.device), logits_at]  # (B, C)
        return self.head(hidden)

    def sample(
        self,
        logits: Tensor,
        history: Tensor,
        sampled: int,
        params: SamplingParams,
        generator: torch.Generator,
    ) -> Tensor:
        """One request's next token (1, 1) from its logits (CFG pair or one row, V); history (1, N) holds
        the speech BOS then the `sampled` tokens so far, all of which upstream penalises."""
        return sample_next(logits, history[:, : sampled + 1], params, generator)

    @property
    def max_positions(self) -> int:
        """Cache positions one request may reach: RoPE has no limit, the learned tables bound text and speech."""
        cfg = self.cfg
        return cfg.cond_len + cfg.max_text_tokens + 2 + cfg.max_speech_tokens

    def new_cache(self, rows: int, max_len: int) -> KVCache:
        weight, cfg = self.speech_head.weight, self.cfg
        return KVCache(
            cfg.num_layers, cfg.num_heads, cfg.head_dim, rows, max_len, weight.device, weight.dtype
        )
