"""The Chatterbox family: per-variant file layout, network shapes, front-end rules and detection.

| variant | T3 | S3Gen | text |
|---|---|---|---|
| english | `t3_cfg.safetensors` (Llama) | `s3gen.safetensors`, 10 steps + CFG | `tokenizer.json` |
| multilingual (v2) | `t3_mtl23ls_v2.safetensors` (Llama, 2454 graphemes) | `s3gen.pt` | `grapheme_mtl_merged_expanded_v1.json`, 23 languages |
| turbo | `t3_turbo_v1.safetensors` (GPT-2 medium) | `s3gen_meanflow.safetensors`, 2 steps | GPT-2 BPE files |

A folder's variant is detected from its T3 file; the official `ResembleAI/chatterbox` repo holds both
the English and the multilingual files, so there English stays the default and `variant` picks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import CheckpointError
from .s3gen import S3GenConfig
from .s3gen.config import CFMConfig, EstimatorConfig
from .sampling import SamplingParams
from .t3 import T3Config
from .t3_gpt2 import GPT2T3Config
from .text_mtl import CANGJIE_FILE, CJK_SENTENCE_ENDINGS, MTL_TOKENIZER_FILE, MTL_VOCAB_SIZE
from .text_turbo import TURBO_PUNCTUATION_REPLACEMENTS, TURBO_TOKENIZER_FILES

ENGLISH, MULTILINGUAL, TURBO = "english", "multilingual", "turbo"
CONDS_FILE = "conds.pt"


@dataclass(frozen=True)
class VariantSpec:
    name: str
    t3_file: str
    s3gen_file: str
    ve_file: str
    tokenizer_files: tuple[str, ...]
    optional_files: tuple[str, ...]
    # Generation knobs this variant's model has no input for: accepted, reported as ignored.
    ignored_parameters: tuple[str, ...]
    t3_prompt_seconds: int  # reference audio fed to the T3 speech prompt
    min_reference_seconds: float
    loudness_normalise: bool  # Turbo levels references to -27 LUFS first
    trailing_silence_tokens: int  # Turbo appends 3 x S3GEN_SIL before vocoding
    sampling: SamplingParams  # this variant's defaults for the knobs a request leaves unset

    @property
    def required_files(self) -> tuple[str, ...]:
        return (self.ve_file, self.t3_file, self.s3gen_file, *self.tokenizer_files)

    def punctuation_rules(self) -> dict:
        """Keyword arguments for `text.punc_norm` (empty: the English rules)."""
        if self.name == MULTILINGUAL:
            return {"endings": (".", "!", "?", "-", ",", *CJK_SENTENCE_ENDINGS)}
        if self.name == TURBO:
            return {"replacements": TURBO_PUNCTUATION_REPLACEMENTS}
        return {}


SPECS = {
    ENGLISH: VariantSpec(
        ENGLISH,
        "t3_cfg.safetensors",
        "s3gen.safetensors",
        "ve.safetensors",
        ("tokenizer.json",),
        (CONDS_FILE,),
        ("language",),
        t3_prompt_seconds=6,
        min_reference_seconds=2.0,
        loudness_normalise=False,
        trailing_silence_tokens=0,
        sampling=SamplingParams(),
    ),
    MULTILINGUAL: VariantSpec(
        MULTILINGUAL,
        "t3_mtl23ls_v2.safetensors",
        "s3gen.pt",
        "ve.pt",
        (MTL_TOKENIZER_FILE,),
        (CONDS_FILE, CANGJIE_FILE),
        (),
        t3_prompt_seconds=6,
        min_reference_seconds=2.0,
        loudness_normalise=False,
        trailing_silence_tokens=0,
        sampling=SamplingParams(repetition_penalty=2.0),  # upstream 0.1.7's multilingual default
    ),
    TURBO: VariantSpec(
        TURBO,
        "t3_turbo_v1.safetensors",
        "s3gen_meanflow.safetensors",
        "ve.safetensors",
        TURBO_TOKENIZER_FILES,
        (CONDS_FILE,),
        ("exaggeration", "cfg_weight", "min_p", "language"),
        t3_prompt_seconds=15,
        min_reference_seconds=5.0,
        loudness_normalise=True,
        trailing_silence_tokens=3,
        sampling=SamplingParams(top_p=0.95),
    ),
}
VARIANTS = tuple(SPECS)
S3GEN_SILENCE_TOKEN = 4299


def check_variant(variant: object) -> str | None:
    if variant is None or variant == "":
        return None
    if variant not in SPECS:
        raise CheckpointError(f"unknown model variant {variant!r}: use one of {', '.join(VARIANTS)}")
    return variant


def t3_config(variant: str, tiny: bool) -> T3Config | GPT2T3Config:
    if variant == TURBO:
        return GPT2T3Config.tiny() if tiny else GPT2T3Config.full()
    base = T3Config.tiny() if tiny else T3Config.full()
    if variant == MULTILINGUAL:
        return T3Config(**{**base.to_dict(), "text_vocab_size": MTL_VOCAB_SIZE})
    return base


def s3gen_config(variant: str, tiny: bool) -> S3GenConfig:
    if variant != TURBO:
        return S3GenConfig.tiny() if tiny else S3GenConfig.full()
    if not tiny:
        return S3GenConfig.full_meanflow()
    config = S3GenConfig.tiny()
    estimator = EstimatorConfig(**{**config.estimator.__dict__, "meanflow": True})
    return S3GenConfig(
        tokenizer=config.tokenizer,
        speaker_encoder=config.speaker_encoder,
        encoder=config.encoder,
        estimator=estimator,
        cfm=CFMConfig(n_timesteps=2),
        hift=config.hift,
    )


def detect_variant(folder: Path, requested: str | None = None) -> str:
    """The variant whose T3 file the folder holds; `requested` must be one of those present."""
    present = [name for name, spec in SPECS.items() if (folder / spec.t3_file).exists()]
    if requested is not None:
        if requested not in present:
            raise CheckpointError(
                f"{folder} has no {requested} model ({SPECS[requested].t3_file} is missing)"
                + (f"; it holds: {', '.join(present)}" if present else "")
            )
        return requested
    if not present:
        expected = ", ".join(spec.t3_file for spec in SPECS.values())
        raise CheckpointError(f"{folder} is not a Chatterbox checkpoint: no T3 file ({expected})")
    return ENGLISH if ENGLISH in present else present[0]


def variant_for_repo(repo: str, requested: str | None) -> str:
    """Hub repos: Turbo lives in its own repo; elsewhere English unless a variant is requested."""
    if requested is not None:
        return requested
    return TURBO if repo.lower().rstrip("/").endswith("-turbo") else ENGLISH
