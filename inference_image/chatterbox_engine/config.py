"""What the flat model configs share (`T3Config`, `GPT2T3Config`, `VoiceEncoderConfig`).

Each is a frozen dataclass listing its network's hyperparameters flat, named after its checkpoint's own
config, with the official shapes as defaults. Their fields stay in their own modules, whole: the two T3
architectures share names but not values (layers, vocabularies, prompt length), so each layout reads in
one place. Non-official shapes travel as `engine_config.json` (`checkpoint.ModelConfigs`).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Self


class FlatConfig:
    """The official shapes and the JSON round trip of a flat, frozen config dataclass."""

    @classmethod
    def full(cls) -> Self:
        """The official shapes: the defaults."""
        return cls()

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Self:
        return cls(**data)
