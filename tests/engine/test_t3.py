"""T3: the static-KV-cache decode path agrees with a full recomputation, and RoPE follows llama3."""

import copy
import math

import torch
from chatterbox_engine import runtime
from chatterbox_engine.loading import randomize_t3_
from chatterbox_engine.t3 import T3, T3Config, apply_rope_, llama3_inv_freq, rope_tables
from chatterbox_engine.voice_encoder import VoiceEncoder, VoiceEncoderConfig


def _tiny_t3() -> T3:
    t3 = T3(T3Config.tiny()).eval()
    with torch.no_grad():
        randomize_t3_(t3, torch.Generator().manual_seed(0))
    return t3


@torch.inference_mode()
def test_cached_decode_matches_full_sequence_forward():
    t3 = _tiny_t3()
    cfg = t3.cfg
    g = torch.Generator().manual_seed(1)
    cond = t3.embed_conditioning(
        torch.randn(1, cfg.speaker_embed_size, generator=g),
        torch.randint(0, 6561, (1, 20), generator=g),
        torch.tensor([0.7]),
    )
    text = torch.tensor([[255, 10, 2, 11, 0]])
    prefill = t3.prefill_embeds(cond, text, cfg_rows=True)  # (2, P, C)
    steps = torch.randint(0, 6561, (1, 6), generator=g)
    step_embeds = [t3.embed_speech(steps[:, i : i + 1], i + 1).expand(2, -1, -1) for i in range(6)]

    length = prefill.shape[1]
    cache = t3.new_cache(2, length + 6)
    incremental = [t3(prefill, torch.arange(length).expand(2, -1), cache, length)[:, -1]]
    for i, emb in enumerate(step_embeds[:-1]):
        incremental.append(t3(emb, torch.full((2, 1), length + i), cache, length + i + 1)[:, -1])

    everything = torch.cat([prefill, *step_embeds[:-1]], dim=1)
    full_len = everything.shape[1]
    full = t3(everything, torch.arange(full_len).expand(2, -1), t3.new_cache(2, full_len), full_len)
    expected = full[:, prefill.shape[1] - 1 :]
    assert torch.allclose(torch.stack(incremental, dim=1), expected, atol=1e-5)
    # The unconditional row differs only through its zeroed text embeddings.
    assert not torch.allclose(expected[0], expected[1])


def test_llama3_rope_rescales_only_low_frequencies():
    cfg = T3Config.full()
    plain = 1.0 / (cfg.rope_theta ** (torch.arange(0, 64, 2).float() / 64))
    scaled = llama3_inv_freq(cfg)
    assert torch.allclose(scaled[:4], plain[:4])  # short wavelengths untouched
    assert torch.allclose(scaled[-1], plain[-1] / cfg.rope_factor)  # long ones divided by the factor
    assert 2 * math.pi / plain[-1] > cfg.rope_original_max_positions


def test_in_place_rope_gives_hf_llamas_bits_in_float32_and_bfloat16():
    cfg = T3Config.full()
    positions = torch.tensor([[0.0, 1.0, 7.0], [300.0, 301.0, 4095.0]])  # (B, T)
    angles = torch.cat([positions[..., None] * llama3_inv_freq(cfg)] * 2, dim=-1)[:, :, None]  # (B, T, 1, D)
    for dtype in (torch.float32, torch.bfloat16):
        x = torch.randn(2, 3, 5, cfg.head_dim, generator=torch.Generator().manual_seed(0)).to(dtype)
        cos, sin = angles.cos().to(dtype), angles.sin().to(dtype)
        half = cfg.head_dim // 2
        hf = x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin  # HF's rotate_half form
        ours_cos, signed_sin = rope_tables(cfg, positions, dtype)
        apply_rope_(x, ours_cos[:, :, None], signed_sin[:, :, None])
        assert torch.equal(x, hf), dtype


def test_state_dict_keys_mirror_the_official_checkpoint(checkpoint_table):
    with torch.device("meta"):
        t3 = T3(T3Config.full())
    ours = {k: tuple(v.shape) for k, v in t3.state_dict().items()}
    assert ours == checkpoint_table("t3_en")


