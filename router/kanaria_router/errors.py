"""The router's error hierarchy, mapped to HTTP in one place.

Every error a client can see carries its status and a message that says what
to change; the handler turns it into the V2 error shape ``{"error": "..."}``.
"""

from __future__ import annotations


class RouterError(Exception):
    """An error answered to the client with ``status`` and a V2 error body."""

    status = 500

    def __init__(self, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class BadRequestError(RouterError):
    """The request itself is wrong (malformed body, unknown override version)."""

    status = 400


class UnauthorizedError(RouterError):
    """A bearer token is required and was missing or wrong."""

    status = 401


class NotFoundError(RouterError):
    """The model, the version in the path, or the route does not exist."""

    status = 404


class PayloadTooLargeError(RouterError):
    """The body exceeds the configured limit."""

    status = 413


class TooManyRequestsError(RouterError):
    """The client's rate limit is exhausted; ``Retry-After`` says when to come back."""

    status = 429


class BadGatewayError(RouterError):
    """A backend answered something the router could not use."""

    status = 502


class UnavailableError(RouterError):
    """No backend could take the request (refused connections, nothing ready)."""

    status = 503


class GatewayTimeoutError(RouterError):
    """The backend did not answer within the configured timeout."""

    status = 504
