"""S3Gen parity with upstream chatterbox-tts 0.1.7 on full-size random weights (fp32, CPU).

Upstream's S3Gen is built from a seed, its BatchNorm statistics, weight-norm gains and Snake alphas are
randomised (so those paths are really exercised), and its state dict is written as `s3gen.safetensors` in the
official layout; ours loads that file strictly. Inputs are short to keep the run cheap.
"""

from __future__ import annotations

import math

import pytest
import torch
from chatterbox_engine.s3gen import S3Gen, S3GenConfig, S3GenReference
from chatterbox_engine.s3gen.config import EstimatorConfig
from chatterbox_engine.s3gen.estimator import ConditionalDecoder
from chatterbox_engine.s3gen.frontends import resample
from safetensors.torch import load_file, save_file

pytestmark = pytest.mark.parity

TOLERANCE = 1e-4
UPSTREAM_REF_KEYS = ("prompt_token", "prompt_token_len", "prompt_feat", "embedding")


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a.float() - b.float()).abs().max().item()


def _randomise_inference_statistics(model: torch.nn.Module, generator: torch.Generator) -> None:
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm1d | torch.nn.BatchNorm2d):
                module.running_mean.normal_(0.0, 0.1, generator=generator)
                module.running_var.uniform_(0.5, 1.5, generator=generator)
                if module.affine:
                    module.weight.uniform_(0.5, 1.5, generator=generator)
                    module.bias.normal_(0.0, 0.1, generator=generator)
        for name, param in model.named_parameters():
            if name.endswith("parametrizations.weight.original0"):  # g != |v|: the fold must use g
                param.mul_(torch.empty_like(param).uniform_(0.5, 1.5, generator=generator))
            elif name.endswith(".alpha"):
                param.uniform_(0.5, 2.0, generator=generator)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> tuple[torch.nn.Module, S3Gen]:
    from chatterbox.models.s3gen import S3Gen as UpstreamS3Gen

    torch.manual_seed(0)
    upstream = UpstreamS3Gen().eval()
    _randomise_inference_statistics(upstream, torch.Generator().manual_seed(1))
    path = tmp_path_factory.mktemp("s3gen") / "s3gen.safetensors"
    save_file({k: v.contiguous() for k, v in upstream.state_dict().items()}, str(path))
    ours = S3Gen(S3GenConfig.full())
    ours.load_state_dict(load_file(str(path)), strict=True)
    return upstream, ours


@pytest.fixture(scope="module")
def reference_24k() -> torch.Tensor:
    """2.02 s (not a whole number of 40 ms, like most real clips) of a voiced tone with noise, 24 kHz."""
    t = torch.arange(int(2.02 * 24_000)) / 24_000
    tone = sum(0.25 / k * torch.sin(2 * math.pi * 150 * k * t + k) for k in range(1, 6))
    noise = 0.03 * torch.randn(t.shape, generator=torch.Generator().manual_seed(2))
    return (tone * (1 + 0.5 * torch.sin(2 * math.pi * 3 * t)) + noise)[None].float()


@pytest.fixture(scope="module")
def reference_16k(reference_24k: torch.Tensor) -> torch.Tensor:
    return resample(reference_24k, 24_000, 16_000)


@pytest.fixture(scope="module")
def upstream_ref(models, reference_24k) -> dict:
    upstream, _ = models
    with torch.inference_mode():
        return upstream.embed_ref(reference_24k, 24_000)


def test_campplus_embedding(models, reference_16k) -> None:
    upstream, ours = models
    with torch.inference_mode():
        expected = upstream.speaker_encoder.inference(reference_16k)
    assert max_abs_diff(ours.speaker_embedding(reference_16k), expected) <= TOLERANCE


def test_s3_tokenizer_codes_are_identical(models, reference_16k) -> None:
    upstream, ours = models
    for max_len in (None, 30):
        expected, expected_lens = upstream.tokenizer(reference_16k, max_len=max_len)
        codes, lens = ours.tokenize(reference_16k, max_len=max_len)
        assert torch.equal(codes, expected) and torch.equal(lens, expected_lens)


def test_embed_ref(models, reference_24k, upstream_ref) -> None:
    _, ours = models
    ref = ours.embed_ref(reference_24k)
    assert torch.equal(ref.prompt_token, upstream_ref["prompt_token"])
    # Upstream keeps the odd 20 ms prompt frame (its one-frame drift); ours drops it, the rest is identical.
    assert upstream_ref["prompt_feat"].size(1) == ref.prompt_feat.size(1) + 1
    assert (
        max_abs_diff(ref.prompt_feat, upstream_ref["prompt_feat"][:, : ref.prompt_feat.size(1)]) <= TOLERANCE
    )
    assert max_abs_diff(ref.embedding, upstream_ref["embedding"]) <= TOLERANCE


