from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from ..audio import MEDIA_TYPES
from ..dependencies import get_speech_service, require_api_key
from ..responses import AudioStreamResponse
from ..schemas import SpeechRequest
from ..services.speech import SpeechService

router = APIRouter(prefix="/v1", tags=["speech"], dependencies=[Depends(require_api_key)])

_AUDIO_CONTENT = {
    media_type: {"schema": {"type": "string", "format": "binary"}} for media_type in MEDIA_TYPES.values()
}


@router.post(
    "/audio/speech",
    summary="Generate speech (OpenAI-compatible)",
    response_class=AudioStreamResponse,
    status_code=200,
    responses={200: {"content": {**_AUDIO_CONTENT, "text/event-stream": {"schema": {"type": "string"}}}}},
)
async def create_speech(
    body: SpeechRequest, request: Request, speech: SpeechService = Depends(get_speech_service)
) -> AudioStreamResponse:
    request.state.response_format = body.response_format
    stream = await speech.start(body, request.is_disconnected)
    if body.stream_format == "sse":
        return AudioStreamResponse(stream.sse_events(), media_type="text/event-stream")
    return AudioStreamResponse(stream.chunks(), media_type=MEDIA_TYPES[body.response_format])
