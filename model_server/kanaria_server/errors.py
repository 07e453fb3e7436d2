"""The model server's one error model: every failure a caller can see, grouped by
what the caller can do about it, and the one mapping to HTTP and the V2 body.

Three groups, the way an HTTP client library sorts what it receives:

- :class:`RequestError` (4xx): change the request. Sending it again unchanged
  gets the same answer, so a router or client must not retry it.
- :class:`UnavailableError` (503): retry the same request later or on another
  replica; nothing is wrong with it.
- :class:`InternalError` (500): not the caller's fault. Either injected on
  purpose (``chaos_error_rate``) or a bug, which :func:`answer` logs with its
  traceback; the caller only learns the exception's type.

Handlers raise these; :func:`answer` is the one place that turns any exception
into a status and the V2 error body ``{"error": "..."}``, for the bare ASGI infer
handler and the FastAPI routes alike, so a caller's mistake never surfaces as a
500 by accident and the body has one shape everywhere.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import orjson

log = logging.getLogger("kanaria_server")

CLIENT_GONE = 499
"""Status counted (as nginx logs it) when the client left before its answer: none is sent."""


class ServerError(Exception):
    """Base class: ``status`` is the HTTP status code the caller receives.

    The class sets it; ``status`` given to the constructor overrides it, for the
    framework's refusals whose code has no class of its own.
    """

    status = 500

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status


class RequestError(ServerError):
    """The caller must change the request (4xx); retrying it unchanged cannot help."""

    status = 400


class BadRequestError(RequestError):
    """The request does not match the protocol or the model signature (400)."""


class NotFoundError(RequestError):
    """Unknown model name, version or route (404)."""

    status = 404


class MethodNotAllowedError(RequestError):
    """The route exists but not for this HTTP method (405)."""

    status = 405


class PayloadTooLargeError(RequestError):
    """The body is larger than ``max_body_bytes`` (413)."""

    status = 413


class InferenceFailedError(RequestError):
    """onnxruntime failed on a request that passed validation (400).

    The batcher retries a failed batch one request at a time, so this reaches only
    the request whose values onnxruntime rejects (an index out of range, say):
    a property of the input that no signature check can see, hence a 400.
    """


class UnavailableError(ServerError):
    """The caller may retry the same request later or on another replica (503)."""

    status = 503


class NotReadyError(UnavailableError):
    """The model is still loading or warming up, or the server is draining (503)."""


class InternalError(ServerError):
    """Not the caller's fault (500)."""


class InjectedFailureError(InternalError):
    """A failure injected on purpose by ``chaos_error_rate`` (a testing aid, 500)."""


class ClientGoneError(Exception):
    """The client disconnected before sending the whole body: nothing to answer."""


class ModelLoadError(Exception):
    """The model (or its reference profile) cannot be loaded: the server must not start.

    Not an HTTP error: it ends the process with a clear message and a non-zero exit.
    """


@dataclass(frozen=True, slots=True)
class ErrorAnswer:
    """What a failed request gets: its status and V2 body (empty: the client is gone)."""

    status: int
    body: bytes


def v2_body(message: str) -> bytes:
    """The V2 error body; the only place it is built."""
    return orjson.dumps({"error": message})


def answer(exc: BaseException) -> ErrorAnswer:
    """The status and body for any exception a handler let through.

    Errors of the hierarchy keep their status and message. Anything else is a
    bug: logged here with its traceback, answered 500 naming only its type, so
    no traceback or internal detail reaches the caller.
    """
    if isinstance(exc, ServerError):
        return ErrorAnswer(exc.status, v2_body(exc.message))
    if isinstance(exc, ClientGoneError):
        return ErrorAnswer(CLIENT_GONE, b"")
    log.error("unexpected error", exc_info=exc)
    return ErrorAnswer(500, v2_body(f"internal error: {type(exc).__name__}"))


def routing_error(status: int, method: str, path: str, detail: str) -> ServerError:
    """The framework's own refusals (no such route, wrong method) as errors of the hierarchy."""
    if status == 404:
        return NotFoundError(f"no route {method} {path}")
    if status == 405:
        return MethodNotAllowedError(f"method {method} not allowed on {path}")
    if 400 <= status < 500:
        return RequestError(detail, status)
    return InternalError(detail, status)
