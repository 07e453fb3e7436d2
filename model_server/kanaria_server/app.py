"""The FastAPI application: Open Inference Protocol (V2) REST over one ONNX model version.

``create_app(settings)`` wires the parts together: loading (in the background,
so liveness answers while a large model downloads), the batcher, monitoring,
the prediction log and delayed-label feedback. Errors from every handler go
through :func:`_error_response`, the one place that maps the error hierarchy to
HTTP and the V2 error shape. Infer requests are dispatched by
:class:`ModelServerApp` straight to :class:`kanaria_server.infer.InferHandler`
(a bare ASGI handler), before FastAPI's middleware and routing, because that
stack costs more per request than a small model's inference.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, disable_created_metrics, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from kanaria import __version__
from kanaria_server.batching import Batcher
from kanaria_server.errors import (
    BadRequestError,
    ModelLoadError,
    ServerError,
)
from kanaria_server.feedback import FeedbackStore, parse_feedback
from kanaria_server.infer import (
    ClientGoneError,
    InferHandler,
    Receive,
    Scope,
    Send,
    check_model,
    int_header,
    read_body,
)
from kanaria_server.model import LoadedModel, load_model
from kanaria_server.monitoring import Monitor
from kanaria_server.predlog import PredictionLog
from kanaria_server.profile import load_profile
from kanaria_server.settings import Settings

log = logging.getLogger("kanaria_server")
JSON = "application/json"
EXTENSIONS = ["binary_tensor_data", "kanaria_feedback"]


@dataclass
class ServerState:
    """What the handlers share: filled in once the model has loaded."""

    settings: Settings
    monitor: Monitor
    feedback: FeedbackStore
    model: LoadedModel | None = None
    batcher: Batcher | None = None
    predlog: PredictionLog | None = None
    load_error: str | None = None
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


def _json(doc: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(doc), status_code=status, media_type=JSON, headers=headers)


def _error_response(exc: ServerError, headers: dict[str, str] | None = None) -> Response:
    """The one mapping of the error hierarchy to HTTP: status from the class, V2 body."""
    return _json({"error": exc.message}, exc.status, headers)


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

    @app.exception_handler(ServerError)
    async def _server_error(_: Request, exc: ServerError) -> Response:
        return _error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            message = f"no route {request.method} {request.url.path}"
        elif exc.status_code == 405:
            message = f"method {request.method} not allowed on {request.url.path}"
        else:
            message = str(exc.detail)
        return _json({"error": message}, exc.status_code)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> Response:
        log.exception("unexpected error")
        return _json({"error": f"internal error: {type(exc).__name__}"}, 500)

    @app.get("/v2")
    async def server_metadata() -> Response:
        return _json({"name": "kanaria", "version": __version__, "extensions": EXTENSIONS})

    @app.get("/v2/health/live")
    async def live() -> Response:
        return _json({"live": True})

    @app.get("/v2/health/ready")
    async def ready() -> Response:
        check_model(state, settings.name, None)
        return _json({"ready": True})

    async def model_metadata(request: Request) -> Response:
        p = request.path_params
        model = check_model(state, p["name"], p.get("version"))
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
        check_model(state, p["name"], p.get("version"))
        return _json({"name": settings.name, "ready": True})

    async def feedback(request: Request) -> Response:
        request_id = request.headers.get("x-request-id") or app.infer.new_request_id()
        headers = {"x-request-id": request_id}
        try:
            p = request.path_params
            check_model(state, p["name"], p.get("version"))
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
        except ServerError as exc:
            monitor.count_request("feedback", exc.status)
            return _error_response(exc, headers)
        except ClientGoneError:  # nobody to answer; 499 as nginx logs it
            monitor.count_request("feedback", 499)
            return Response(status_code=499)
        children = monitor.feedback_children
        if result.correct:
            children["correct"].inc(result.correct)
        if result.incorrect:
            children["incorrect"].inc(result.incorrect)
        if result.unknown:
            children["unknown"].inc(len(result.unknown))
        monitor.count_request("feedback", 200)
        return _json(result.as_json(), headers=headers)

    for prefix in ("/v2/models/{name}", "/v2/models/{name}/versions/{version}"):
        app.router.add_route(prefix, model_metadata, methods=["GET"])
        app.router.add_route(prefix + "/ready", model_ready, methods=["GET"])
        app.router.add_route(prefix + "/feedback", feedback, methods=["POST"])

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(monitor.registry), media_type=CONTENT_TYPE_LATEST)

    return app
