from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from ..api_keys import KeyUsage
from ..audio import MEDIA_TYPES
from ..dependencies import admit_speech, get_speech_service, require_api_key
from ..responses import AudioStreamResponse
from ..schemas import SpeechRequest
from ..services.speech import SpeechService

IGNORED_PARAMETERS_HEADER = "X-Chatterbox-Ignored-Parameters"
DROPPED_TAGS_HEADER = "X-Chatterbox-Dropped-Tags"
USAGE_HEADER = "X-Chatterbox-Usage"
router = APIRouter(prefix="/v1", tags=["speech"], dependencies=[Depends(require_api_key)])

_AUDIO_CONTENT = {
    media_type: {"schema": {"type": "string", "format": "binary"}} for media_type in MEDIA_TYPES.values()
}
AUDIO_RESPONSES = {200: {"content": {**_AUDIO_CONTENT, "text/event-stream": {"schema": {"type": "string"}}}}}


@router.post(
    "/audio/speech",
    summary="Generate speech (OpenAI-compatible)",
    response_class=AudioStreamResponse,
    status_code=200,
    responses=AUDIO_RESPONSES,
)
async def create_speech(
    body: SpeechRequest,
    request: Request,
    speech: SpeechService = Depends(get_speech_service),
    key_usage: KeyUsage = Depends(admit_speech),
) -> AudioStreamResponse:
    request.state.response_format = body.response_format
    stream = await speech.start(body, request.is_disconnected, on_end=key_usage.record)
    headers = {USAGE_HEADER: stream.usage_header()}
    # Knobs the client set that the loaded model has no use for (e.g. Turbo: cfg_weight) are reported.
    if stream.ignored_parameters:
        headers[IGNORED_PARAMETERS_HEADER] = ", ".join(stream.ignored_parameters)
    # Paralinguistic tags ([laugh], ...) the loaded model has none of were removed from the text.
    if stream.dropped_tags:
        headers[DROPPED_TAGS_HEADER] = ", ".join(stream.dropped_tags)
    if body.stream_format == "sse":
        return AudioStreamResponse(stream.sse_events(), media_type="text/event-stream", headers=headers)
    return AudioStreamResponse(stream.chunks(), media_type=MEDIA_TYPES[body.response_format], headers=headers)
