"""FastAPI dependencies: the services on app.state, and API-key authentication."""

from __future__ import annotations

import hmac

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from .config import Settings
from .errors import NotReady, Unauthorized
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


def get_voice_service(request: Request, _: None = Depends(require_loaded)) -> VoiceService:
    return request.app.state.voices


def require_api_key(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)
) -> None:
    settings: Settings = request.app.state.settings
    if not settings.auth_enabled:
        return
    offered = credentials.credentials if credentials is not None else ""
    if not offered:
        raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'", code="missing_api_key")
    # Compare against every key in constant time, so timing reveals nothing about which was close.
    matches = [hmac.compare_digest(offered.encode(), key.encode()) for key in settings.allowed_api_keys()]
    if not any(matches):
        raise Unauthorized("invalid API key", code="invalid_api_key")
