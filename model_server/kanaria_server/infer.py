"""The infer endpoint as a bare ASGI handler: the server's hot path.

Infer requests skip FastAPI's routing and middleware stack (measured: it costs
more per request than onnxruntime on a small model) and are handled here from
the raw ASGI scope: read the body under the size limit, decode and validate with
:mod:`kanaria_server.codec`, queue for the batcher, encode, answer. Every error
goes through the same mapping to status + ``{"error": ...}`` as the other routes.

Request id: the V2 body ``id`` if present, else the ``x-request-id`` header, else
one generated here; it is always returned in the ``x-request-id`` header, which
is what the router forwards and what feedback (delayed labels) matches.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import re
import time
import uuid
import zlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

import orjson

from kanaria_server.codec import decode_request, encode_response
from kanaria_server.errors import (
    BadRequestError,
    InjectedFailureError,
    NotFoundError,
    NotReadyError,
    PayloadTooLargeError,
    ServerError,
)

if TYPE_CHECKING:
    from kanaria_server.app import ServerState
    from kanaria_server.model import LoadedModel

log = logging.getLogger("kanaria_server")
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
JSON_TYPE = b"application/json"
BINARY_TYPE = b"application/octet-stream"


class ClientGoneError(Exception):
    """The client disconnected before sending the whole body: nothing to answer."""


def check_model(state: ServerState, name: str, version: str | None) -> LoadedModel:
    """The model if ``name``/``version`` are the ones served and it is ready, else 404/503."""
    s = state.settings
    if name != s.name:
        raise NotFoundError(f"unknown model {name!r}; this server serves {s.name!r}")
    if version is not None and version != s.version:
        raise NotFoundError(
            f"model {name!r} has no version {version!r}; this server serves version {s.version!r}"
        )
    if state.model is None or state.batcher is None:
        reason = state.load_error or "loading and warming up"
        raise NotReadyError(f"model {name!r} is not ready: {reason}")
    return state.model


async def read_body(receive: Receive, declared: int | None, limit: int) -> bytes:
    """The whole request body, refusing (413) anything over ``limit`` bytes."""
    if declared is not None and declared > limit:
        raise PayloadTooLargeError(
            f"request body of {declared} bytes exceeds the {limit}-byte limit (max_body_bytes)"
        )
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGoneError
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise PayloadTooLargeError(
                    f"request body exceeds the {limit}-byte limit (max_body_bytes)"
                )
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def decompress(body: bytes, encoding: str, limit: int) -> bytes:
    """Undo gzip/deflate request compression (Triton clients offer it), bounded by ``limit``.

    The bound applies to the decompressed size, so a small compressed body cannot
    expand into gigabytes (a "zip bomb") before validation.
    """
    if encoding == "gzip":
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    elif encoding == "deflate":
        inflater = zlib.decompressobj()
    else:
        raise BadRequestError(
            f"unsupported Content-Encoding {encoding!r} (supported: gzip, deflate, identity)"
        )
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise BadRequestError(f"request body is not valid {encoding} data: {exc}") from exc
    if len(out) > limit or inflater.unconsumed_tail:
        raise PayloadTooLargeError(
            f"decompressed request body exceeds the {limit}-byte limit (max_body_bytes)"
        )
    if not inflater.eof:
        raise BadRequestError(f"request body is truncated {encoding} data")
    return out


def int_header(raw: bytes, name: str) -> int:
    text = raw.decode("latin-1").strip()
    if not text.isdigit():
        raise BadRequestError(f"{name} must be a non-negative integer, got {text!r:.40}")
    return int(text)


class InferHandler:
    """``POST /v2/models/{name}[/versions/{v}]/infer`` over the shared server state."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self._id_prefix = uuid.uuid4().hex[:12]
        self._ids = itertools.count(1)

    def new_request_id(self) -> str:
        """Unique per process (counter) and across replicas (random prefix); cheap."""
        return f"{self._id_prefix}-{next(self._ids)}"

    async def __call__(
        self, scope: Scope, receive: Receive, send: Send, name: str, version: str | None
    ) -> None:
        state = self.state
        settings = state.settings
        monitor = state.monitor
        started = time.perf_counter()
        header_id: str | None = None
        request_id: str | None = None
        responded = False
        declared: int | None = None
        header_length: int | None = None
        encoding = ""
        monitor.inflight.inc()
        try:
            try:
                for key, value in scope["headers"]:
                    if key == b"x-request-id":
                        header_id = value.decode("latin-1")
                    elif key == b"content-length":
                        declared = int_header(value, "Content-Length")
                    elif key == b"inference-header-content-length":
                        header_length = int_header(value, "Inference-Header-Content-Length")
                    elif key == b"content-encoding":
                        encoding = value.decode("latin-1").strip().lower()
                model = check_model(state, name, version)
                body = await read_body(receive, declared, settings.max_body_bytes)
                if encoding not in ("", "identity"):
                    body = decompress(body, encoding, settings.max_body_bytes)
                decoded = decode_request(body, header_length, model.signature)
                request_id = decoded.id or header_id
                if settings.chaos_latency_ms > 0:
                    await asyncio.sleep(settings.chaos_latency_ms / 1000)
                if settings.chaos_error_rate > 0 and random.random() < settings.chaos_error_rate:
                    raise InjectedFailureError("injected failure (chaos_error_rate)")
                batcher = state.batcher
                if batcher is None:  # unloaded between the check and now: shutting down
                    raise NotReadyError("server is shutting down")
                outputs = await batcher.submit(decoded.inputs, decoded.rows)
                selected = [
                    (o, spec, outputs[o.name])
                    for o in decoded.outputs
                    if (spec := model.signature.output(o.name)) is not None
                ]
                payload, json_length = encode_response(
                    settings.name, settings.version, decoded.id, selected
                )
            except ServerError as exc:
                monitor.count_request("infer", exc.status)
                monitor.latency.observe(time.perf_counter() - started)
                error_id = request_id or header_id or self.new_request_id()
                await _send(send, exc.status, orjson.dumps({"error": exc.message}), error_id)
                return
            except ClientGoneError:
                monitor.count_request("infer", 499)
                return
            request_id = request_id or self.new_request_id()
            if monitor.classifiers and state.feedback.capacity > 0:
                scores = outputs[monitor.classifiers[0]]
                if scores.ndim == 2:
                    state.feedback.remember(request_id, scores.argmax(axis=1).tolist())
            elapsed = time.perf_counter() - started
            predlog = state.predlog
            if predlog is not None and predlog.sampled():
                predlog.log(
                    request_id, settings.name, settings.version, decoded.inputs, outputs, elapsed
                )
            headers = []
            if json_length is not None:
                headers.append((b"inference-header-content-length", str(json_length).encode()))
            responded = True
            await _send(
                send, 200, payload, request_id, BINARY_TYPE if json_length else JSON_TYPE, headers
            )
            monitor.latency.observe(elapsed)
            monitor.count_request("infer", 200)
        except Exception as exc:  # a bug, not the caller's fault: answer 500 and log it
            log.exception("infer failed unexpectedly")
            monitor.count_request("infer", 500)
            if not responded:
                body = orjson.dumps({"error": f"internal error: {type(exc).__name__}"})
                await _send(send, 500, body, request_id or header_id or self.new_request_id())
        finally:
            monitor.inflight.dec()


_HEADER_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")
"""Control characters (CR/LF above all) must not reach a header from a body ``id``."""


async def _send(
    send: Send,
    status: int,
    body: bytes,
    request_id: str,
    content_type: bytes = JSON_TYPE,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", _HEADER_UNSAFE.sub("?", request_id).encode("latin-1", "replace")),
    ]
    if extra:
        headers.extend(extra)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
