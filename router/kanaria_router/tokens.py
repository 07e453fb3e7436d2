"""Accepted bearer tokens: one parser for the environment value and the tokens file.

A Kubernetes Secret's ``tokens`` key is written by people, "one token per line";
the environment variable has long been comma-separated. Both forms (and a mix,
and Windows line ends, and stray blanks) mean the same list here, so a token
never silently becomes "the whole file". Tokens cannot contain whitespace or
commas: ``Authorization: Bearer <token>`` would not carry them intact anyway.
"""

from __future__ import annotations

import re
from pathlib import Path

from kanaria_router.sources import read_text_file

TOKENS_FILE = "bearer tokens"
"""What the tokens file is called in messages."""

_SEPARATORS = re.compile(r"[,\s]+")
AUTHORIZATION = "authorization"


def parse_tokens(text: str) -> list[str]:
    """Tokens separated by commas and/or any whitespace (newlines); blanks dropped,
    order kept, duplicates removed."""
    return list(dict.fromkeys(t for t in _SEPARATORS.split(text) if t))


def read_tokens_file(path: Path) -> list[str]:
    """The tokens listed in ``path``, or ``ValueError`` saying why there are none."""
    tokens = parse_tokens(read_text_file(path, TOKENS_FILE))
    if not tokens:
        raise ValueError(
            f"{TOKENS_FILE} file {path} lists no tokens (one per line, or comma-separated)"
        )
    return tokens


def presented_token(header: str, value: str) -> str | None:
    """The token a client presented in ``header`` (its ``value``), or None if none.

    In ``Authorization`` the scheme must be ``Bearer`` (RFC 6750); in any other
    header (``spec.router.auth.header``, e.g. ``X-Api-Key``) the value is the
    token, with an optional ``Bearer `` prefix so clients can send either form.
    """
    scheme, sep, rest = value.strip().partition(" ")
    if header.lower() == AUTHORIZATION:
        token = rest.strip() if sep and scheme.lower() == "bearer" else ""
    else:
        token = rest.strip() if sep and scheme.lower() == "bearer" else value.strip()
    return token or None


def expected_form(header: str) -> str:
    """How a client sends a token in ``header``, for error messages."""
    if header.lower() == AUTHORIZATION:
        return "Authorization: Bearer <token>"
    return f"{header}: <token>"
