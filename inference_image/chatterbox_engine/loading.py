"""Where weights come from: the Hugging Face hub, a local folder in the official layout, or seeded
random weights (`random:tiny`, `random:full`, and `-multilingual` / `-turbo` forms of both).

Official files load with strict key matching: a missing, unexpected or mis-shaped tensor is a
`CheckpointError` that names the keys, never a silent partial load.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from .checkpoint import CONDS_FILE, CONFIG_FILE, ModelConfigs, write_checkpoint
from .errors import CheckpointError
from .s3gen import S3Gen
from .t3 import T3
from .t3_gpt2 import GPT2T3
from .text import EnTokenizer
from .text_mtl import MultilingualTokenizer
from .text_turbo import TurboTokenizer
from .variants import (
    ENGLISH,
    SPECS,
    VariantSpec,
    check_variant,
    detect_variant,
    select_variant,
    variant_for_repo,
)
from .voice import Voice
from .voice_encoder import VoiceEncoder

log = logging.getLogger(__name__)

DEFAULT_REPO = "ResembleAI/chatterbox"
RANDOM_SEED = 1234
RANDOM_SOURCES = tuple(
    f"random:{size}{'' if variant == ENGLISH else '-' + variant}"
    for variant in SPECS
    for size in ("tiny", "full")
)
_SHOWN_KEYS = 8
_STOP_RAMP = 0.06  # stop logit gain per speech token of random models


@dataclass
class Models:
    """The networks and tokenizer of one Chatterbox checkpoint, on CPU in fp32."""

    configs: ModelConfigs
    t3: T3 | GPT2T3
    voice_encoder: VoiceEncoder
    s3gen: S3Gen
    tokenizer: EnTokenizer | MultilingualTokenizer | TurboTokenizer
    default_voice: Voice | None

    @property
    def variant(self) -> str:
        return self.configs.variant

    @property
    def spec(self) -> VariantSpec:
        return SPECS[self.configs.variant]


def _key_list(keys) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:_SHOWN_KEYS])
    return shown + (f" ... ({len(keys)} in all)" if len(keys) > _SHOWN_KEYS else "")


def check_state_dict(module: nn.Module, state: dict[str, torch.Tensor], file_name: str) -> None:
    """Raise CheckpointError naming every missing, unexpected or mis-shaped key."""
    expected = module.state_dict()
    problems = []
    missing = expected.keys() - state.keys()
    unexpected = state.keys() - expected.keys()
    if missing:
        problems.append(f"missing keys: {_key_list(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_key_list(unexpected)}")
    wrong_shape = [
        f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if wrong_shape:
        problems.append(f"wrong shapes: {_key_list(wrong_shape)}")
    if problems:
        raise CheckpointError(f"{file_name} does not match the model: " + "; ".join(problems))


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    """safetensors, or (multilingual `ve.pt` / `s3gen.pt`) a torch.save tensor dict read with
    weights_only=True, never full unpickling."""
    try:
        if path.suffix == ".pt":
            state = torch.load(str(path), map_location="cpu", weights_only=True)
            if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
                raise CheckpointError(f"{path.name} is not a dict of tensors")
            return state
        return load_file(str(path))
    except (OSError, SafetensorError, RuntimeError, EOFError, ValueError) as error:
        if isinstance(error, CheckpointError):
            raise
        raise CheckpointError(f"cannot read {path}: {error}") from error


def _load_strict(module: nn.Module, path: Path, unused_keys: tuple[str, ...] = ()) -> None:
    state = {k: v.float() if v.is_floating_point() else v for k, v in _read_weights(path).items()}
    for key in unused_keys:  # e.g. Turbo's file keeps GPT-2's token table, which T3 never reads
        state.pop(key, None)
    check_state_dict(module, state, path.name)
    module.load_state_dict(state, strict=True, assign=True)


def _load_s3gen(s3gen: S3Gen, path: Path) -> None:
    # S3Gen's own load hooks accept both weight-norm spellings and files without the two
    # recomputable tokenizer buffers; anything else mismatching is an error naming the keys.
    state = _read_weights(path)
    try:
        s3gen.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as error:
        raise CheckpointError(f"{path.name} does not match the model: {error}") from error


def read_configs(folder: Path, variant: str) -> ModelConfigs:
    config_path = folder / CONFIG_FILE
    if not config_path.exists():
        return ModelConfigs.official(variant)
    try:
        configs = ModelConfigs.from_dict(json.loads(config_path.read_text(encoding="utf-8")))
    except (ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"invalid {CONFIG_FILE} in {folder}: {error}") from error
    if SPECS[configs.variant].family != SPECS[variant].family:
        raise CheckpointError(f"{CONFIG_FILE} in {folder} describes a {configs.variant} model, not {variant}")
    # Releases of one family share their shapes (multilingual v2 / v3 side by side in one folder).
    return replace(configs, variant=variant)


def _read_tokenizer(folder: Path, spec: VariantSpec):
    try:
        return spec.tokenizer.from_folder(folder)
    except Exception as error:
        files = ", ".join(spec.tokenizer_files)
        raise CheckpointError(f"cannot read the tokenizer ({files}) in {folder}: {error}") from error


def _build_t3(configs: ModelConfigs) -> T3 | GPT2T3:
    return SPECS[configs.variant].t3_model(configs.t3)


def load_folder(folder: str | Path, variant: str | None = None) -> Models:
    """Load a checkpoint folder in a variant's official layout (strict); the variant is detected from
    the T3 file unless given."""
    folder = Path(folder)
    variant = detect_variant(folder, check_variant(variant))
    spec = SPECS[variant]
    absent = [name for name in spec.required_files if not (folder / name).exists()]
    if absent:
        raise CheckpointError(
            f"{folder} is not a Chatterbox {variant} checkpoint: missing {', '.join(absent)}"
        )
    configs = read_configs(folder, variant)
    # Built on the meta device: no time spent on random initialisation that loading overwrites.
    with torch.device("meta"):
        t3 = _build_t3(configs)
        voice_encoder = VoiceEncoder(configs.voice_encoder)
        s3gen = S3Gen(configs.s3gen)
    _load_strict(t3, folder / spec.t3_file, spec.t3_unused_keys)
    _load_strict(voice_encoder, folder / spec.ve_file)
    _load_s3gen(s3gen, folder / spec.s3gen_file)
    tokenizer = _read_tokenizer(folder, spec)
    conds = folder / CONDS_FILE
    default_voice = Voice.from_conds(conds) if conds.exists() else None
    return Models(configs, t3.eval(), voice_encoder.eval(), s3gen.eval(), tokenizer, default_voice)


def download(repo: str, revision: str | None, cache_dir: str | None, variant: str) -> Path:
    """Fetch the variant's files with huggingface_hub (honours HF_HUB_OFFLINE and its cache)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError

    cache_dir = cache_dir or os.environ.get("MODEL_CACHE_DIR") or None
    spec = SPECS[variant]
    folder = None
    for name in (*spec.required_files, *spec.optional_files):
        log.info("fetching %s from %s%s", name, repo, f"@{revision}" if revision else "")
        try:
            folder = Path(hf_hub_download(repo, name, revision=revision, cache_dir=cache_dir)).parent
        except (EntryNotFoundError, LocalEntryNotFoundError, HfHubHTTPError, OSError, ValueError) as error:
            if name not in spec.required_files:
                continue  # optional (built-in voice, Chinese table)
            if isinstance(error, EntryNotFoundError) and not isinstance(error, LocalEntryNotFoundError):
                raise CheckpointError(f"{repo} has no {name}: is it a {variant} model?") from error
            raise CheckpointError(f"cannot download {name} from {repo}: {error}") from error
    return folder


