"""The router's error hierarchy, mapped to HTTP in one place.

Every error a client can see carries its status and a message that says what
to change; the handler turns it into the V2 error shape ``{"error": "..."}``
(:func:`error_response`, the one place that body is built).
What a failed forward to a backend leads to (send it elsewhere, or which error)
is the table :data:`FORWARD_FAILURES`, read by the proxy in one place.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

import aiohttp
import orjson
from aiohttp import web


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    """The one V2 error body ``{"error": ...}`` the router answers, with ``status``."""
    return web.Response(
        status=status,
        body=orjson.dumps({"error": message}),
        content_type="application/json",
        headers=headers,
    )


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


class ForwardFailure(StrEnum):
    """How sending a request to a backend failed, as far as the next move goes."""

    REFUSED = "refused"
    """No connection, or it dropped before an answer: the backend did not process it."""
    CONNECT_TIMEOUT = "connect-timeout"
    """The connection was not accepted in time: a wedged backend, also not processed."""
    TIMEOUT = "timeout"
    """Connected but no full answer in time: the backend may have processed it."""
    BROKEN = "broken"
    """An answer the router cannot use (malformed, cut short)."""


@dataclass(frozen=True)
class ForwardRule:
    """What one kind of failure leads to.

    ``retry``: safe to send once more to another ready weighted version (a pinned
    request stays on its version), because the backend did not process it and
    predictions are idempotent. ``eject``: skip the version in weighted routing
    for ``eject_s``, so later requests do not each pay the timeout. ``error`` and
    ``reason`` (a format string over ``model``, ``version``, ``tried``, ``exc`` and
    ``timeout``): the client's answer once no retry is left.
    """

    retry: bool
    eject: bool
    error: type[RouterError]
    reason: str


_UNREACHABLE = "model {model!r}: version(s) {tried} unreachable: {exc}"
FORWARD_FAILURES: Mapping[ForwardFailure, ForwardRule] = MappingProxyType(
    {
        ForwardFailure.REFUSED: ForwardRule(True, False, UnavailableError, _UNREACHABLE),
        ForwardFailure.CONNECT_TIMEOUT: ForwardRule(True, True, UnavailableError, _UNREACHABLE),
        ForwardFailure.TIMEOUT: ForwardRule(
            False,
            False,
            GatewayTimeoutError,
            "version {version!r} of model {model!r} did not answer within {timeout:g}s",
        ),
        ForwardFailure.BROKEN: ForwardRule(
            False,
            False,
            BadGatewayError,
            "version {version!r} of model {model!r} sent a broken answer: {exc}",
        ),
    }
)
"""The one retry table: every way a forward fails, and what follows."""

FORWARD_ERRORS = (aiohttp.ClientError, TimeoutError)
"""The exceptions :func:`forward_failure` sorts; anything else is a bug of the router."""


def forward_failure(exc: aiohttp.ClientError | TimeoutError) -> ForwardFailure:
    """The kind of a failed forward (order matters: a connect timeout is also a TimeoutError)."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return ForwardFailure.CONNECT_TIMEOUT
    if isinstance(exc, aiohttp.ClientOSError | aiohttp.ServerDisconnectedError):
        return ForwardFailure.REFUSED
    if isinstance(exc, TimeoutError):
        return ForwardFailure.TIMEOUT
    return ForwardFailure.BROKEN
