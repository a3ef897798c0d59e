from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..dependencies import require_api_key, require_loaded
from ..schemas import MODEL_ALIASES, SERVED_MODEL_ID, HealthStatus, ModelCard, ModelList

router = APIRouter(tags=["system"])
models_router = APIRouter(
    prefix="/v1", tags=["models"], dependencies=[Depends(require_api_key), Depends(require_loaded)]
)


@router.get(
    "/healthz",
    summary="Liveness: the process is up and its engine is not wedged",
    response_model=HealthStatus,
    responses={503: {"model": HealthStatus}},
)
async def healthz(request: Request) -> JSONResponse:
    state = request.app.state
    admission = getattr(state, "admission", None)  # absent while the model loads
    if admission is not None and not state.engine.loop_alive:
        detail = "the engine's loop thread died; requests fail until the server restarts"
        return JSONResponse(HealthStatus(status="dead", detail=detail).model_dump(exclude_none=True), 503)
    if admission is not None and admission.engine_is_stuck(state.engine.loop_busy_s):
        detail = "the engine's loop has been in one step longer than any request may run: it is wedged"
        return JSONResponse(HealthStatus(status="stuck", detail=detail).model_dump(exclude_none=True), 503)
    return JSONResponse(HealthStatus(status="ok").model_dump(exclude_none=True))


@router.get(
    "/readyz",
    summary="Readiness: weights loaded, warmed up, not draining",
    response_model=HealthStatus,
    responses={503: {"model": HealthStatus}},
)
async def readyz(request: Request) -> JSONResponse:
    runtime = request.app.state.runtime
    engine = getattr(request.app.state, "engine", None)
    if runtime.is_ready and engine is not None and not engine.loop_alive:
        body = HealthStatus(status="dead", model=runtime.model_name)
        return JSONResponse(body.model_dump(exclude_none=True), status_code=503)
    body = HealthStatus(status=runtime.readiness, model=runtime.model_name)
    return JSONResponse(body.model_dump(exclude_none=True), status_code=200 if runtime.is_ready else 503)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@models_router.get("/models", summary="List models (OpenAI-compatible)", response_model=ModelList)
async def list_models(request: Request) -> ModelList:
    """The served model and its OpenAI aliases, each with the loaded variant (and version), its languages,
    the paralinguistic tags it voices, the request fields it ignores and its defaults for the others."""
    created = request.app.state.runtime.started_at
    engine = request.app.state.engine
    details = {
        "variant": engine.info.get("variant"),
        "version": engine.info.get("version"),
        "paralinguistic_tags": list(engine.paralinguistic_tags),
        "languages": engine.supported_languages,
        "ignored_parameters": list(engine.ignored_parameters),
        "defaults": engine.knob_defaults,
        "dtype": engine.info.get("dtype"),
        "stage_dtypes": engine.info.get("stage_dtypes"),
        "chunk_plan": engine.info.get("chunk_plan"),
        "continuation_prompt_tokens": engine.info.get("continuation_prompt_tokens"),
    }
    ids = (SERVED_MODEL_ID, *MODEL_ALIASES)
    return ModelList(
        data=[ModelCard(id=model_id, created=created, owned_by="resemble-ai", **details) for model_id in ids]
    )
