"""Where weights come from: the Hugging Face hub, a local folder in the official layout, or seeded
random weights (`random:tiny`, `random:full`).

Official files load with strict key matching: a missing, unexpected or mis-shaped tensor is a
`CheckpointError` that names the keys, never a silent partial load.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from .checkpoint import (
    CONDS_FILE,
    CONFIG_FILE,
    OFFICIAL_FILES,
    S3GEN_FILE,
    T3_FILE,
    TOKENIZER_FILE,
    VE_FILE,
    ModelConfigs,
    make_tokenizer_json,
    write_checkpoint,
)
from .errors import CheckpointError
from .s3gen import S3Gen
from .t3 import T3
from .text import EnTokenizer
from .voice import Voice
from .voice_encoder import VoiceEncoder

log = logging.getLogger(__name__)

DEFAULT_REPO = "ResembleAI/chatterbox"
RANDOM_SEED = 1234
RANDOM_SOURCES = ("random:tiny", "random:full")
_SHOWN_KEYS = 8
_STOP_RAMP = 0.06  # stop logit gain per speech token of random models


@dataclass
class Models:
    """The networks and tokenizer of one Chatterbox checkpoint, on CPU in fp32."""

    configs: ModelConfigs
    t3: T3
    voice_encoder: VoiceEncoder
    s3gen: S3Gen
    tokenizer: EnTokenizer
    default_voice: Voice | None


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


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (OSError, SafetensorError) as error:
        raise CheckpointError(f"cannot read {path}: {error}") from error


def _load_strict(module: nn.Module, path: Path) -> None:
    state = {k: v.float() if v.is_floating_point() else v for k, v in _read_safetensors(path).items()}
    check_state_dict(module, state, path.name)
    module.load_state_dict(state, strict=True, assign=True)


def _load_s3gen(s3gen: S3Gen, path: Path) -> None:
    # S3Gen's own load hooks accept both weight-norm spellings and files without the two
    # recomputable tokenizer buffers; anything else mismatching is an error naming the keys.
    state = _read_safetensors(path)
    try:
        s3gen.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as error:
        raise CheckpointError(f"{path.name} does not match the model: {error}") from error


def read_configs(folder: Path) -> ModelConfigs:
    config_path = folder / CONFIG_FILE
    if not config_path.exists():
        return ModelConfigs.official()
    try:
        return ModelConfigs.from_dict(json.loads(config_path.read_text(encoding="utf-8")))
    except (ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"invalid {CONFIG_FILE} in {folder}: {error}") from error


def load_folder(folder: str | Path) -> Models:
    """Load a checkpoint folder in the official layout (strict)."""
    folder = Path(folder)
    absent = [name for name in OFFICIAL_FILES if name != CONDS_FILE and not (folder / name).exists()]
    if absent:
        raise CheckpointError(f"{folder} is not a Chatterbox checkpoint: missing {', '.join(absent)}")
    configs = read_configs(folder)
    # Built on the meta device: no time spent on random initialisation that loading overwrites.
    with torch.device("meta"):
        t3 = T3(configs.t3)
        voice_encoder = VoiceEncoder(configs.voice_encoder)
        s3gen = S3Gen(configs.s3gen)
    _load_strict(t3, folder / T3_FILE)
    _load_strict(voice_encoder, folder / VE_FILE)
    _load_s3gen(s3gen, folder / S3GEN_FILE)
    try:
        tokenizer = EnTokenizer.from_file(folder / TOKENIZER_FILE)
    except Exception as error:
        raise CheckpointError(f"cannot read {folder / TOKENIZER_FILE}: {error}") from error
    conds = folder / CONDS_FILE
    default_voice = Voice.from_conds(conds) if conds.exists() else None
    return Models(configs, t3.eval(), voice_encoder.eval(), s3gen.eval(), tokenizer, default_voice)


def download(repo: str, revision: str | None, cache_dir: str | None) -> Path:
    """Fetch the official files with huggingface_hub (honours HF_HUB_OFFLINE and its cache)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    cache_dir = cache_dir or os.environ.get("MODEL_CACHE_DIR") or None
    paths = []
    for name in OFFICIAL_FILES:
        log.info("fetching %s from %s%s", name, repo, f"@{revision}" if revision else "")
        try:
            paths.append(Path(hf_hub_download(repo, name, revision=revision, cache_dir=cache_dir)))
        except (LocalEntryNotFoundError, HfHubHTTPError, OSError, ValueError) as error:
            raise CheckpointError(f"cannot download {name} from {repo}: {error}") from error
    return paths[0].parent


