"""Domain errors and the one place that turns them (and framework errors) into OpenAI-shaped JSON."""

from __future__ import annotations

import logging
import re

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger(__name__)


class APIError(Exception):
    """An error a client can act on; rendered as `{"error": {"message", "type", "param", "code"}}`."""

    status_code = 400
    error_type = "invalid_request_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code

    def headers(self) -> dict[str, str]:
        return {}


class InvalidRequest(APIError):
    status_code = 400


class Unauthorized(APIError):
    status_code = 401
    error_type = "authentication_error"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": "Bearer"}


class NotFound(APIError):
    status_code = 404


class Conflict(APIError):
    status_code = 409


class PayloadTooLarge(APIError):
    status_code = 413


class Overloaded(APIError):
    """The queue is full; the client should retry after `retry_after_s`."""

    status_code = 429
    error_type = "rate_limit_error"

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message, code="queue_full")
        self.retry_after_s = retry_after_s

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}


class KeyLimitExceeded(Overloaded):
    """An API key reached one of its limits (api_keys.py); the message names the limit."""

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message, retry_after_s=retry_after_s)
        self.code = "rate_limit_exceeded"


class NotReady(APIError):
    status_code = 503
    error_type = "server_error"

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "5"}


class TimedOut(APIError):
    status_code = 504
    error_type = "timeout_error"


def error_body(message: str, error_type: str, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def _api_error_response(_: Request, error: APIError) -> JSONResponse:
    return JSONResponse(
        error_body(error.message, error.error_type, error.param, error.code),
        status_code=error.status_code,
        headers=error.headers(),
    )


def _validation_error_response(_: Request, error: RequestValidationError) -> JSONResponse:
    # pydantic reports every problem; the first one, with its field path, is the clearest message.
    first = error.errors()[0] if error.errors() else {"loc": (), "msg": "invalid request"}
    if first.get("type") == "json_invalid":
        # FastAPI puts the character position where the field path would be.
        position = next((part for part in first.get("loc", ()) if isinstance(part, int)), None)
        reason = first.get("ctx", {}).get("error")
        detail = f"{reason} at character {position}" if reason and position is not None else reason
        message = "request body is not valid JSON" + (f" ({detail})" if detail else "")
        return JSONResponse(error_body(message, "invalid_request_error"), status_code=400)
    location = [str(part) for part in first.get("loc", ()) if not _is_framework_location(part)]
    param = ".".join(location) or None
    message = first.get("msg", "invalid request").removeprefix("Value error, ")
    if param and not message.startswith(param):
        message = f"{param}: {message}"
    return JSONResponse(error_body(message, "invalid_request_error", param), status_code=400)


def _is_framework_location(part: object) -> bool:
    """Where the field came from, or a pydantic union-branch tag ("constrained-str", "VoiceRef",
    "function-after[...]"): neither is part of the path the client wrote (our field names are snake_case)."""
    if isinstance(part, int):
        return False
    return (
        part in ("body", "query", "path", "form")
        or not re.fullmatch(r"[a-z_][a-z0-9_]*", part)
        or (part in _TYPE_TAGS)
    )


_TYPE_TAGS = frozenset({"str", "int", "float", "bool", "dict", "list", "none", "bytes"})


def _http_error_response(_: Request, error: StarletteHTTPException) -> JSONResponse:
    error_type = "invalid_request_error" if error.status_code < 500 else "server_error"
    return JSONResponse(
        error_body(str(error.detail), error_type), status_code=error.status_code, headers=error.headers
    )


def _unexpected_error_response(_: Request, error: Exception) -> JSONResponse:
    logger.exception("unhandled error", exc_info=error)
    return JSONResponse(error_body("internal server error", "server_error"), status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(APIError, _api_error_response)
    app.add_exception_handler(RequestValidationError, _validation_error_response)
    app.add_exception_handler(StarletteHTTPException, _http_error_response)
    app.add_exception_handler(Exception, _unexpected_error_response)
