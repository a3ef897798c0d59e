"""FastAPI dependencies: the services on app.state, API-key authentication and per-key limits."""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from .api_keys import ApiKeys, KeyUsage
from .errors import NotReady
from .schemas import SpeechRequest
from .services.conversion import ConversionService
from .services.speech import SpeechService
from .services.voices import VoiceService

_bearer = HTTPBearer(auto_error=False, description="One of the server's API keys (when API_KEYS is set).")


def require_loaded(request: Request) -> None:
    """The model's routes answer 503 (with Retry-After) until the background load and warm-up are done."""
    runtime = request.app.state.runtime
    if runtime.failed:
        raise NotReady("the model failed to load; see the server log", code="model_load_failed")
    if not runtime.loaded:
        raise NotReady(
            "the model is still loading; retry shortly (GET /readyz says when)", code="model_loading"
        )


def get_speech_service(request: Request, _: None = Depends(require_loaded)) -> SpeechService:
    return request.app.state.speech


def get_conversion_service(request: Request, _: None = Depends(require_loaded)) -> ConversionService:
    return request.app.state.conversion


def get_voice_service(request: Request, _: None = Depends(require_loaded)) -> VoiceService:
    return request.app.state.voices


async def require_api_key(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)
) -> str | None:
    """The caller's key name (None when the server has no keys); 401 for a missing or unknown key."""
    keys: ApiKeys = request.app.state.api_keys
    name = keys.authenticate(credentials.credentials if credentials is not None else "")
    if name is not None:
        request.state.api_key_name = name  # for the per-key request and error counters (metrics.py)
    return name


async def admit_speech(
    request: Request,
    body: SpeechRequest,
    key_name: str | None = Depends(require_api_key),
    _: None = Depends(require_loaded),
) -> AsyncIterator[KeyUsage]:
    """Counts a speech request against its key's limits (429 when one is reached) and holds the key's
    concurrency place until the response's last byte is sent or the client is gone."""
    async for usage in _held_key_usage(request, key_name, input_characters=len(body.input)):
        yield usage


async def admit_conversion(
    request: Request, key_name: str | None = Depends(require_api_key), _: None = Depends(require_loaded)
) -> AsyncIterator[KeyUsage]:
    """As `admit_speech`, for a voice conversion: its input is audio, so it counts no input characters."""
    async for usage in _held_key_usage(request, key_name, input_characters=0):
        yield usage


async def _held_key_usage(
    request: Request, key_name: str | None, *, input_characters: int
) -> AsyncIterator[KeyUsage]:
    usage = request.app.state.api_keys.admit(key_name, input_characters=input_characters)
    try:
        yield usage
    finally:
        usage.release()
