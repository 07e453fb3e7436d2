"""The model server's error hierarchy: every failure a caller can see, with its HTTP status.

Handlers raise these; :func:`kanaria_server.app.create_app` maps them to the V2
error shape ``{"error": "..."}`` in one place, so a caller's mistake can never
surface as a 500 by accident and every message is written once, here or at the
raise site.
"""

from __future__ import annotations


class ServerError(Exception):
    """Base class: ``status`` is the HTTP status code the caller receives."""

    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequestError(ServerError):
    """The request does not match the protocol or the model signature (400)."""

    status = 400


class NotFoundError(ServerError):
    """Unknown model name, version or route (404)."""

    status = 404


class PayloadTooLargeError(ServerError):
    """The body is larger than ``max_body_bytes`` (413)."""

    status = 413


class NotReadyError(ServerError):
    """The model is still loading or warming up, or the server is draining (503)."""

    status = 503


class InferenceFailedError(ServerError):
    """onnxruntime failed on a request that passed validation (400).

    The batcher retries a failed batch one request at a time, so this reaches only
    the request whose values onnxruntime rejects (an index out of range, say):
    a property of the input that no signature check can see, hence a 400.
    """

    status = 400


class InjectedFailureError(ServerError):
    """A failure injected on purpose by ``chaos_error_rate`` (a testing aid, 500)."""

    status = 500


class ModelLoadError(Exception):
    """The model (or its reference profile) cannot be loaded: the server must not start.

    Not an HTTP error: it ends the process with a clear message and a non-zero exit.
    """
