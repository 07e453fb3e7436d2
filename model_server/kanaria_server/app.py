"""The FastAPI application: Open Inference Protocol (V2) REST over one ONNX model version.

``create_app(settings)`` wires the parts together: loading (in the background,
so liveness answers while a large model downloads), the batcher, monitoring,
the prediction log and delayed-label feedback. Every error, from a handler or
from the framework's routing, is answered through
:func:`kanaria_server.errors.answer`, the one mapping of the error model to HTTP
and the V2 error shape. Infer requests are dispatched by
:class:`ModelServerApp` straight to :class:`kanaria_server.infer.InferHandler`
(a bare ASGI handler), before FastAPI's middleware and routing, because that
stack costs more per request than a small model's inference.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, disable_created_metrics, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from kanaria import __version__
from kanaria_server.asgi import (
    REQUEST_ID,
    Receive,
    Scope,
    Send,
    int_header,
    read_body,
    safe_request_id,
)
from kanaria_server.batching import Batcher
from kanaria_server.errors import (
    BadRequestError,
    ErrorAnswer,
    ModelLoadError,
    ServerError,
    answer,
    routing_error,
)
from kanaria_server.feedback import FeedbackStore, parse_feedback
from kanaria_server.infer import InferHandler
from kanaria_server.model import LoadedModel, load_model
from kanaria_server.monitoring import Monitor
from kanaria_server.predlog import PredictionLog
from kanaria_server.profile import load_profile
from kanaria_server.settings import Settings
from kanaria_server.state import ServerState

log = logging.getLogger("kanaria_server")
JSON = "application/json"
EXTENSIONS = ["binary_tensor_data", "kanaria_feedback"]


def _json(doc: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(doc), status_code=status, media_type=JSON, headers=headers)


def _error_response(
    error: ErrorAnswer, request_id: str, headers: Mapping[str, str] | None = None
) -> Response:
    """An :class:`ErrorAnswer` as a FastAPI response naming its request id."""
    out = {**(headers or {}), REQUEST_ID: safe_request_id(request_id)}
    return Response(error.body, status_code=error.status, media_type=JSON, headers=out)


INFER_PATH = re.compile(r"^/v2/models/([^/]+)(?:/versions/([^/]+))?/infer$")


class ModelServerApp(FastAPI):
    """FastAPI app whose infer route bypasses the framework stack (the hot path)."""

    def __init__(self, infer: InferHandler, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.infer = infer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            match = INFER_PATH.match(scope["path"])
            if match is not None:
                await self.infer(scope, receive, send, match.group(1), match.group(2))
                return
        await super().__call__(scope, receive, send)


def create_app(settings: Settings, on_fatal: Callable[[str], None] | None = None) -> FastAPI:
    """Build the app; ``on_fatal`` is called with a message if the model cannot be loaded.

    Without ``on_fatal`` a load failure leaves the server live but never ready
    (``/v2/health/ready`` answers 503 with the reason).
    """
    # *_created series would double the scrape size for no gate's or dashboard's benefit
    disable_created_metrics()  # type: ignore[no-untyped-call]
    monitor = Monitor(settings.name, settings.version, settings.drift_window)
    state = ServerState(
        settings, monitor, FeedbackStore(settings.feedback_capacity, settings.feedback_ttl_s)
    )

    def load() -> tuple[LoadedModel, Any]:
        model = load_model(
            settings.model, settings.sha256, settings.intra_op_threads, settings.download_timeout_s
        )
        profiles = (
            load_profile(settings.reference, model.signature, settings.download_timeout_s)
            if settings.reference
            else None
        )
        return model, profiles

    async def load_in_background() -> None:
        try:
            model, profiles = await asyncio.to_thread(load)
        except ModelLoadError as exc:
            state.load_error = str(exc)
            log.error("cannot serve model %s: %s", settings.name, exc)
            if on_fatal is not None:
                on_fatal(str(exc))
            return
        monitor.bind(model.signature, profiles)
        batcher = Batcher(
            model.run,
            model.signature.batchable,
            settings.max_batch_size,
            settings.max_batch_delay_ms / 1000,
            observe_batch=monitor.observe_batch,
            observe_queue=monitor.queue.observe,
        )
        batcher.start()
        state.model, state.batcher = model, batcher
        monitor.ready.set(1)
        batching = "on" if model.signature.batchable and settings.max_batch_size > 1 else "off"
        log.info(
            "model %s version %s ready (%d inputs, %d outputs, batching %s)",
            settings.name,
            settings.version,
            len(model.signature.inputs),
            len(model.signature.outputs),
            batching,
        )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if settings.log_predictions > 0:
            try:
                state.predlog = PredictionLog(
                    settings.prediction_log,
                    settings.log_predictions,
                    settings.prediction_log_max_values,
                )
            except OSError as exc:
                message = f"cannot open prediction log {settings.prediction_log}: {exc.strerror}"
                state.load_error = message
                log.error("%s", message)
                if on_fatal is not None:
                    on_fatal(message)
        if state.load_error is None:  # nothing to load for a server that is already failing
            task = asyncio.get_running_loop().create_task(load_in_background())
            state.tasks.add(task)
            task.add_done_callback(state.tasks.discard)
        try:
            yield
        finally:
            monitor.ready.set(0)
            for pending in list(state.tasks):
                pending.cancel()
            if state.batcher is not None:
                await state.batcher.close()
            if state.predlog is not None:
                state.predlog.close()

    app = ModelServerApp(
        InferHandler(state),
        title="Kanaria model server",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.kanaria = state

    def request_id(request: Request) -> str:
        return request.headers.get(REQUEST_ID) or state.ids.new()

    async def _error(request: Request, exc: Exception) -> Response:
        """Every exception a route lets through, and the framework's own 404/405."""
        headers = None
        if isinstance(exc, StarletteHTTPException):
            headers = exc.headers  # 405 names the allowed methods
            exc = routing_error(exc.status_code, request.method, request.url.path, exc.detail)
        return _error_response(answer(exc), request_id(request), headers)

    # Starlette looks the first two up by class and answers; a handler for
    # Exception itself runs in its outermost middleware, which re-raises after
    # answering (a second traceback in the log): right for a bug, not for a 404.
    for caught in (ServerError, StarletteHTTPException, Exception):
        app.add_exception_handler(caught, _error)

    @app.get("/v2")
    async def server_metadata() -> Response:
        return _json({"name": "kanaria", "version": __version__, "extensions": EXTENSIONS})

    @app.get("/v2/health/live")
    async def live() -> Response:
        return _json({"live": True})

    @app.get("/v2/health/ready")
    async def ready() -> Response:
        state.check_model(settings.name, None)
        return _json({"ready": True})

    async def model_metadata(request: Request) -> Response:
        p = request.path_params
        model = state.check_model(p["name"], p.get("version"))
        return _json(
            {
                "name": settings.name,
                "versions": [settings.version],
                "platform": "onnxruntime_onnx",
                "inputs": [t.metadata() for t in model.signature.inputs],
                "outputs": [t.metadata() for t in model.signature.outputs],
            }
        )

    async def model_ready(request: Request) -> Response:
        p = request.path_params
        state.check_model(p["name"], p.get("version"))
        return _json({"name": settings.name, "ready": True})

    async def feedback(request: Request) -> Response:
        rid = request_id(request)
        try:
            p = request.path_params
            state.check_model(p["name"], p.get("version"))
            if not monitor.classifiers:
                raise BadRequestError(
                    "feedback needs a classifier output ([batch, classes] float); "
                    "this model has none"
                )
            if state.feedback.capacity <= 0:
                raise BadRequestError("feedback is disabled (feedback_capacity is 0)")
            length = request.headers.get("content-length")
            declared = int_header(length.encode(), "Content-Length") if length else None
            body = await read_body(request.receive, declared, settings.max_body_bytes)
            try:
                doc = orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                raise BadRequestError(f"request body is not valid JSON: {exc}") from exc
            result = state.feedback.score(parse_feedback(doc))
        except Exception as exc:  # answer() sorts the caller's from ours
            error = answer(exc)
            monitor.count_request("feedback", error.status)
            return _error_response(error, rid)
        children = monitor.feedback_children
        if result.correct:
            children["correct"].inc(result.correct)
        if result.incorrect:
            children["incorrect"].inc(result.incorrect)
        if result.unknown:
            children["unknown"].inc(len(result.unknown))
        if result.bands:
            monitor.count_agreement(result.bands)
        monitor.count_request("feedback", 200)
        return _json(result.as_json(), headers={REQUEST_ID: safe_request_id(rid)})

    for prefix in ("/v2/models/{name}", "/v2/models/{name}/versions/{version}"):
        app.router.add_route(prefix, model_metadata, methods=["GET"])
        app.router.add_route(prefix + "/ready", model_ready, methods=["GET"])
        app.router.add_route(prefix + "/feedback", feedback, methods=["POST"])

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(monitor.registry), media_type=CONTENT_TYPE_LATEST)

    return app
