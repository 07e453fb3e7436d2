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