def randomize_t3_(t3: T3 | GPT2T3, generator: torch.Generator) -> None:
    """Seeded small random weights, plus a stop-token logit that rises with the speech position so
    random models end each sentence after ~2 s instead of running to max_new_tokens."""
    cfg = t3.cfg
    for name, param in t3.named_parameters():
        is_norm_gain = name.endswith("norm.weight") or (".ln_" in name and name.endswith(".weight"))
        mean = 1.0 if is_norm_gain else 0.0
        param.copy_(mean + 0.02 * torch.randn(param.shape, generator=generator))
    # Token identity dominates the residual stream, except channel 0, which carries the position
    # ramp that only the stop-token row of the head reads.
    t3.speech_emb.weight.mul_(50.0)
    t3.speech_emb.weight[:, 0] = 0.0
    if isinstance(t3, GPT2T3):
        # GPT-2 positions count from the start of the prefill: ramp from about where speech begins.
        table = t3.tfmr.wpe.weight
        speech_start = 1 + cfg.speech_cond_prompt_len + 32
        positions = (torch.arange(table.shape[0], dtype=torch.float32) - speech_start).clamp(min=0)
    else:
        table = t3.speech_pos_emb.emb.weight
        positions = torch.arange(table.shape[0], dtype=torch.float32)
    table[:, 0] = _STOP_RAMP * positions
    t3.speech_head.weight[cfg.stop_speech_token] = 0.0
    t3.speech_head.weight[cfg.stop_speech_token, 0] = 1.0


