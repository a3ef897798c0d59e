"""S3Gen behaviour on tiny random weights: checkpoint layout, loading, shapes, determinism, input errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from chatterbox_engine.s3gen import S3Gen, S3GenConfig, S3GenReference

# Copies of the official key tables (key, shape, dtype per line), built from upstream modules.
KEY_TABLES = Path(__file__).parent / "checkpoint_keys"


def read_key_table(name: str) -> dict[str, tuple[tuple[int, ...], str]]:
    table = {}
    for line in (KEY_TABLES / name).read_text().splitlines():
        key, shape, dtype = line.split("\t")
        table[key] = (tuple(json.loads(shape.replace("(", "[").replace(",)", "]").replace(")", "]"))), dtype)
    return table


def state_dict_table(model: torch.nn.Module) -> dict[str, tuple[tuple[int, ...], str]]:
    return {k: (tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def tiny() -> S3Gen:
    torch.manual_seed(0)
    return S3Gen(S3GenConfig.tiny())


@pytest.fixture(scope="module")
def reference_audio() -> torch.Tensor:
    """2.5 s of a voiced-ish test signal at 24 kHz (a harmonic tone plus a little noise)."""
    t = torch.arange(int(2.5 * 24_000)) / 24_000
    g = torch.Generator().manual_seed(3)
    tone = sum(0.2 / k * torch.sin(2 * math.pi * 180 * k * t) for k in range(1, 5))
    return (tone + 0.02 * torch.randn(t.shape, generator=g))[None].float()


@pytest.fixture(scope="module")
def ref(tiny: S3Gen, reference_audio: torch.Tensor) -> S3GenReference:
    return tiny.embed_ref(reference_audio)


def tokens(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 6561, (1, n), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(
    ("config", "table"), [(S3GenConfig.full, "s3gen.tsv"), (S3GenConfig.full_meanflow, "s3gen_mf.tsv")]
)
def test_full_size_state_dict_matches_the_official_key_table(config, table) -> None:
    with torch.device("meta"):
        model = S3Gen(config())
    assert state_dict_table(model) == read_key_table(table)


def test_config_round_trips_through_json() -> None:
    for cfg in (S3GenConfig.full(), S3GenConfig.tiny(), S3GenConfig.full_meanflow()):
        assert S3GenConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="unknown S3Gen config fields"):
        S3GenConfig.from_dict({"hift": {"base_chanels": 3}})


def test_embed_ref_gives_aligned_prompt(ref: S3GenReference) -> None:
    n_prompt = ref.prompt_token.size(1)
    assert n_prompt == 62  # 2.5 s at 25 Hz, the odd 20 ms frame dropped
    assert ref.prompt_token.dtype == torch.long and int(ref.prompt_token_len) == n_prompt
    assert int(ref.prompt_token.min()) >= 0 and int(ref.prompt_token.max()) < 6561
    assert ref.prompt_feat.shape == (1, 2 * n_prompt, 80)
    assert ref.embedding.shape == (1, 192) and torch.isfinite(ref.embedding).all()


def test_reference_round_trips_through_tensors(ref: S3GenReference) -> None:
    again = S3GenReference.from_tensors(ref.to_tensors())
    for key, value in ref.to_tensors().items():
        assert torch.equal(value, again.to_tensors()[key])
    with pytest.raises(ValueError, match="prompt_feat"):
        S3GenReference.from_tensors({**ref.to_tensors(), "prompt_feat": ref.prompt_feat[:, :10]})
    with pytest.raises(ValueError, match="missing"):
        S3GenReference.from_tensors({"prompt_token": ref.prompt_token})
    with pytest.raises(ValueError, match="prompt_token values"):
        S3GenReference.from_tensors({**ref.to_tensors(), "prompt_token": ref.prompt_token + 6561})
    with pytest.raises(ValueError, match="finite"):
        S3GenReference.from_tensors({**ref.to_tensors(), "embedding": ref.embedding * float("nan")})


def test_inference_makes_960_samples_per_token_with_trim_fade(tiny: S3Gen, ref: S3GenReference) -> None:
    wav = tiny.inference(tokens(20), ref, torch.Generator().manual_seed(0))
    assert wav.shape == (1, 20 * 960)
    assert torch.isfinite(wav).all() and wav.abs().max() <= 0.99
    assert torch.count_nonzero(wav[:, :480]) == 0  # first 20 ms silenced
    assert wav[:, 960:].abs().max() > 0


def test_same_seed_same_audio_and_no_global_rng(tiny: S3Gen, ref: S3GenReference) -> None:
    torch.manual_seed(1)
    a = tiny.inference(tokens(12), ref, torch.Generator().manual_seed(7))
    torch.manual_seed(2)  # the global RNG must not matter
    b = tiny.inference(tokens(12), ref, torch.Generator().manual_seed(7))
    c = tiny.inference(tokens(12), ref, torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_injected_noise_replaces_the_generator(tiny: S3Gen, ref: S3GenReference) -> None:
    n_frames = ref.prompt_feat.size(1) + 2 * 10
    noise = torch.randn(1, 80, n_frames, generator=torch.Generator().manual_seed(0))
    a = tiny.flow_inference(tokens(10), ref, torch.Generator().manual_seed(1), noise=noise)
    b = tiny.flow_inference(tokens(10), ref, torch.Generator().manual_seed(2), noise=noise)
    assert a.shape == (1, 80, 20) and torch.equal(a, b)
    with pytest.raises(ValueError, match="noise must be shaped"):
        tiny.flow_inference(tokens(10), ref, None, noise=noise[..., :-1])


def test_unfinalized_flow_holds_back_the_lookahead_frames(tiny: S3Gen, ref: S3GenReference) -> None:
    mel = tiny.flow_inference(tokens(10), ref, torch.Generator().manual_seed(0), finalize=False)
    assert mel.shape == (1, 80, 20 - 6)


def test_hift_source_override_is_used_as_prefix(tiny: S3Gen) -> None:
    mel = torch.randn(1, 80, 8, generator=torch.Generator().manual_seed(0)) - 5
    wav, source = tiny.hift_inference(mel, torch.Generator().manual_seed(0))
    assert wav.shape == (1, 8 * 480) and source.shape == (1, 1, 8 * 480)
    cached = torch.zeros(1, 1, 960)
    _, source2 = tiny.hift_inference(mel, torch.Generator().manual_seed(0), source=cached)
    assert torch.equal(source2[..., :960], cached) and torch.equal(source2[..., 960:], source[..., 960:])


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (torch.tensor([[0, 6561]]), r"\[0, 6561\)"),
        (torch.tensor([[-1, 3]]), r"\[0, 6561\)"),
        (torch.zeros(1, 0, dtype=torch.long), "empty"),
        (torch.zeros(2, 4, dtype=torch.long), "one utterance"),
    ],
)
def test_bad_tokens_are_rejected(tiny: S3Gen, ref: S3GenReference, bad: torch.Tensor, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        tiny.inference(bad, ref, torch.Generator())


def test_bad_reference_shapes_are_rejected(tiny: S3Gen) -> None:
    with pytest.raises(ValueError, match=r"\(1, T\)"):
        tiny.embed_ref(torch.zeros(2, 24_000))
    with pytest.raises(ValueError, match="too short"):
        tiny.embed_ref(torch.zeros(1, 500))
    with pytest.raises(ValueError, match="NaN"):
        tiny.embed_ref(torch.full((1, 24_000), float("nan")))
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        tiny.tokenize(torch.zeros(16_000))


def test_tokenize_respects_max_len(tiny: S3Gen, reference_audio: torch.Tensor) -> None:
    wav16k = reference_audio[:, ::3].repeat_interleave(2, dim=1)  # any 16 kHz signal will do here
    codes, lens = tiny.tokenize(wav16k, max_len=10)
    assert codes.shape == (1, 10) and lens.tolist() == [10]


def _legacy_spelling(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    renamed = {}
    for key, value in state_dict.items():
        key = key.replace("parametrizations.weight.original0", "weight_g")
        renamed[key.replace("parametrizations.weight.original1", "weight_v")] = value
    return renamed


def test_checkpoint_spellings_and_missing_front_end_buffers_load_strictly(tiny: S3Gen, ref, tmp_path) -> None:
    state = tiny.state_dict()
    assert "mel2wav.conv_pre.parametrizations.weight.original0" in state
    # A weight-normed conv with g != |v| must fold to g · v / |v|.
    state["mel2wav.conv_pre.parametrizations.weight.original0"] = (
        state["mel2wav.conv_pre.parametrizations.weight.original0"] * 2
    )
    for variant in (state, _legacy_spelling(state)):
        variant = {
            k: v for k, v in variant.items() if k not in ("tokenizer._mel_filters", "tokenizer.window")
        }
        model = S3Gen(S3GenConfig.tiny())
        model.load_state_dict(variant, strict=True)
        assert torch.allclose(model.mel2wav.conv_pre.weight, 2 * tiny.mel2wav.conv_pre.weight, atol=1e-6)
        assert torch.equal(model.tokenizer._mel_filters, tiny.tokenizer._mel_filters)
    with pytest.raises(RuntimeError, match="flow.encoder_proj.bias"):
        S3Gen(S3GenConfig.tiny()).load_state_dict(
            {k: v for k, v in state.items() if k != "flow.encoder_proj.bias"}, strict=True
        )


def test_saved_state_reloads_to_the_same_audio(tiny: S3Gen, ref: S3GenReference) -> None:
    model = S3Gen(S3GenConfig.tiny())
    model.load_state_dict(tiny.state_dict(), strict=True)
    a = tiny.inference(tokens(8), ref, torch.Generator().manual_seed(0))
    b = model.inference(tokens(8), ref, torch.Generator().manual_seed(0))
    assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_casts_synthesis_only(tiny: S3Gen, reference_audio, ref, dtype) -> None:
    model = S3Gen(S3GenConfig.tiny())
    model.load_state_dict(tiny.state_dict(), strict=True)
    model = model.to(dtype)
    assert model.dtype == dtype and model.tokenizer.encoder.conv1.weight.dtype == torch.float32
    half_ref = model.embed_ref(reference_audio)  # the reference front end is unaffected by the cast
    assert torch.equal(half_ref.prompt_token, ref.prompt_token) and torch.equal(
        half_ref.embedding, ref.embedding
    )
    expected = tiny.inference(tokens(10), ref, torch.Generator().manual_seed(0))
    wav = model.inference(tokens(10), ref, torch.Generator().manual_seed(0))
    assert wav.dtype == torch.float32 and torch.isfinite(wav).all()
    assert (wav - expected).abs().max() < 0.05 * expected.abs().max()


def test_meta_construction_loads_with_assign(tiny: S3Gen, reference_audio, ref) -> None:
    """Built on the meta device (no random init) and loaded with assign=True, nothing is left unmaterialised."""
    with torch.device("meta"):
        model = S3Gen(S3GenConfig.tiny())
    model.load_state_dict(tiny.state_dict(), strict=True, assign=True)
    assert not any(t.is_meta for t in (*model.parameters(), *model.buffers()))
    assert torch.equal(model.embed_ref(reference_audio).prompt_token, ref.prompt_token)
    a = tiny.inference(tokens(6), ref, torch.Generator().manual_seed(0))
    b = model.inference(tokens(6), ref, torch.Generator().manual_seed(0))
    assert torch.allclose(a, b, atol=1e-5)


def test_audio_over_30_s_is_tokenized_in_overlapping_windows_like_s3tokenizer(tiny: S3Gen) -> None:
    from chatterbox_engine.s3gen.frontends import s3_log_mel
    from s3tokenizer.model_v2 import ModelConfig, S3TokenizerV2

    cfg = tiny.cfg.tokenizer
    reference = S3TokenizerV2(
        "speech_tokenizer_v2_25hz",
        ModelConfig(
            n_mels=cfg.n_mels, n_audio_state=cfg.n_state, n_audio_head=cfg.n_head, n_audio_layer=cfg.n_layer
        ),
    ).eval()
    state = {k: v for k, v in tiny.tokenizer.state_dict().items() if k not in ("_mel_filters", "window")}
    reference.load_state_dict(state, strict=True)
    t = torch.arange(57 * 16_000) / 16_000  # 57 s: three windows, the last one short
    wav = (0.3 * torch.sin(2 * math.pi * 140 * t * (1 + 0.1 * torch.sin(t))))[None]
    mel = s3_log_mel(wav, tiny.tokenizer._mel_filters, tiny.tokenizer.window)
    expected, expected_lens = reference.quantize(mel, torch.tensor([mel.size(-1)]))
    codes, lens = tiny.tokenize(wav)
    assert torch.equal(codes, expected) and torch.equal(lens, expected_lens)
    assert codes.size(1) == 57 * 25


def test_batched_tokenize_matches_one_by_one(tiny: S3Gen, reference_audio) -> None:
    wavs = torch.cat([reference_audio[:, :32_000], 0.1 * reference_audio[:, 8_000:40_000]])
    codes, lens = tiny.tokenize(wavs)
    for row, wav in enumerate(wavs):
        single, single_len = tiny.tokenize(wav[None])
        assert torch.equal(codes[row : row + 1], single) and lens[row] == single_len[0]


def test_concurrent_calls_from_threads_are_independent(tiny: S3Gen, ref: S3GenReference) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def synthesise(seed: int) -> torch.Tensor:
        return tiny.inference(tokens(8, seed), ref, torch.Generator().manual_seed(seed))

    expected = [synthesise(seed) for seed in range(4)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(synthesise, range(4)))
    for got, want in zip(results, expected, strict=True):
        assert torch.equal(got, want)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(
    "conv",
    [
        torch.nn.Conv1d(16, 24, 7, dilation=3, padding=9),
        torch.nn.Conv1d(18, 16, 6, stride=3, padding=1),
        torch.nn.Conv1d(16, 8, 1, bias=False),
        torch.nn.ConvTranspose1d(32, 16, 11, stride=5, padding=3),
    ],
    ids=["dilated", "strided", "pointwise", "transposed"],
)
def test_channels_last_convolution_equals_the_module(conv: torch.nn.Module, dtype: torch.dtype) -> None:
    """The (B, C, 1, L) channels-last path S3Gen convolves on computes what the Conv1d module computes."""
    from chatterbox_engine.s3gen.nwc import conv_nwc, from_nwc, to_nwc

    conv = conv.to(dtype)
    x = torch.randn(2, conv.in_channels, 50, generator=torch.Generator().manual_seed(0)).to(dtype)
    with torch.inference_mode():
        expected = conv(x).float()
        got = from_nwc(conv_nwc(conv, to_nwc(x))).float()
    tolerance = 1e-5 if dtype == torch.float32 else 2e-2
    assert got.shape == expected.shape
    assert (got - expected).abs().max() <= tolerance * expected.abs().max()


@pytest.mark.parametrize("meanflow", [False, True])
def test_estimator_ignores_padded_frames(meanflow: bool) -> None:
    """A row padded at the end gives, on its real frames, what it gives alone: causal convs look back only,
    attention masks the padded keys."""
    from chatterbox_engine.s3gen.config import EstimatorConfig
    from chatterbox_engine.s3gen.estimator import ConditionalDecoder

    torch.manual_seed(0)
    small = EstimatorConfig(
        channels=32, attention_heads=2, attention_head_dim=16, n_blocks=1, num_mid_blocks=1
    )
    estimator = ConditionalDecoder(EstimatorConfig(**{**small.__dict__, "meanflow": meanflow})).eval()
    g = torch.Generator().manual_seed(1)
    frames, real = 40, 31
    x, mu, cond = (torch.randn(2, 80, frames, generator=g) for _ in range(3))
    spks, t = torch.randn(2, 80, generator=g), torch.tensor([0.2, 0.7])
    r = torch.tensor([0.5, 0.9]) if meanflow else None
    mask = torch.ones(2, 1, frames)
    mask[1, :, real:] = 0
    with torch.inference_mode():
        padded = estimator(x, mask, mu, t, spks, cond, r=r)
        alone = estimator(
            x[1:, :, :real], mask[1:, :, :real], mu[1:, :, :real], t[1:], spks[1:], cond[1:, :, :real],
            r=None if r is None else r[1:],
        )  # fmt: skip
    assert torch.allclose(padded[1:, :, :real], alone, atol=1e-5)
    assert (padded[1:, :, real:] == 0).all()
