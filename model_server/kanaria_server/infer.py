"""The infer endpoint as a bare ASGI handler: the server's hot path.

Infer requests skip FastAPI's routing and middleware stack (measured: it costs
more per request than onnxruntime on a small model) and are handled here from
the raw ASGI scope: read the body under the size limit, decode and validate with
:mod:`kanaria_server.codec`, queue for the batcher, encode, answer. Every error
goes through :func:`kanaria_server.errors.answer`, the same mapping to status +
``{"error": ...}`` as the other routes.

Request id: the V2 body ``id`` if present, else the ``x-request-id`` header, else
one generated here; it is always returned in the ``x-request-id`` header, which
is what the router forwards and what feedback (delayed labels) matches.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

from kanaria_server.asgi import (
    BINARY_TYPE,
    JSON_TYPE,
    Receive,
    Scope,
    Send,
    decompress,
    int_header,
    read_body,
    send_response,
)
from kanaria_server.automation import (
    CONFIDENCE_HEADER,
    DECISION_HEADER,
    POLICY_HEADER,
    SPOT_CHECK_HEADER,
    band_of,
    confidence_of,
    decide,
    decide_rows,
    least_sure,
    parse_policy,
    row_confidences,
)
from kanaria_server.codec import decode_request, encode_response
from kanaria_server.errors import InjectedFailureError, NotReadyError, answer
from kanaria_server.state import ServerState


class InferHandler:
    """``POST /v2/models/{name}[/versions/{v}]/infer`` over the shared server state."""

    def __init__(self, state: ServerState) -> None:
        self.state = state

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
        raw_declared: bytes | None = None
        raw_header_length: bytes | None = None
        encoding = ""
        raw_policy: bytes | None = None
        monitor.inflight.inc()
        try:
            # all headers first, then what may fail: a 400 still carries the caller's id
            for key, value in scope["headers"]:
                if key == b"x-request-id":
                    header_id = value.decode("latin-1")
                elif key == b"content-length":
                    raw_declared = value
                elif key == b"inference-header-content-length":
                    raw_header_length = value
                elif key == b"content-encoding":
                    encoding = value.decode("latin-1").strip().lower()
                elif key == POLICY_HEADER:
                    raw_policy = value
            declared = None if raw_declared is None else int_header(raw_declared, "Content-Length")
            header_length = (
                None
                if raw_header_length is None
                else int_header(raw_header_length, "Inference-Header-Content-Length")
            )
            policy = None if raw_policy is None else parse_policy(raw_policy)
            model = state.check_model(name, version)
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
            headers = []
            parameters: dict[str, Any] | None = None
            bands: list[str | None] | None = None
            if policy is not None:
                first = monitor.classifiers[0] if monitor.classifiers else None
                draw = random.random() if policy.spot > 0 else 1.0
                per_row = row_confidences(policy, outputs, first) if decoded.rows > 1 else None
                if per_row is None:
                    confidence = confidence_of(policy, outputs, first)
                else:
                    confidence = least_sure(per_row)
                outcome = decide(policy, confidence, draw)
                parameters = {
                    "kanaria_automation": outcome.decision,
                    "kanaria_confidence": outcome.confidence,
                }
                if per_row is not None:
                    parameters["kanaria_automation_rows"] = decide_rows(policy, per_row)
                    parameters["kanaria_confidence_rows"] = per_row
                headers.append((DECISION_HEADER, outcome.decision.encode()))
                if outcome.confidence is not None:
                    headers.append((CONFIDENCE_HEADER, f"{outcome.confidence:.6f}".encode()))
                if outcome.spot_check:
                    parameters["kanaria_spot_check"] = True
                    headers.append((SPOT_CHECK_HEADER, b"true"))
                monitor.count_decision(outcome.decision, outcome.spot_check)
                if outcome.reviewed:  # a reviewer sees every row: each counts in its band
                    bands = [outcome.band] if per_row is None else [band_of(c) for c in per_row]
            payload, json_length = encode_response(
                settings.name, settings.version, decoded.id, selected, parameters
            )
            request_id = request_id or state.ids.new()
            if monitor.classifiers and state.feedback.capacity > 0:
                scores = outputs[monitor.classifiers[0]]
                if scores.ndim == 2:
                    state.feedback.remember(request_id, scores.argmax(axis=1).tolist(), bands)
            elapsed = time.perf_counter() - started
            predlog = state.predlog
            if predlog is not None and predlog.sampled():
                predlog.log(
                    request_id, settings.name, settings.version, decoded.inputs, outputs, elapsed
                )
            if json_length is not None:
                headers.append((b"inference-header-content-length", str(json_length).encode()))
            responded = True
            await send_response(
                send, 200, payload, request_id, BINARY_TYPE if json_length else JSON_TYPE, headers
            )
            monitor.latency.observe(elapsed)
            monitor.count_request("infer", 200)
        except Exception as exc:  # answer() sorts the caller's from ours
            error = answer(exc)
            monitor.count_request("infer", error.status)
            if error.body and not responded:
                monitor.latency.observe(time.perf_counter() - started)
                error_id = request_id or header_id or state.ids.new()
                await send_response(send, error.status, error.body, error_id)
        finally:
            monitor.inflight.dec()
