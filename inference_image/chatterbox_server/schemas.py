"""Request and response bodies (pydantic); `Field` descriptions become the OpenAPI docs."""

from __future__ import annotations

from typing import Annotated, Literal

from chatterbox_engine.request import KNOB_BOUNDS, MAX_SEED, knob_defaults
from chatterbox_engine.variants import ENGLISH, SPECS
from fastapi import UploadFile
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.datastructures import UploadFile as StarletteUploadFile

from .audio import AudioFormat

MAX_INPUT_CHARS = 4096
SERVED_MODEL_ID = "chatterbox"
MAX_VOICE_REF_CHARS = 200
MODEL_ALIASES = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts", "gpt-4o-mini-tts-2025-12-15")


def _knob(name: str, description: str):
    """An optional generation knob with the engine's bounds; omitted, the model's default applies."""
    bounds = KNOB_BOUNDS[name]
    low = {"gt": bounds.low} if bounds.low_exclusive else {"ge": bounds.low}
    uses = {variant: knob_defaults(spec) for variant, spec in SPECS.items()}
    by_variant = {variant: defaults[name] for variant, defaults in uses.items() if name in defaults}
    if len(set(by_variant.values())) == 1:
        default = f"{by_variant[ENGLISH]:g}"
    else:
        default = ", ".join(f"{variant} {value:g}" for variant, value in by_variant.items())
    return Field(
        None, **low, le=bounds.high, description=f"{description} Omitted: the model's default ({default})."
    )


Speed = Annotated[float, Field(ge=0.25, le=4.0, description="Playback speed; tempo changes, pitch does not.")]
ResponseFormat = Annotated[AudioFormat, Field(description="mp3, opus, aac, flac, wav or pcm (24 kHz s16le).")]
StreamFormat = Annotated[
    Literal["audio", "sse"],
    Field(description="`audio`: chunked audio bytes; `sse`: speech.audio.delta/done events."),
]
Seed = Annotated[int, Field(ge=0, le=MAX_SEED, description="Same seed and arguments give the same audio.")]


