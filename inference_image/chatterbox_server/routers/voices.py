from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Path, UploadFile
from fastapi.responses import Response

from ..dependencies import get_voice_service, require_api_key
from ..schemas import VoiceDeleted, VoiceList, VoiceResource
from ..services.voices import VoiceService

router = APIRouter(prefix="/v1/audio/voices", tags=["voices"], dependencies=[Depends(require_api_key)])

VoiceId = Annotated[str, Path(max_length=200, description="A voice id (voice_...) or `default`.")]


@router.post("", summary="Clone a voice from a reference clip", response_model=VoiceResource)
async def create_voice(
    audio_sample: Annotated[UploadFile, File(description="Reference speech, any common format, ≤ 10 MiB.")],
    # No length rule here: the library's name rule is the one rule (and one message), even for "".
    name: Annotated[
        str,
        Form(description="Display name, unique in the library: 1-64 letters, digits, space, _ . -"),
    ] = "",
    consent: Annotated[
        str | None, Form(max_length=200, description="Accepted for OpenAI compatibility.")
    ] = None,
    voices: VoiceService = Depends(get_voice_service),
) -> VoiceResource:
    sample = await audio_sample.read()
    return await voices.create(name, sample)


@router.get("", summary="List voices", response_model=VoiceList)
async def list_voices(voices: VoiceService = Depends(get_voice_service)) -> VoiceList:
    return VoiceList(voices=await voices.list())


@router.get("/{voice_id}", summary="Get a voice", response_model=VoiceResource)
async def get_voice(voice_id: VoiceId, voices: VoiceService = Depends(get_voice_service)) -> VoiceResource:
    return await voices.get(voice_id)


@router.get(
    "/{voice_id}/sample",
    summary="Download a voice's reference clip",
    response_class=Response,
    responses={200: {"content": {"audio/wav": {"schema": {"type": "string", "format": "binary"}}}}},
)
async def get_voice_sample(voice_id: VoiceId, voices: VoiceService = Depends(get_voice_service)) -> Response:
    disposition = f'attachment; filename="{voice_id}.wav"'  # ids are validated: no quotes or slashes
    return Response(
        await voices.sample(voice_id), media_type="audio/wav", headers={"Content-Disposition": disposition}
    )


@router.delete("/{voice_id}", summary="Delete a voice", response_model=VoiceDeleted)
async def delete_voice(voice_id: VoiceId, voices: VoiceService = Depends(get_voice_service)) -> VoiceDeleted:
    await voices.delete(voice_id)
    return VoiceDeleted(id=voice_id)
