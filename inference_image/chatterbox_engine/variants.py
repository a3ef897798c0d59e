"""The Chatterbox family: per-variant file layout, network shapes, front-end rules and detection.

| variant | T3 | S3Gen | text |
|---|---|---|---|
| english | `t3_cfg.safetensors` (Llama) | `s3gen.safetensors`, 10 steps + CFG | `tokenizer.json` |
| multilingual (v2) | `t3_mtl23ls_v2.safetensors` (Llama, 2454 graphemes) | `s3gen.pt` | `grapheme_mtl_merged_expanded_v1.json`, 23 languages |
| multilingual-v3 | `t3_mtl23ls_v3.safetensors` (as v2) | as v2 | as v2 |
| turbo | `t3_turbo_v1.safetensors` (GPT-2 medium) | `s3gen_meanflow.safetensors`, 2 steps | GPT-2 BPE files, paralinguistic tags |
| nano | `t3_nano_v1.safetensors` (GPT-2 small) | as Turbo | as Turbo |

A folder's variant is detected from its T3 file; the official `ResembleAI/chatterbox` repo holds the
English and both multilingual T3 files, so there English stays the default, then multilingual v2, and
`variant` (with `version` for multilingual) picks. Nano and Turbo each have their own hub repo.

A new variant is one more `SPECS` entry, often a `replace` of a relative: Nano is Turbo with its own T3
file, a GPT-2-small T3 config and the `-nano` repo suffix.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .errors import CheckpointError
from .s3gen import S3GenConfig
from .s3gen.config import CFMConfig, EstimatorConfig
from .sampling import SamplingParams
from .t3 import T3, T3Config
from .t3_gpt2 import GPT2T3, UNUSED_KEYS, GPT2T3Config
from .text import TOKENIZER_FILE, EnTokenizer
from .text_mtl import (
    CANGJIE_FILE,
    CJK_SENTENCE_ENDINGS,
    MTL_TOKENIZER_FILE,
    MTL_VOCAB_SIZE,
    MultilingualTokenizer,
)
from .text_turbo import TURBO_PUNCTUATION_REPLACEMENTS, TURBO_TOKENIZER_FILES, TurboTokenizer

ENGLISH, MULTILINGUAL, TURBO, NANO = "english", "multilingual", "turbo", "nano"
MULTILINGUAL_V3 = "multilingual-v3"
CONDS_FILE = "conds.pt"
S3GEN_SILENCE_TOKEN = 4299


@dataclass(frozen=True)
class VariantSpec:
    """Everything that differs between the Chatterbox variants: a new variant is one more entry in
    `SPECS`, read by the loader, the checkpoint writer, `Engine.request` and `Voice.embed`."""

    name: str
    # Official file layout (required files, then ones loaded when present).
    t3_file: str
    s3gen_file: str
    ve_file: str
    tokenizer_files: tuple[str, ...]
    optional_files: tuple[str, ...]
    repo_suffix: str | None  # hub repos named `...<suffix>` hold this variant (e.g. chatterbox-turbo)
    # Networks.
    t3_model: type[T3] | type[GPT2T3]  # Llama backbone or GPT-2 backbone
    t3_full: Callable[[], Any]  # the official T3 config
    t3_tiny: Callable[[], Any]  # a small one for tests (random weights)
    t3_unused_keys: tuple[str, ...]  # in the official T3 file, read by upstream, never used
    s3gen_meanflow: bool  # S3Gen's 2-step mean-flow decoder (no CFG) instead of 10 steps with CFG
    # Text front end: from_folder / random(vocab_size) / files(), languages, check_language, text_tokens.
    tokenizer: type[EnTokenizer] | type[MultilingualTokenizer] | type[TurboTokenizer]
    punctuation: dict[str, tuple]  # `text.punc_norm` keyword arguments (empty: the English rules)
    # Voices.
    t3_prompt_seconds: int  # reference audio fed to the T3 speech prompt
    min_reference_seconds: float
    loudness_normalise: bool  # Turbo levels references to -27 LUFS first
    # Generation.
    ignored_parameters: tuple[str, ...]  # request knobs this model has no input for: accepted, reported
    trailing_silence_tokens: int  # Turbo appends 3 x S3GEN_SIL before vocoding
    sampling: SamplingParams  # this variant's defaults for the knobs a request leaves unset
    # Releases of one model: `family` is the variant users name, `version` picks its T3 file (multilingual
    # v2 / v3). A variant with a single release leaves both unset (family = name, no version).
    family: str = ""
    version: str | None = None
    drop_last_token_audio: bool = False  # v3: the last speech token before the stop decodes to noise

    def __post_init__(self) -> None:
        if not self.family:
            object.__setattr__(self, "family", self.name)

    @property
    def required_files(self) -> tuple[str, ...]:
        return (self.ve_file, self.t3_file, self.s3gen_file, *self.tokenizer_files)

    def t3_config(self, tiny: bool):
        return self.t3_tiny() if tiny else self.t3_full()

    def t3_config_from_dict(self, data: dict):
        return type(self.t3_tiny()).from_dict(data)

    def s3gen_config(self, tiny: bool) -> S3GenConfig:
        if not self.s3gen_meanflow:
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


def _with_multilingual_vocab(config: T3Config) -> T3Config:
    return T3Config(**{**config.to_dict(), "text_vocab_size": MTL_VOCAB_SIZE})


_ENGLISH_SPEC = VariantSpec(
    ENGLISH,
    t3_file="t3_cfg.safetensors",
    s3gen_file="s3gen.safetensors",
    ve_file="ve.safetensors",
    tokenizer_files=(TOKENIZER_FILE,),
    optional_files=(CONDS_FILE,),
    repo_suffix=None,
    t3_model=T3,
    t3_full=T3Config.full,
    t3_tiny=T3Config.tiny,
    t3_unused_keys=(),
    s3gen_meanflow=False,
    tokenizer=EnTokenizer,
    punctuation={},
    t3_prompt_seconds=6,
    min_reference_seconds=2.0,
    loudness_normalise=False,
    ignored_parameters=("language",),
    trailing_silence_tokens=0,
    sampling=SamplingParams(),
)
SPECS = {
    ENGLISH: _ENGLISH_SPEC,
    # The English model with a grapheme front end for 23 languages and its own file names.
    MULTILINGUAL: replace(
        _ENGLISH_SPEC,
        name=MULTILINGUAL,
        t3_file="t3_mtl23ls_v2.safetensors",
        s3gen_file="s3gen.pt",
        ve_file="ve.pt",
        tokenizer_files=(MTL_TOKENIZER_FILE,),
        optional_files=(CONDS_FILE, CANGJIE_FILE),
        t3_full=lambda: _with_multilingual_vocab(T3Config.full()),
        t3_tiny=lambda: _with_multilingual_vocab(T3Config.tiny()),
        tokenizer=MultilingualTokenizer,
        punctuation={"endings": (".", "!", "?", "-", ",", *CJK_SENTENCE_ENDINGS)},
        ignored_parameters=(),
        sampling=SamplingParams(repetition_penalty=2.0),  # upstream 0.1.7's multilingual default
        family=MULTILINGUAL,
        version="v2",
    ),
    TURBO: VariantSpec(
        TURBO,
        t3_file="t3_turbo_v1.safetensors",
        s3gen_file="s3gen_meanflow.safetensors",
        ve_file="ve.safetensors",
        tokenizer_files=TURBO_TOKENIZER_FILES,
        optional_files=(CONDS_FILE,),
        repo_suffix="-turbo",
        t3_model=GPT2T3,
        t3_full=GPT2T3Config.full,
        t3_tiny=GPT2T3Config.tiny,
        t3_unused_keys=UNUSED_KEYS,
        s3gen_meanflow=True,
        tokenizer=TurboTokenizer,
        punctuation={"replacements": TURBO_PUNCTUATION_REPLACEMENTS},
        t3_prompt_seconds=15,
        min_reference_seconds=5.0,
        loudness_normalise=True,
        ignored_parameters=("exaggeration", "cfg_weight", "min_p", "language"),
        trailing_silence_tokens=3,
        sampling=SamplingParams(top_p=0.95),
    ),
}
# Multilingual V3 (upstream main, opt-in there too): new T3 weights, v2's architecture and other files.
# Upstream main's V3 behaviour: repetition penalty 1.2 (v2: 2.0), the audio of the last speech token
# dropped, and no alignment analyzer (we never ran one, for v2 either).
SPECS[MULTILINGUAL_V3] = replace(
    SPECS[MULTILINGUAL],
    name=MULTILINGUAL_V3,
    t3_file="t3_mtl23ls_v3.safetensors",
    sampling=SamplingParams(),
    version="v3",
    drop_last_token_audio=True,
)
# Nano (upstream main): Turbo with a GPT-2 small backbone and its own T3 file, in its own hub repo.
SPECS[NANO] = replace(
    SPECS[TURBO],
    name=NANO,
    t3_file="t3_nano_v1.safetensors",
    repo_suffix="-nano",
    t3_full=GPT2T3Config.nano,
    t3_tiny=GPT2T3Config.tiny_nano,
    family=NANO,
)
VARIANTS = tuple(SPECS)
# What users name (`--variant`, the operator's spec.model.variant): the families; `version` picks a release.
FAMILIES = tuple(dict.fromkeys(spec.family for spec in SPECS.values()))
VERSIONS = {
    family: tuple(spec.version for spec in SPECS.values() if spec.family == family and spec.version)
    for family in FAMILIES
}


def check_variant(variant: object) -> str | None:
    if variant is None or variant == "":
        return None
    if variant not in SPECS:
        raise CheckpointError(f"unknown model variant {variant!r}: use one of {', '.join(VARIANTS)}")
    return variant


def select_variant(variant: object, version: object = None) -> str | None:
    """A variant (a family such as "multilingual", or a SPECS name; None: detect from the files) and an
    optional version ("v2", "v3") -> the SPECS name to load, or None to detect."""
    variant = check_variant(variant)
    if version is None or version == "":
        return variant
    family = SPECS[variant].family if variant else MULTILINGUAL
    versioned = {spec.version: name for name, spec in SPECS.items() if spec.family == family and spec.version}
    if not versioned:
        raise CheckpointError(f"the {family} model has a single version; only multilingual takes a version")
    if version not in versioned:
        raise CheckpointError(
            f"unknown {family} version {version!r}: use one of {', '.join(VERSIONS[family])}"
        )
    if variant is not None and variant != family and variant != versioned[version]:
        raise CheckpointError(f"variant {variant!r} is not version {version!r}")
    return versioned[version]


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
    """Hub repos: Turbo and Nano live in their own repos (`-turbo`, `-nano`); elsewhere English unless a
    variant is requested."""
    if requested is not None:
        return requested
    name = repo.lower().rstrip("/")
    suffixed = [spec.name for spec in SPECS.values() if spec.repo_suffix and name.endswith(spec.repo_suffix)]
    return suffixed[0] if suffixed else ENGLISH