class VoiceRef(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(
        min_length=1,
        max_length=MAX_VOICE_REF_CHARS,
        description="A voice id, e.g. voice_1234 (or `default`).",
    )


class SpeechRequest(BaseModel):
    """OpenAI's CreateSpeechRequest plus Chatterbox's sampling knobs as extra fields."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(
        SERVED_MODEL_ID, max_length=200, description="`chatterbox`, or an OpenAI model name (an alias)."
    )
    input: str = Field(min_length=1, max_length=MAX_INPUT_CHARS, description="Text to speak.")
    voice: Annotated[str, Field(min_length=1, max_length=MAX_VOICE_REF_CHARS)] | VoiceRef | None = Field(
        None,
        description='Voice name, id or {"id": ...}; OpenAI names map through the alias table. '
        "Omitted: the model's built-in voice.",
    )
    instructions: str | None = Field(
        None, max_length=MAX_INPUT_CHARS, description="Accepted for compatibility; Chatterbox ignores it."
    )
    response_format: ResponseFormat = "mp3"
    speed: Speed = 1.0
    stream_format: StreamFormat = "audio"
    # Chatterbox's generation knobs: bounds and defaults are the engine's (`chatterbox_engine.request`).
    exaggeration: float | None = _knob("exaggeration", "Emotion intensity.")
    cfg_weight: float | None = _knob("cfg_weight", "Classifier-free guidance weight; lower slows the pace.")
    temperature: float | None = _knob("temperature", "Sampling temperature.")
    top_p: float | None = _knob("top_p", "Nucleus sampling mass.")
    min_p: float | None = _knob("min_p", "Minimum token probability relative to the best.")
    repetition_penalty: float | None = _knob("repetition_penalty", "Penalty on repeated speech tokens.")
    seed: Seed | None = None
    language: str = Field(
        "en",
        min_length=2,
        max_length=16,
        description="Language of the input (ISO 639-1, e.g. `fr`); the multilingual model speaks those listed "
        "by /v1/models, English and Turbo models only `en`.",
    )

    @field_validator("voice", mode="before")
    @classmethod
    def _one_message_for_any_bad_voice(cls, voice: object) -> object:
        # Checked before the union, so a bad voice gets one message instead of one per union branch.
        reference = voice.get("id") if isinstance(voice, dict) and voice.keys() == {"id"} else voice
        if voice is not None and not (
            isinstance(reference, str) and 1 <= len(reference) <= MAX_VOICE_REF_CHARS
        ):
            raise ValueError(
                f'voice must be a voice name, an id, or {{"id": "<id>"}} (1-{MAX_VOICE_REF_CHARS} characters)'
            )
        return voice

    def generation_options(self) -> dict[str, float]:
        """The knobs the client set, as `Engine.request` keywords (unset ones take the model's defaults)."""
        return self.model_dump(include=set(KNOB_BOUNDS), exclude_none=True)


class VoiceConversionForm(BaseModel):
    """A voice conversion's multipart form: the source speech `file` and how to render it."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    file: UploadFile = Field(description="The speech to convert: any common audio format, ≤ 10 MiB.")
    voice: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_VOICE_REF_CHARS,
        description="Target voice: a library voice's name or id, an OpenAI voice name, or `default`. "
        "Omitted: the model's built-in voice.",
    )
    response_format: ResponseFormat = "mp3"
    speed: Speed = 1.0
    stream_format: StreamFormat = "audio"
    seed: Seed | None = None

    @field_validator("file", mode="before")
    @classmethod
    def _a_file_not_a_text_field(cls, file: object) -> object:
        if not isinstance(file, StarletteUploadFile):
            raise ValueError("file must be an uploaded audio file (a multipart file part, not a text field)")
        return file


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    variant: str | None = Field(None, description="english, multilingual, turbo or nano.")
    version: str | None = Field(None, description="The multilingual release (v2 or v3); null for the others.")
    paralinguistic_tags: list[str] | None = Field(
        None, description="Tags such as [laugh] the model voices (Turbo, Nano); other models drop them."
    )
    languages: dict[str, str] | None = Field(None, description="Language code -> name the model speaks.")
    ignored_parameters: list[str] | None = Field(
        None, description="Request fields this model accepts but has no use for."
    )
    defaults: dict[str, float] | None = Field(
        None,
        description="The value each generation knob the model uses takes when a request leaves it out "
        "(e.g. Turbo top_p 0.95, multilingual v2 repetition_penalty 2.0).",
    )
    dtype: str | None = Field(None, description="The precision the server was asked to run in (DTYPE).")
    stage_dtypes: dict[str, str] | None = Field(
        None,
        description="The precision each stage runs in (t3, s3gen): on a CPU without bfloat16 arithmetic, "
        "dtype bfloat16 runs both in float32 (emulated bf16 would only be slower).",
    )
    chunk_plan: str | None = Field(
        None,
        description="How streamed chunks grow after the first (STREAM_CHUNK_PLAN resolved): realtime or "
        "throughput.",
    )
    continuation_prompt_tokens: int | None = Field(
        None,
        description="Voice prompt tokens streamed windows after a sentence's first render with "
        "(STREAM_CONTINUATION_PROMPT_TOKENS); absent: the whole prompt.",
    )


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class VoiceResource(BaseModel):
    object: Literal["audio.voice"] = "audio.voice"
    id: str
    name: str
    created_at: int
    duration_s: float | None = Field(None, description="Length of the reference clip; null for built-ins.")
    builtin: bool = False


class VoiceList(BaseModel):
    voices: list[VoiceResource]


class VoiceDeleted(BaseModel):
    id: str
    object: Literal["audio.voice.deleted"] = "audio.voice.deleted"
    deleted: Literal[True] = True


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """OpenAI's error body, used for every 4xx and 5xx."""

    error: ErrorDetail


class HealthStatus(BaseModel):
    status: str
    model: str | None = None
    detail: str | None = None