def test_flow_mel_with_injected_noise(models, upstream_ref) -> None:
    upstream, ours = models
    ref = S3GenReference.from_tensors({k: upstream_ref[k] for k in UPSTREAM_REF_KEYS})
    tokens = torch.randint(0, 6561, (1, 25), generator=torch.Generator().manual_seed(4))
    n_timesteps = 4  # the full schedule is 10; 4 steps exercise the same code at less cost
    torch.manual_seed(123)  # upstream draws its start noise with randn_like(mu) from the global RNG
    expected = upstream.flow_inference(
        tokens, ref_dict=dict(upstream_ref), n_cfm_timesteps=n_timesteps, finalize=True
    )
    torch.manual_seed(123)
    noise = torch.randn(1, 80, ref.prompt_feat.size(1) + expected.size(2))
    mel = ours.flow_inference(tokens, ref, None, n_timesteps=n_timesteps, noise=noise)
    assert mel.shape == expected.shape == (1, 80, 2 * 25 - 1)  # upstream's odd prompt frame costs one frame
    assert max_abs_diff(mel, expected) <= TOLERANCE


@pytest.fixture(scope="module")
def mel() -> torch.Tensor:
    """A smooth, speech-like log-mel (1, 80, 40)."""
    frames = torch.arange(40)[:, None]
    bins = torch.arange(80)[None, :]
    envelope = -4.0 + 3.0 * torch.exp(-(((bins - 20 - 10 * torch.sin(frames / 6)) / 12) ** 2))
    return envelope.T[None].float() + 0.1 * torch.randn(1, 80, 40, generator=torch.Generator().manual_seed(5))


def test_hift_waveform_with_fixed_source(models, mel) -> None:
    upstream, ours = models
    source = 0.1 * torch.tanh(torch.randn(1, 1, 40 * 480, generator=torch.Generator().manual_seed(6)))
    with torch.inference_mode():
        expected = upstream.mel2wav.decode(mel, source)
        expected_f0 = upstream.mel2wav.f0_predictor(mel)
    assert max_abs_diff(ours.mel2wav.f0_predictor(mel), expected_f0) <= TOLERANCE
    assert max_abs_diff(ours.mel2wav.decode(mel, source), expected) <= TOLERANCE


def test_hift_source_follows_upstream_draw_order(models, mel) -> None:
    """Seeding our generator like upstream's global RNG reproduces its NSF source and waveform."""
    upstream, ours = models
    torch.manual_seed(7)
    expected_wav, expected_source = upstream.hift_inference(mel)
    wav, source = ours.hift_inference(mel, torch.Generator().manual_seed(7))
    assert max_abs_diff(source, expected_source) <= TOLERANCE
    assert max_abs_diff(wav, expected_wav) <= TOLERANCE


def test_seeded_inference_end_to_end(models, upstream_ref) -> None:
    """tokens -> waveform with trim/fade: our generator, seeded like upstream's global RNG, draws the same CFM
    noise and NSF phases/noise in the same order, so the whole chain matches."""
    upstream, ours = models
    ref = S3GenReference.from_tensors({k: upstream_ref[k] for k in UPSTREAM_REF_KEYS})
    tokens = torch.randint(0, 6561, (1, 12), generator=torch.Generator().manual_seed(8))
    torch.manual_seed(9)
    expected, _ = upstream.inference(tokens, ref_dict=dict(upstream_ref), n_cfm_timesteps=2)
    wav = ours.inference(tokens, ref, torch.Generator().manual_seed(9), n_timesteps=2)
    assert max_abs_diff(wav, expected) <= TOLERANCE


def test_meanflow_estimator() -> None:
    """Turbo's `s3gen_meanflow` estimator (extra `time_embed_mixer`, also fed r) on full-size random weights."""
    from chatterbox.models.s3gen.decoder import ConditionalDecoder as UpstreamDecoder

    torch.manual_seed(0)
    upstream = UpstreamDecoder(
        in_channels=320,
        out_channels=80,
        causal=True,
        channels=[256],
        dropout=0.0,
        attention_head_dim=64,
        n_blocks=4,
        num_mid_blocks=12,
        num_heads=8,
        act_fn="gelu",
        meanflow=True,
    ).eval()
    with torch.no_grad():  # move the mixer off its identity init so the r path counts
        upstream.time_embed_mixer.weight.add_(0.01 * torch.randn_like(upstream.time_embed_mixer.weight))
    ours = ConditionalDecoder(EstimatorConfig(meanflow=True)).eval()
    ours.load_state_dict(upstream.state_dict(), strict=True)
    g = torch.Generator().manual_seed(10)
    x, mu, cond = (torch.randn(1, 80, 30, generator=g) for _ in range(3))
    mask, spks = torch.ones(1, 1, 30), torch.randn(1, 80, generator=g)
    t, r = torch.tensor([0.0]), torch.tensor([0.5])
    with torch.inference_mode():
        expected = upstream(x, mask, mu, t, spks, cond, r=r)
        got = ours(x, mask, mu, t, spks, cond, r=r)
    assert max_abs_diff(got, expected) <= TOLERANCE
