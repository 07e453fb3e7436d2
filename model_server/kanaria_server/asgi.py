"""Raw ASGI helpers for the handlers that bypass FastAPI: body, headers, response.

Reading the body under a size limit, undoing request compression and parsing
integer headers raise errors of :mod:`kanaria_server.errors` (413 and 400), so
every handler that reads a body refuses the same things in the same words.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from kanaria_server.errors import BadRequestError, ClientGoneError, PayloadTooLargeError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
JSON_TYPE = b"application/json"
BINARY_TYPE = b"application/octet-stream"
REQUEST_ID = "x-request-id"


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
    """A non-negative integer header (a length), else 400 naming the header."""
    text = raw.decode("latin-1").strip()
    if not text.isdigit():
        raise BadRequestError(f"{name} must be a non-negative integer, got {text!r:.40}")
    return int(text)


_HEADER_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")
"""Control characters (CR/LF above all) must not reach a header from a body ``id``."""


def safe_request_id(request_id: str) -> str:
    """``request_id`` fit for a response header: control characters become ``?``."""
    return _HEADER_UNSAFE.sub("?", request_id)


async def send_response(
    send: Send,
    status: int,
    body: bytes,
    request_id: str,
    content_type: bytes = JSON_TYPE,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """One complete response; every answer names its request id."""
    headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        (REQUEST_ID.encode(), safe_request_id(request_id).encode("latin-1", "replace")),
    ]
    if extra:
        headers.extend(extra)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
