"""Application wiring: lifespan (load, warm up, drain), middleware, routers, web UI."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

from .config import Settings
from .engine_adapter import EngineAdapter
from .errors import install_error_handlers
from .metrics import RequestMetricsMiddleware, ServerMetrics
from .routers import speech, system, voices
from .scheduler import Scheduler
from .services.speech import ClientGone, SpeechService
from .services.voices import VoiceService
from .voices import VoiceLibrary

logger = logging.getLogger(__name__)

_REPO_WEBUI_DIST = Path(__file__).resolve().parents[2] / "webui" / "dist"
# Multipart framing around the largest voice sample.
_BODY_OVERHEAD_BYTES = 1024 * 1024


class Runtime:
    """Lifecycle flags shared by the health routes, the lifespan and the SIGTERM handler."""

    def __init__(self) -> None:
        self.started_at = int(time.time())
        self.model_name: str | None = None
        self.loaded = False
        self.draining = False

    @property
    def is_ready(self) -> bool:
        return self.loaded and not self.draining

    @property
    def readiness(self) -> str:
        if self.draining:
            return "draining"
        return "ready" if self.loaded else "loading"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    metrics = ServerMetrics()
    runtime = Runtime()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = await asyncio.to_thread(
            EngineAdapter.load,
            settings.chatterbox_model,
            device=settings.device,
            dtype=settings.dtype,
            watermark=settings.watermark,
            cache_dir=settings.model_cache_dir,
        )
        library = VoiceLibrary(
            settings.voice_library_dir, load_tensors=engine.load_voice, save_tensors=engine.save_voice
        )
        scheduler = Scheduler(
            max_concurrent=settings.max_concurrent,
            max_queue=settings.max_queue,
            timeout_s=settings.request_timeout_s,
            metrics=metrics,
        )
        app.state.voices = VoiceService(
            library=library, engine=engine, scheduler=scheduler, settings=settings
        )
        app.state.speech = SpeechService(
            engine=engine, voices=app.state.voices, scheduler=scheduler, metrics=metrics, settings=settings
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
        runtime.loaded = True
        metrics.ready.set_function(lambda: float(runtime.is_ready))
        logger.info("ready: model %s, voices in %s", settings.chatterbox_model, settings.voice_library_dir)
        try:
            yield
        finally:
            runtime.draining = True
            scheduler.shutdown()

    app = FastAPI(
        title="Chatterbox TTS server",
        version="0.1.0",
        description="OpenAI-compatible text-to-speech API serving Resemble AI's Chatterbox.",
        lifespan=lifespan,
        # Refuses oversized bodies (voice uploads) with 413 before they are read.
        max_body_size=settings.max_voice_upload_bytes + _BODY_OVERHEAD_BYTES,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.runtime = runtime
    install_error_handlers(app)
    app.add_exception_handler(ClientGone, _client_gone)

    for router in (system.router, system.models_router, speech.router, voices.router):
        app.include_router(router)
    _serve_webui(app, settings.webui_dir or _REPO_WEBUI_DIST)

    app.add_middleware(RequestMetricsMiddleware, metrics=metrics)
    return app


def _serve_webui(app: FastAPI, dist: Path) -> None:
    if (dist / "index.html").is_file():
        app.mount("/", StaticFiles(directory=dist, html=True), name="webui")
        return

    @app.get("/", include_in_schema=False)
    async def index() -> dict:
        return {"service": "chatterbox", "docs": "/docs", "webui": "not built (make run builds it)"}


async def _client_gone(_: Request, __: ClientGone) -> Response:
    # Nobody is listening; 499 (nginx's "client closed request") keeps the metrics honest.
    return Response(status_code=499)
