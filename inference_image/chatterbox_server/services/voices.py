"""Voice cloning and lookup: validates uploads, embeds them once (in a thread, holding an admission slot), resolves request voices."""

from __future__ import annotations

import asyncio
from typing import Any

from ..admission import AdmissionControl
from ..audio import decode_upload, wav_bytes
from ..config import Settings
from ..engine_adapter import EngineAdapter
from ..errors import InvalidRequest, NotFound, PayloadTooLarge
from ..schemas import VoiceRef, VoiceResource
from ..voices import DEFAULT_VOICE_ID, VoiceLibrary, VoiceRecord, validate_voice_name


class VoiceService:
    def __init__(self, *, library: VoiceLibrary, engine: EngineAdapter, admission: AdmissionControl,
                 settings: Settings) -> None:  # fmt: skip
        self._library = library
        self._engine = engine
        self._admission = admission
        self._settings = settings

    # Lookup ----------------------------------------------------------------------------------------

    async def resolve(self, voice: str | VoiceRef | None) -> Any:
        """The engine voice for a request's `voice` field (name, id, OpenAI alias or {"id": ...})."""
        if voice is None:
            return self._engine.default_voice
        wanted = voice.id if isinstance(voice, VoiceRef) else voice
        record = await asyncio.to_thread(self._find, wanted)
        if record == DEFAULT_VOICE_ID:
            return self._engine.default_voice
        return await asyncio.to_thread(self._library.tensors, record)

    def _find(self, wanted: str) -> VoiceRecord | str:
        if wanted == DEFAULT_VOICE_ID:
            return DEFAULT_VOICE_ID
        record = self._library.find(wanted)
        if record is not None:
            return record
        alias_target = self._settings.voice_aliases.get(wanted)
        if alias_target is not None:
            if alias_target == DEFAULT_VOICE_ID:
                return DEFAULT_VOICE_ID
            record = self._library.find(alias_target)
            if record is None:
                raise InvalidRequest(
                    f"voice {wanted!r} maps to {alias_target!r} (VOICE_ALIASES), which is not in the library",
                    param="voice",
                    code="voice_not_found",
                )
            return record
        raise InvalidRequest(
            f"voice {wanted!r} not found; GET /v1/audio/voices lists the available voices",
            param="voice",
            code="voice_not_found",
        )

    # Library API -----------------------------------------------------------------------------------

    async def list(self) -> list[VoiceResource]:
        records = await asyncio.to_thread(self._library.list)
        return [self._builtin()] + [_resource(record) for record in records]

    async def get(self, voice_id: str) -> VoiceResource:
        if voice_id == DEFAULT_VOICE_ID:
            return self._builtin()
        return _resource(await asyncio.to_thread(self._library.get, voice_id))

    async def sample(self, voice_id: str) -> bytes:
        """The reference clip as WAV bytes (clips are capped in length, so they fit in memory)."""
        if voice_id == DEFAULT_VOICE_ID:
            raise NotFound("the built-in voice has no reference sample", param="voice_id")
        return await asyncio.to_thread(self._library.reference_wav, voice_id)

    async def delete(self, voice_id: str) -> None:
        if voice_id == DEFAULT_VOICE_ID:
            raise InvalidRequest("the built-in voice cannot be deleted", param="voice_id")
        await asyncio.to_thread(self._library.delete, voice_id)

    async def create(self, name: str, sample: bytes) -> VoiceResource:
        """Clones a voice from a reference clip; the embedding is computed here, once."""
        validate_voice_name(name)
        await asyncio.to_thread(self._library.ensure_name_free, name)
        limit = self._settings.max_voice_upload_bytes
        if len(sample) > limit:
            raise PayloadTooLarge(
                f"audio_sample is {len(sample) / 2**20:.1f} MiB; the limit is {limit / 2**20:g} MiB",
                param="audio_sample",
            )
        if not sample:
            raise InvalidRequest("audio_sample is empty", param="audio_sample")
        audio, sample_rate = await asyncio.to_thread(
            decode_upload, sample, max_seconds=self._settings.max_voice_seconds
        )
        duration_s = audio.size / sample_rate
        async with self._admission.admit().slot():
            voice_tensors = await asyncio.to_thread(self._engine.embed_voice, audio, sample_rate)
        record = await asyncio.to_thread(
            self._library.add,
            name,
            voice_tensors,
            wav_bytes(audio, sample_rate),
            duration_s=duration_s,
            sample_rate=sample_rate,
        )
        return _resource(record)

    def _builtin(self) -> VoiceResource:
        return VoiceResource(id=DEFAULT_VOICE_ID, name=DEFAULT_VOICE_ID, created_at=0, builtin=True)


def _resource(record: VoiceRecord) -> VoiceResource:
    return VoiceResource(
        id=record.id, name=record.name, created_at=record.created_at, duration_s=record.duration_s
    )
