"""Server settings: one pydantic-settings class read from the environment (and CLI flags, see __main__)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# OpenAI's voice names; requests using them resolve through `Settings.voice_aliases`.
OPENAI_VOICE_NAMES = (
    "alloy",
    "ash",
    "ballad",
    "coral",
    "echo",
    "fable",
    "onyx",
    "nova",
    "sage",
    "shimmer",
    "verse",
    "marin",
    "cedar",
)
# Each maps to the model's built-in voice unless VOICE_ALIASES says otherwise.
DEFAULT_VOICE_ALIASES = dict.fromkeys(OPENAI_VOICE_NAMES, "default")


class Settings(BaseSettings):
    """Every knob of the server. Environment variables use the upper-case field name (e.g. `API_PORT`)."""

    # `--variant` (the and README's name) is a command-line shortcut only: an environment variable
    # as generic as VARIANT is not read. Shortcut keys are the kebab-case flag names.
    model_config = SettingsConfigDict(
        env_prefix="", case_sensitive=False, extra="ignore", cli_shortcuts={"chatterbox-variant": "variant"}
    )

    api_host: str = Field("0.0.0.0", description="Interface to listen on.")
    api_port: int = Field(8000, ge=0, le=65535, description="HTTP port.")
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="Log verbosity.")
    log_json: bool = Field(False, description="Write one JSON object per log line (for log collectors).")

    chatterbox_model: str = Field(
        "ResembleAI/chatterbox",
        description="Hugging Face repo id (optional @revision), a local folder, or random:tiny / random:full "
        "(random:tiny-multilingual, random:tiny-turbo, ... for the other variants).",
    )
    chatterbox_variant: Literal["english", "multilingual", "turbo", "nano"] | None = Field(
        None,
        description="Model variant: english, multilingual (23 languages), turbo or nano (the small one, for "
        "CPU); unset: detected from the model files (ResembleAI/chatterbox holds English and multilingual: "
        "English unless set).",
    )
    chatterbox_model_version: Literal["v2", "v3"] | None = Field(
        None,
        description="Multilingual release: v2 (t3_mtl23ls_v2, the default) or v3 (t3_mtl23ls_v3: repetition "
        "penalty 1.2, the last token's audio dropped). Only with the multilingual variant.",
    )
    model_cache_dir: str | None = Field(None, description="Where downloaded weights are kept.")
    device: str = Field("auto", description="auto (cuda when available, else cpu), cpu, cuda, cuda:N.")
    dtype: str = Field("float32", description="float32, float16 or bfloat16.")
    watermark: bool = Field(True, description="Apply Resemble's Perth watermark to generated audio.")
    warmup: bool = Field(True, description="Run one short synthesis before reporting ready.")

    voice_library_dir: Path = Field(Path(".voices"), description="Directory holding cloned voices.")
    max_voice_upload_bytes: int = Field(
        10 * 1024 * 1024, gt=0, description="Largest accepted upload: a voice sample or a conversion source."
    )
    max_voice_seconds: float = Field(60.0, gt=0, description="Longest accepted voice sample, in seconds.")
    max_conversion_seconds: float = Field(
        300.0, gt=0, description="Longest accepted source for voice conversion, in seconds."
    )
    voice_aliases: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_VOICE_ALIASES),
        description="Maps OpenAI voice names to library voice names or ids (JSON object in the env var); "
        "names not given keep mapping to the built-in voice.",
    )

    api_keys: str = Field(
        "", description="Comma-separated Bearer keys; empty (and no API_KEYS_FILE) means no authentication."
    )
    api_keys_file: Path | None = Field(
        None,
        description="YAML mapping of key names to keys (`team-a: sk-...`), or one key per line (a mounted "
        "Secret); re-read when it changes.",
    )
    api_key_limits_file: Path | None = Field(
        None,
        description="YAML mapping of key names (and `default`) to per-pod limits: concurrent_requests, "
        "requests_per_minute, input_characters_per_day; re-read when it changes.",
    )

    max_concurrent: int | None = Field(
        None,
        ge=1,
        description="Syntheses running at once, decoded together in one batch of the engine's loop; "
        "unset: 8 on a GPU, 2 on CPU.",
    )
    batch_s3gen: bool | None = Field(
        None,
        description="Render the chunks of concurrent streams in shared S3Gen calls (audio equal to solo audio "
        "up to float rounding); unset: on a GPU only. On CPU, S3Gen is compute-bound and gains nothing, and "
        "left off, concurrent audio stays bit-identical to the same request alone.",
    )
    overlap_s3gen: Literal["auto", "on", "off"] = Field(
        "auto",
        description="S3Gen renders audio on its own thread while T3 decodes the next tokens (the same audio "
        "and tokens as serial); auto: on a CPU with two or more cores, off on a GPU (where on is refused: "
        "both would queue on one device, not tested there). off: one thread runs both, one after the other.",
    )
    stream_chunk_plan: Literal["auto", "realtime", "throughput"] = Field(
        "auto",
        description="Sizes of streamed chunks after the first (0.4 s): realtime grows them from 1 s to 4 s "
        "(devices decoding faster than real time), throughput uses 4, 8, then 16 s (slower devices: each "
        "chunk re-renders the voice's prompt, so fewer cut the total time); auto: throughput on CPU, "
        "realtime on a GPU. A request's chunk_tokens still fixes its own.",
    )
    stream_continuation_prompt_tokens: int | None = Field(
        None,
        ge=1,
        le=250,
        description="Opt-in, changes the audio: streamed windows after a sentence's first condition S3Gen on "
        "only this many of the voice prompt's last tokens (25 = 1 s) instead of the whole prompt (up to 10 s), "
        "so slow devices re-render less of it per chunk. Unset: the whole prompt (exact streaming).",
    )
    max_queue: int = Field(8, ge=0, description="Admitted requests waiting for a slot; beyond that, 429.")
    request_timeout_s: float = Field(300.0, gt=0, description="Longest a request may wait and synthesise.")
    drain_seconds: float = Field(
        0.0,
        ge=0,
        description="After SIGTERM, keep serving (not ready) this long before closing the listener.",
    )
    stream_idle_timeout_s: float = Field(
        60.0,
        gt=0,
        description="A text-streaming session (WebSocket, Wyoming) waiting this long for text is closed.",
    )
    stream_max_input_chars: int = Field(
        100_000, ge=1, description="Most text one streaming session (WebSocket, Wyoming) may send."
    )
    wyoming_port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="TCP port of the Wyoming protocol listener (Home Assistant); unset: off.",
    )
    webui_dir: Path | None = Field(
        None, description="Built web UI to serve at /; default: the repo's webui/dist."
    )

    @field_validator("voice_aliases", mode="after")
    @classmethod
    def _keep_default_aliases(cls, aliases: dict[str, str]) -> dict[str, str]:
        return {**DEFAULT_VOICE_ALIASES, **aliases}

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_log_level(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value