def randomize_t3_(t3: T3, generator: torch.Generator) -> None:
    """Seeded small random weights, plus a stop-token logit that rises with the speech position so
    random models end each sentence after ~2 s instead of running to max_new_tokens."""
    cfg = t3.cfg
    for name, param in t3.named_parameters():
        mean = 1.0 if name.endswith("norm.weight") else 0.0
        param.copy_(mean + 0.02 * torch.randn(param.shape, generator=generator))
    # Token identity dominates the residual stream, except channel 0, which carries the position
    # ramp that only the stop-token row of the head reads.
    t3.speech_emb.weight.mul_(50.0)
    t3.speech_emb.weight[:, 0] = 0.0
    positions = torch.arange(t3.speech_pos_emb.emb.weight.shape[0], dtype=torch.float32)
    t3.speech_pos_emb.emb.weight[:, 0] = _STOP_RAMP * positions
    t3.speech_head.weight[cfg.stop_speech_token] = 0.0
    t3.speech_head.weight[cfg.stop_speech_token, 0] = 1.0


def random_models(kind: str, seed: int = RANDOM_SEED) -> Models:
    """`random:tiny` or `random:full`: seeded random networks without a built-in voice (the engine
    embeds a synthetic reference as its default voice)."""
    configs = ModelConfigs.tiny() if kind == "random:tiny" else ModelConfigs.official()
    generator = torch.Generator().manual_seed(seed)
    t3 = T3(configs.t3)
    with torch.no_grad():
        randomize_t3_(t3, generator)
    # The other networks keep PyTorch's default initialisation, drawn from a forked, seeded RNG so
    # the caller's global RNG state is left untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        voice_encoder = VoiceEncoder(configs.voice_encoder)
        s3gen = S3Gen(configs.s3gen)
    tokenizer = EnTokenizer.from_str(make_tokenizer_json(configs.t3.text_vocab_size))
    return Models(configs, t3.eval(), voice_encoder.eval(), s3gen.eval(), tokenizer, None)


def resolve_models(source: str, cache_dir: str | None = None) -> Models:
    """Load Models from any supported source string."""
    if source in RANDOM_SOURCES:
        return random_models(source)
    if source.startswith("random:"):
        raise CheckpointError(f"unknown random source {source!r}: use one of {', '.join(RANDOM_SOURCES)}")
    path = Path(source).expanduser()
    if path.is_dir():
        return load_folder(path)
    repo, _, revision = source.partition("@")
    if repo.count("/") != 1 or path.exists():
        raise CheckpointError(
            f"model source {source!r} is neither a checkpoint folder, a Hugging Face repo id "
            f"(owner/name[@revision]) nor one of {', '.join(RANDOM_SOURCES)}"
        )
    return load_folder(download(repo, revision or None, cache_dir))


def write_models(models: Models, folder: str | Path, default_voice: Voice | None = None) -> Path:
    """Write models (and the built-in voice as `conds.pt`) in the official layout."""
    voice = default_voice or models.default_voice
    return write_checkpoint(
        folder,
        configs=models.configs,
        ve_state=models.voice_encoder.state_dict(),
        t3_state={k: v.float() for k, v in models.t3.state_dict().items()},
        s3gen_state=models.s3gen.state_dict(),
        tokenizer_json=models.tokenizer.tokenizer.to_str(),
        conds=voice.to_conds() if voice is not None else None,
    )