def test_voice_encoder_keys_mirror_the_official_checkpoint(checkpoint_table):
    ve = VoiceEncoder(VoiceEncoderConfig.full())
    assert {k: tuple(v.shape) for k, v in ve.state_dict().items()} == checkpoint_table("ve")


@torch.inference_mode()  # as the engine runs them; the weights are made outside it
def _separate_products(t3: T3, x: torch.Tensor) -> list[torch.Tensor]:
    """Each projection layer's own product, as nn.Linear computes it."""
    layer = t3.tfmr.layers[0]
    attn, mlp = layer.self_attn, layer.mlp
    return [
        torch.cat([attn.q_proj(x), attn.k_proj(x), attn.v_proj(x)], dim=-1),
        torch.cat([mlp.gate_proj(x), mlp.up_proj(x)], dim=-1),
        t3.speech_head(x),
    ]


@torch.inference_mode()
def _grouped_products(t3: T3, x: torch.Tensor) -> list[torch.Tensor]:
    layer = t3.tfmr.layers[0]
    return [layer.self_attn.qkv(x), layer.mlp.gate_up(x), t3.head(x)]


def test_grouped_projections_equal_the_layers_own_products_and_share_their_memory():
    # float32 goes to MKL, bfloat16 to oneDNN prepacked (where this CPU's oneDNN has it): same numbers.
    for dtype in (torch.float32, torch.bfloat16):
        t3 = _tiny_t3().to(dtype)
        x = torch.randn(2, 3, t3.cfg.hidden_size, generator=torch.Generator().manual_seed(2)).to(dtype)
        for grouped, separate in zip(_grouped_products(t3, x), _separate_products(t3, x), strict=True):
            assert torch.equal(grouped, separate), dtype
        attn = t3.tfmr.layers[0].self_attn
        storage = attn.q_proj.weight.untyped_storage().data_ptr()
        assert attn.k_proj.weight.untyped_storage().data_ptr() == storage  # one matrix, not a copy
        assert set(t3.state_dict()) == set(_tiny_t3().state_dict())  # checkpoint keys unchanged


def test_grouped_projections_follow_new_weights_dtype_and_copies():
    t3 = _tiny_t3()
    x = torch.randn(2, 1, t3.cfg.hidden_size, generator=torch.Generator().manual_seed(3))
    _grouped_products(t3, x)  # lays the weights out (and packs them where it does)
    with torch.no_grad():
        t3.tfmr.layers[0].self_attn.k_proj.weight.mul_(2.0)  # an in-place write
        t3.tfmr.layers[0].mlp.up_proj.weight.add_(1.0)
    t3.load_state_dict(
        _tiny_t3().state_dict() | {"speech_head.weight": torch.ones_like(t3.speech_head.weight)}
    )
    for grouped, separate in zip(_grouped_products(t3, x), _separate_products(t3, x), strict=True):
        assert torch.equal(grouped, separate)
    xb = x.to(torch.bfloat16)
    for model in (t3.to(torch.bfloat16), copy.deepcopy(t3)):  # the copy is of a packed model
        _grouped_products(model, xb)
        with torch.no_grad():
            model.speech_head.weight.mul_(2.0)
            model.tfmr.layers[0].self_attn.v_proj.weight.mul_(2.0)
        for grouped, separate in zip(
            _grouped_products(model, xb), _separate_products(model, xb), strict=True
        ):
            assert torch.equal(grouped, separate)


def test_grouped_projections_fall_back_to_plain_products_without_onednn(monkeypatch):
    monkeypatch.setattr(runtime, "_ONEDNN_PREPACKED_LINEAR", False)
    t3 = _tiny_t3().to(torch.bfloat16)
    x = torch.randn(2, 1, t3.cfg.hidden_size).to(torch.bfloat16)
    for grouped, separate in zip(_grouped_products(t3, x), _separate_products(t3, x), strict=True):
        assert torch.equal(grouped, separate)
