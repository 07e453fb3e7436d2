"""Which headers cross the proxy (RFC 9110 section 7.6.1): pure functions."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
"""Headers that describe one connection, never forwarded to the next hop."""

REQUEST_DROP = HOP_BY_HOP | {"host", "content-length"}
"""Request headers the router never copies (the client library sets host and length)."""

RESPONSE_DROP = HOP_BY_HOP | {"content-length", "content-encoding", "server", "date"}
"""Response headers the router never copies (the body is re-sent decoded by aiohttp)."""


def connection_listed(connection: str | None) -> frozenset[str]:
    """Header names listed in a ``Connection`` header: hop-by-hop for this hop too."""
    if not connection:
        return frozenset()
    return frozenset(t.strip().lower() for t in connection.split(",") if t.strip())


def forwardable(
    headers: Iterable[tuple[str, str]], drop: frozenset[str], connection: str | None
) -> list[tuple[str, str]]:
    """Headers to forward: everything except ``drop`` and names listed in ``Connection``."""
    extra = connection_listed(connection)
    return [(k, v) for k, v in headers if (low := k.lower()) not in drop and low not in extra]


def cookie_value(headers: Mapping[str, str], name: str) -> str | None:
    """Value of cookie ``name`` from a ``Cookie`` header, without a full cookie parser."""
    raw = headers.get("Cookie")
    if not raw:
        return None
    for part in raw.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name:
            return value.strip().strip('"')
    return None
