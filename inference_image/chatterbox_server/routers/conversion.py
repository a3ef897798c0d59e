from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request

from ..api_keys import KeyUsage
from ..audio import MEDIA_TYPES
from ..dependencies import admit_conversion, get_conversion_service, require_api_key
from ..responses import AudioStreamResponse
from ..schemas import VoiceConversionForm
from ..services.conversion import ConversionService
from .speech import AUDIO_RESPONSES, USAGE_HEADER

router = APIRouter(prefix="/v1", tags=["voice conversion"], dependencies=[Depends(require_api_key)])


@router.post(
    "/audio/voice-conversion",
    summary="Speak a recording again in another voice",
    response_class=AudioStreamResponse,
    status_code=200,
    responses=AUDIO_RESPONSES,
)
async def convert_voice(
    request: Request,
    form: Annotated[VoiceConversionForm, Form()],
    conversion: ConversionService = Depends(get_conversion_service),
    key_usage: KeyUsage = Depends(admit_conversion),
) -> AudioStreamResponse:
    request.state.response_format = form.response_format
    stream = await conversion.start(
        await form.file.read(), form, request.is_disconnected, on_end=key_usage.record
    )
    headers = {USAGE_HEADER: stream.usage_header()}
    if form.stream_format == "sse":
        return AudioStreamResponse(stream.sse_events(), media_type="text/event-stream", headers=headers)
    return AudioStreamResponse(stream.chunks(), media_type=MEDIA_TYPES[form.response_format], headers=headers)