def parse_random_source(source: str) -> tuple[str, str]:
    """`random:<tiny|full>[-<variant>]` -> (size, variant)."""
    if source not in RANDOM_SOURCES:
        raise CheckpointError(f"unknown random source {source!r}: use one of {', '.join(RANDOM_SOURCES)}")
    size, _, variant = source.removeprefix("random:").partition("-")
    return size, variant or ENGLISH


def random_models(kind: str, seed: int = RANDOM_SEED) -> Models:
    """`random:tiny`, `random:full` or their `-<variant>` forms (`-nano`, `-multilingual-v3`, ...): seeded random networks
    without a built-in voice (the engine embeds a synthetic reference as its default voice)."""
    size, variant = parse_random_source(kind)
    configs = ModelConfigs.tiny(variant) if size == "tiny" else ModelConfigs.official(variant)
    generator = torch.Generator().manual_seed(seed)
    t3 = _build_t3(configs)
    with torch.no_grad():
        randomize_t3_(t3, generator)
    # The other networks keep PyTorch's default initialisation, drawn from a forked, seeded RNG so
    # the caller's global RNG state is left untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        voice_encoder = VoiceEncoder(configs.voice_encoder)
        s3gen = S3Gen(configs.s3gen)
    tokenizer = SPECS[variant].tokenizer.random(configs.t3.text_vocab_size)
    return Models(configs, t3.eval(), voice_encoder.eval(), s3gen.eval(), tokenizer, None)


def resolve_models(
    source: str, cache_dir: str | None = None, variant: str | None = None, version: str | None = None
) -> Models:
    """Load Models from any supported source string; `variant` (and, for multilingual, `version`) picks
    or checks the model variant."""
    variant = select_variant(variant, version)
    if source.startswith("random:"):
        models = random_models(source)
        if variant is not None and variant != models.variant:
            raise CheckpointError(
                f"{source} holds the {models.variant} model, but variant {variant!r} was asked for"
            )
        return models
    path = Path(source).expanduser()
    if path.is_dir():
        return load_folder(path, variant)
    repo, _, revision = source.partition("@")
    if repo.count("/") != 1 or path.exists():
        raise CheckpointError(
            f"model source {source!r} is neither a checkpoint folder, a Hugging Face repo id "
            f"(owner/name[@revision]) nor one of {', '.join(RANDOM_SOURCES)}"
        )
    variant = variant_for_repo(repo, variant)
    return load_folder(download(repo, revision or None, cache_dir, variant), variant)


def write_models(models: Models, folder: str | Path, default_voice: Voice | None = None) -> Path:
    """Write models (and the built-in voice as `conds.pt`) in the variant's official layout."""
    voice = default_voice or models.default_voice
    t3_state = {k: v.float() for k, v in models.t3.state_dict().items()}
    for key in models.spec.t3_unused_keys:
        # Official files keep these (e.g. GPT-2's token table); upstream loads them strictly.
        cfg = models.t3.cfg
        t3_state[key] = torch.zeros(cfg.text_vocab_size, cfg.hidden_size)
    return write_checkpoint(
        folder,
        configs=models.configs,
        ve_state=models.voice_encoder.state_dict(),
        t3_state=t3_state,
        s3gen_state=models.s3gen.state_dict(),
        tokenizer_files=models.tokenizer.files(),
        conds=voice.to_conds() if voice is not None else None,
    )
