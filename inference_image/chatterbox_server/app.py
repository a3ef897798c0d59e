"""Application wiring: lifespan (background load and warm-up, drain), middleware, routers, web UI."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeVar

from fastapi import FastAPI, HTTPException, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .admission import AdmissionControl
from .api_keys import ApiKeys
from .config import Settings
from .engine_adapter import EngineAdapter, ModelLoadError
from .errors import error_body, install_error_handlers
from .metrics import RequestMetricsMiddleware, ServerMetrics
from .routers import conversion, realtime, speech, system, voices
from .schemas import ErrorResponse
from .services.conversion import ConversionService
from .services.speech import ClientGone, SpeechService
from .services.voices import VoiceService
from .voices import VoiceLibrary
from .wyoming_server import start_wyoming_server

logger = logging.getLogger(__name__)
T = TypeVar("T")

_REPO_WEBUI_DIST = Path(__file__).resolve().parents[2] / "webui" / "dist"
# Multipart framing around the largest voice sample.
_BODY_OVERHEAD_BYTES = 1024 * 1024


class Runtime:
    """Lifecycle flags shared by the health routes, the background loader and the SIGTERM handler."""

    def __init__(self) -> None:
        self.started_at = int(time.time())
        self.model_name: str | None = None
        self.loaded = False
        self.failed = False
        self.draining = False
        # Called when loading fails; the CLI stops the server with it (exit status 1).
        self.on_load_failure: Callable[[], None] = lambda: None

    @property
    def is_ready(self) -> bool:
        return self.loaded and not self.draining

    @property
    def readiness(self) -> str:
        if self.draining:
            return "draining"
        if self.failed:
            return "failed"
        return "ready" if self.loaded else "loading"


def load_engine(settings: Settings) -> EngineAdapter:
    """Loads the configured model; raises `ModelLoadError` with a message meant for the operator."""
    return EngineAdapter.load(
        settings.chatterbox_model,
        variant=settings.chatterbox_variant,
        version=settings.chatterbox_model_version,
        device=settings.device,
        dtype=settings.dtype,
        watermark=settings.watermark,
        cache_dir=settings.model_cache_dir,
    )


def create_app(settings: Settings | None = None, engine: EngineAdapter | None = None) -> FastAPI:
    """The ASGI app. It listens at once and loads `engine` (unless given) and warms up in the background;
    until then /readyz is 503 "loading" and the API answers 503 with Retry-After."""
    settings = settings or Settings()
    metrics = ServerMetrics()
    runtime = Runtime()

    async def load_and_warm_up(app: FastAPI) -> None:
        nonlocal engine
        if engine is None:
            engine = await _in_daemon_thread(load_engine, settings)
        library = VoiceLibrary(
            settings.voice_library_dir, load_tensors=engine.load_voice, save_tensors=engine.save_voice
        )
        max_concurrent = settings.max_concurrent or engine.default_max_concurrent
        admission = AdmissionControl(
            max_concurrent=max_concurrent,
            max_queue=settings.max_queue,
            timeout_s=settings.request_timeout_s,
            metrics=metrics,
        )
        app.state.admission = admission
        # The engine's loop runs every admitted request: one T3 batch of up to max_concurrent, and shared
        # S3Gen calls for their streams on a GPU (see EngineAdapter.enable_batching).
        engine.enable_batching(
            max_concurrent,
            on_step=lambda requests, seconds: metrics.record_batch_step(requests=requests, seconds=seconds),
            batch_s3gen=settings.batch_s3gen,
            on_s3gen_batch=metrics.s3gen_batch_size.observe,
            overlap_s3gen=settings.overlap_s3gen,
        )
        engine.use_chunk_plan(settings.stream_chunk_plan, settings.stream_continuation_prompt_tokens)
        app.state.voices = VoiceService(
            library=library, engine=engine, admission=admission, settings=settings
        )
        app.state.engine = engine
        app.state.speech = SpeechService(
            engine=engine, voices=app.state.voices, admission=admission, metrics=metrics
        )
        app.state.conversion = ConversionService(
            engine=engine, voices=app.state.voices, admission=admission, metrics=metrics, settings=settings
        )
        info = engine.info
        metrics.model_info.labels(
            model=str(info.get("model", settings.chatterbox_model)),
            variant=str(info.get("variant", "")),
            device=str(info.get("device", "")),
            dtype=str(info.get("dtype", "")),
        ).set(1)
        metrics.watch(voice_count=lambda: len(library.list()), gpu_memory=engine.gpu_memory_bytes)
        runtime.model_name = settings.chatterbox_model
        if settings.warmup:
            await app.state.speech.warm_up()
        if settings.wyoming_port is not None:
            if app.state.api_keys.enabled:
                logger.warning(
                    "the Wyoming listener (port %d) takes no API key: anyone who reaches that port bypasses "
                    "the keys and their limits; keep it to a trusted network (e.g. a NetworkPolicy)",
                    settings.wyoming_port,
                )
            app.state.wyoming = await start_wyoming_server(
                app.state, settings.api_host, settings.wyoming_port
            )
        runtime.loaded = True
        logger.info("ready: model %s, voices in %s", settings.chatterbox_model, settings.voice_library_dir)

    async def load_in_background(app: FastAPI) -> None:
        try:
            await load_and_warm_up(app)
        except Exception as error:
            if isinstance(error, ModelLoadError):
                logger.error("%s", error)  # written for the operator already; a traceback adds nothing
            else:
                logger.exception("startup failed while loading or warming up the model")
            runtime.failed = True
            runtime.on_load_failure()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Listen at once (liveness answers during a long download); readiness waits for the loader.
        loader = asyncio.create_task(load_in_background(app))
        try:
            yield
        finally:
            runtime.draining = True
            loader.cancel()
            await asyncio.gather(loader, return_exceptions=True)
            wyoming = getattr(app.state, "wyoming", None)
            if wyoming is not None:
                await wyoming.stop()
            if getattr(app.state, "engine", None) is not None:  # uvicorn drained the requests already
                await app.state.engine.close()

    app = FastAPI(
        title="Chatterbox TTS server",
        version="0.1.0",
        description="OpenAI-compatible text-to-speech API serving Resemble AI's Chatterbox.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.runtime = runtime
    app.state.api_keys = ApiKeys(
        inline_keys=settings.api_keys,
        keys_file=settings.api_keys_file,
        limits_file=settings.api_key_limits_file,
        metrics=metrics,
    )
    metrics.ready.set_function(lambda: float(runtime.is_ready))
    install_error_handlers(app)
    app.add_exception_handler(ClientGone, _client_gone)

    routers = (
        system.router,
        system.models_router,
        speech.router,
        realtime.router,
        conversion.router,
        voices.router,
    )
    for router in routers:
        app.include_router(router)
    _serve_webui(app, settings.webui_dir or _REPO_WEBUI_DIST)
    app.openapi = lambda: _openapi_with_openai_errors(app)

    app.add_middleware(BodySizeLimit, max_bytes=settings.max_voice_upload_bytes + _BODY_OVERHEAD_BYTES)
    app.add_middleware(RequestMetricsMiddleware, metrics=metrics)
    return app


async def _in_daemon_thread(function: Callable[..., T], *args: object) -> T:
    """Like asyncio.to_thread, but a SIGTERM during a long download need not wait for it to finish."""
    loop = asyncio.get_running_loop()
    outcome: asyncio.Future[T] = loop.create_future()

    def settle(result: object, error: BaseException | None) -> None:
        if outcome.done():  # cancelled: shutting down
            return
        if error is not None:
            outcome.set_exception(error)
        else:
            outcome.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        try:
            result, error = function(*args), None
        except BaseException as failure:
            result, error = None, failure
        with contextlib.suppress(RuntimeError):  # the loop is closed already
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=run, name="model-loader", daemon=True).start()
    return await outcome


def _openapi_with_openai_errors(app: FastAPI) -> dict:
    """FastAPI documents validation errors as 422; this server answers 400 with OpenAI's error body."""
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        schemas["ErrorResponse"] = ErrorResponse.model_json_schema(
            ref_template="#/components/schemas/{model}"
        )
        schemas.update(schemas["ErrorResponse"].pop("$defs", {}))
        error_content = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
        for operations in schema["paths"].values():
            for operation in operations.values():
                responses = operation.get("responses", {})
                if responses.pop("422", None) is not None:
                    responses["400"] = {"description": "Invalid request", "content": error_content}
        app.openapi_schema = schema
    return app.openapi_schema


