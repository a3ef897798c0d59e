"""Writing checkpoints in each variant's official layout.

English is `ve.safetensors`, `t3_cfg.safetensors`, `s3gen.safetensors`, `tokenizer.json` and
`conds.pt`; multilingual and Turbo use their own names (`variants.SPECS`). Shapes other than the
official ones add a small `engine_config.json` beside them so the loader can build matching modules
(official files need none). Tests and benchmarks use this to put
seeded random weights on disk that both our loader and upstream's modules read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

from .s3gen import S3GenConfig
from .t3 import T3Config
from .t3_gpt2 import GPT2T3Config
from .variants import CONDS_FILE, ENGLISH, SPECS
from .voice_encoder import VoiceEncoderConfig

# The English layout's names (every variant's are in `variants.SPECS`).
T3_FILE = SPECS[ENGLISH].t3_file
CONFIG_FILE = "engine_config.json"
OFFICIAL_FILES = (*SPECS[ENGLISH].required_files, CONDS_FILE)


@dataclass(frozen=True)
class ModelConfigs:
    """The shapes of the three networks and the model variant; `official()` needs no config file."""

    t3: T3Config | GPT2T3Config
    voice_encoder: VoiceEncoderConfig
    s3gen: S3GenConfig
    variant: str = ENGLISH

    @classmethod
    def official(cls, variant: str = ENGLISH) -> ModelConfigs:
        return cls.of_size(variant, tiny=False)

    @classmethod
    def tiny(cls, variant: str = ENGLISH) -> ModelConfigs:
        return cls.of_size(variant, tiny=True)

    @classmethod
    def of_size(cls, variant: str, tiny: bool) -> ModelConfigs:
        spec = SPECS[variant]
        voice_encoder = VoiceEncoderConfig.tiny() if tiny else VoiceEncoderConfig.full()
        return cls(spec.t3_config(tiny), voice_encoder, spec.s3gen_config(tiny), variant)

    def to_dict(self) -> dict:
        return {
            "variant": self.variant,
            "t3": self.t3.to_dict(),
            "voice_encoder": self.voice_encoder.to_dict(),
            "s3gen": self.s3gen.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfigs:
        variant = data.get("variant", ENGLISH)
        return cls(
            SPECS[variant].t3_config_from_dict(data["t3"]),
            VoiceEncoderConfig.from_dict(data["voice_encoder"]),
            S3GenConfig.from_dict(data["s3gen"]),
            variant,
        )


def _contiguous(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {key: tensor.detach().cpu().contiguous() for key, tensor in state.items()}


def _save_weights(state: dict[str, torch.Tensor], path: Path) -> None:
    # Multilingual ships `ve.pt` / `s3gen.pt`: plain tensor dicts, loadable with weights_only=True.
    if path.suffix == ".pt":
        torch.save(_contiguous(state), path)
    else:
        save_file(_contiguous(state), str(path))


def write_checkpoint(
    folder: str | Path,
    *,
    configs: ModelConfigs,
    ve_state: dict[str, torch.Tensor],
    t3_state: dict[str, torch.Tensor],
    s3gen_state: dict[str, torch.Tensor],
    tokenizer_files: dict[str, str],
    conds: dict | None,
) -> Path:
    """Write one checkpoint folder in the variant's official layout and return its path.

    tokenizer_files maps each tokenizer file name of the variant to its text."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    spec = SPECS[configs.variant]
    _save_weights(ve_state, folder / spec.ve_file)
    _save_weights(t3_state, folder / spec.t3_file)
    _save_weights(s3gen_state, folder / spec.s3gen_file)
    for name, text in tokenizer_files.items():
        (folder / name).write_text(text, encoding="utf-8")
    if conds is not None:
        torch.save(conds, folder / CONDS_FILE)
    config_path = folder / CONFIG_FILE
    if configs == ModelConfigs.official(configs.variant):
        config_path.unlink(missing_ok=True)
    else:
        config_path.write_text(json.dumps(configs.to_dict(), indent=2), encoding="utf-8")
    return folder
