"""S3Gen configuration: one dataclass per stage, aggregated by `S3GenConfig`.

`S3GenConfig.full()` has the official shapes (checkpoint-keys/s3gen.tsv); `S3GenConfig.tiny()` keeps every
interface dimension (80 mel bins, 192-d x-vector, 6561 speech codes, 24 kHz / 480-sample frames) but shrinks
widths and depths so tests run in well under a second.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

SPEECH_VOCAB_SIZE = 6561  # 3**8 FSQ codes
MEL_BINS = 80
XVECTOR_DIM = 192
S3GEN_SR = 24_000
S3_SR = 16_000
TOKEN_MEL_RATIO = 2  # 25 Hz tokens -> 50 Hz mel frames
HOP_24K = 480  # samples per mel frame at 24 kHz


@dataclass
class TokenizerConfig:
    n_mels: int = 128
    n_state: int = 1280
    n_head: int = 20  # head dim must stay 64: the rotary table of s3tokenizer is built for 64
    n_layer: int = 6


@dataclass
class CAMPPlusConfig:
    feat_dim: int = 80
    embedding_size: int = XVECTOR_DIM
    head_channels: int = 32
    growth_rate: int = 32
    bn_size: int = 4
    init_channels: int = 128
    block_layers: tuple[int, ...] = (12, 24, 16)
    block_dilations: tuple[int, ...] = (1, 2, 2)


@dataclass
class ConformerConfig:
    size: int = 512
    heads: int = 8
    linear_units: int = 2048
    num_blocks: int = 6
    num_up_blocks: int = 4
    pre_lookahead_len: int = 3
    upsample_stride: int = TOKEN_MEL_RATIO


@dataclass
class EstimatorConfig:
    """The CFM estimator U-Net (`ConditionalDecoder`): one down, `num_mid_blocks` mid and one up level."""

    channels: int = 256
    attention_heads: int = 8
    attention_head_dim: int = 64
    n_blocks: int = 4  # transformer blocks per level
    num_mid_blocks: int = 12
    meanflow: bool = False  # Turbo's s3gen_meanflow adds `time_embed_mixer`

    @property
    def in_channels(self) -> int:
        return 4 * MEL_BINS  # x, mu, speaker, cond

    @property
    def time_embed_dim(self) -> int:
        return 4 * self.channels


@dataclass
class CFMConfig:
    n_timesteps: int = 10
    inference_cfg_rate: float = 0.7


@dataclass
class HiFTConfig:
    base_channels: int = 512
    nb_harmonics: int = 8
    nsf_alpha: float = 0.1
    nsf_sigma: float = 0.003
    nsf_voiced_threshold: float = 10.0
    upsample_rates: tuple[int, ...] = (8, 5, 3)
    upsample_kernel_sizes: tuple[int, ...] = (16, 11, 7)
    istft_n_fft: int = 16
    istft_hop: int = 4
    resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11)
    resblock_dilations: tuple[int, ...] = (1, 3, 5)
    source_resblock_kernel_sizes: tuple[int, ...] = (7, 7, 11)
    lrelu_slope: float = 0.1
    audio_limit: float = 0.99
    f0_channels: int = 512

    def __post_init__(self) -> None:
        hop = self.istft_hop
        for rate in self.upsample_rates:
            hop *= rate
        if hop != HOP_24K:
            raise ValueError(f"HiFT upsampling gives {hop} samples per frame, expected {HOP_24K}")


_SECTIONS = {
    "tokenizer": TokenizerConfig,
    "speaker_encoder": CAMPPlusConfig,
    "encoder": ConformerConfig,
    "estimator": EstimatorConfig,
    "cfm": CFMConfig,
    "hift": HiFTConfig,
}


@dataclass
class S3GenConfig:
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    speaker_encoder: CAMPPlusConfig = field(default_factory=CAMPPlusConfig)
    encoder: ConformerConfig = field(default_factory=ConformerConfig)
    estimator: EstimatorConfig = field(default_factory=EstimatorConfig)
    cfm: CFMConfig = field(default_factory=CFMConfig)
    hift: HiFTConfig = field(default_factory=HiFTConfig)

    @classmethod
    def full(cls) -> S3GenConfig:
        return cls()

    @classmethod
    def full_meanflow(cls) -> S3GenConfig:
        """Shapes of Turbo's `s3gen_meanflow.safetensors` (2 Euler steps, no CFG)."""
        return cls(estimator=EstimatorConfig(meanflow=True), cfm=CFMConfig(n_timesteps=2))

    @classmethod
    def tiny(cls) -> S3GenConfig:
        return cls(
            tokenizer=TokenizerConfig(n_state=128, n_head=2, n_layer=1),
            speaker_encoder=CAMPPlusConfig(
                head_channels=4, growth_rate=8, bn_size=2, init_channels=16, block_layers=(1, 1, 1)
            ),
            encoder=ConformerConfig(size=64, heads=2, linear_units=128, num_blocks=1, num_up_blocks=1),
            estimator=EstimatorConfig(
                channels=32, attention_heads=2, attention_head_dim=16, n_blocks=1, num_mid_blocks=1
            ),
            hift=HiFTConfig(base_channels=32, f0_channels=16),
        )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> S3GenConfig:
        unknown = set(data) - set(_SECTIONS)
        if unknown:
            raise ValueError(f"unknown S3Gen config sections: {sorted(unknown)}")
        sections = {}
        for name, section_cls in _SECTIONS.items():
            values = dict(data.get(name, {}))
            known = {f.name: f for f in fields(section_cls)}
            bad = set(values) - set(known)
            if bad:
                raise ValueError(f"unknown S3Gen config fields in {name!r}: {sorted(bad)}")
            # JSON turns tuples into lists; the dataclasses use tuples so configs compare equal.
            values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
            sections[name] = section_cls(**values)
        return cls(**sections)