def _serve_webui(app: FastAPI, dist: Path) -> None:
    if not (dist / "favicon.ico").is_file():

        @app.get("/favicon.ico", include_in_schema=False)
        async def no_favicon() -> Response:
            # Browsers ask for it on every page; "no content" keeps their consoles free of 404s.
            return Response(status_code=204)

    if (dist / "index.html").is_file():
        app.mount("/", StaticFiles(directory=dist, html=True), name="webui")
        return

    @app.get("/", include_in_schema=False)
    async def index() -> dict:
        return {"service": "chatterbox", "docs": "/docs", "webui": "not built (make run builds it)"}


async def _client_gone(_: Request, __: ClientGone) -> Response:
    # Nobody is listening; 499 (nginx's "client closed request") keeps the metrics honest.
    return Response(status_code=499)


class BodySizeLimit:
    """Refuses oversized bodies with an OpenAI-shaped 413 before they are read or spooled to disk."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            body = error_body(self._message(), "invalid_request_error", code="request_too_large")
            await JSONResponse(body, status_code=413, headers={"Connection": "close"})(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            # Bodies without a Content-Length (chunked uploads) are counted as they arrive.
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # An HTTPException passes through FastAPI's body parsing to the error handlers.
                    raise HTTPException(413, self._message())
            return message

        await self.app(scope, counting_receive, send)

    def _message(self) -> str:
        return f"request body is larger than {self.max_bytes / 2**20:.0f} MiB"
