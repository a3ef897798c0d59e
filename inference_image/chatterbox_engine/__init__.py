"""chatterbox_engine: our own inference implementation of Resemble AI's Chatterbox TTS.

Loads the official checkpoint files unchanged and reproduces upstream chatterbox-tts 0.1.7.

    import chatterbox_engine as ce
    engine = ce.load("ResembleAI/chatterbox")          # or a folder, "random:tiny", "random:full-turbo", ...
    request = engine.request("Hello there.", seed=1)        # validated once (ce.GenerationRequest)
    audio = engine.generate(request).audio                   # float32 at ce.SAMPLE_RATE
    converted = engine.convert(speech, 16_000, voice).audio  # the same words in another voice
"""

from __future__ import annotations

import os

from . import runtime  # first: it sets OpenMP's wait policy, read once when torch loads

# isort: split
import torch

SAMPLE_RATE = 24_000

from .conversion import Conversion  # noqa: E402
from .engine import AudioChunk, Engine, Synthesis  # noqa: E402
from .errors import (  # noqa: E402
    CheckpointError,
    EngineError,
    EngineStopped,
    InvalidAudioError,
    InvalidParameterError,
    InvalidTextError,
)
from .request import GenerationRequest  # noqa: E402
from .sampling import SamplingParams  # noqa: E402
from .voice import Voice  # noqa: E402

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _parse_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype) and dtype in _DTYPES.values():
        return dtype
    if isinstance(dtype, str) and dtype.removeprefix("torch.") in _DTYPES:
        return _DTYPES[dtype.removeprefix("torch.")]
    raise InvalidParameterError(f"dtype must be one of {', '.join(_DTYPES)}, got {dtype!r}")


def _parse_device(device: str) -> str:
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise InvalidParameterError(f"invalid device {device!r}: {error}") from error
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise InvalidParameterError(f"device {device!r} requested but CUDA is not available")
    return str(parsed)


def load(
    source: str | os.PathLike,
    device: str = "cpu",
    dtype: str | torch.dtype = "float32",
    watermark: bool = True,
    cache_dir: str | None = None,
    variant: str | None = None,
    version: str | None = None,
) -> Engine:
    """Build an Engine from a Hugging Face repo id (`owner/name[@revision]`), a local folder in the
    official layout, or `random:tiny` / `random:full` (seeded random weights; `random:tiny-turbo`,
    `random:full-multilingual`, `random:tiny-nano`, ... for the other variants). `variant` ("english",
    "multilingual", "turbo", "nano") picks the model where a source holds several, and is checked against
    the files otherwise; None detects it. `version` picks a multilingual release ("v2", the default, or
    "v3")."""
    from .loading import resolve_models

    if isinstance(source, os.PathLike):
        source = os.fspath(source)
    if not isinstance(source, str) or not source.strip():
        raise CheckpointError(f"model source must be a non-empty string, got {source!r}")
    torch_dtype = _parse_dtype(dtype)
    device = _parse_device(device)
    models = resolve_models(source, cache_dir=cache_dir, variant=variant, version=version)
    if torch.device(device).type == "cpu":
        runtime.limit_threads_to_cpu_budget()
    return Engine(models, source=source, device=device, dtype=torch_dtype, watermark=bool(watermark))


__all__ = [
    "SAMPLE_RATE",
    "AudioChunk",
    "CheckpointError",
    "Conversion",
    "Engine",
    "EngineError",
    "EngineStopped",
    "GenerationRequest",
    "InvalidAudioError",
    "InvalidParameterError",
    "InvalidTextError",
    "SamplingParams",
    "Synthesis",
    "Voice",
    "load",
]
