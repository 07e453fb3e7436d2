"""Kubernetes-style durations ("500ms", "30s", "5m", "1h30m").

ModelDeployment fields hold durations as strings, the way Kubernetes users
write them, so a manifest round-trips unchanged through the API server. The
same regular expression is in the CRD schema (``pattern``), so the API server
rejects what this module would reject, and :func:`parse_duration` turns a valid
string into seconds for the engine.
"""

from __future__ import annotations

import re
from typing import Annotated, Final

from pydantic import AfterValidator, Field

DURATION_PATTERN: Final = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
"""One or more ``<number><unit>`` parts; units ms, s, m, h (a subset of Go's time.ParseDuration)."""

_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_WHOLE = re.compile(DURATION_PATTERN)
_UNIT_SECONDS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds in ``text``; raises ``ValueError`` naming the accepted form."""
    if not isinstance(text, str) or not _WHOLE.match(text):
        raise ValueError(
            f"{text!r} is not a duration: use a number with a unit, e.g. 500ms, 30s, 5m, 1h30m"
        )
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in _PART.findall(text))


def format_duration(seconds: float) -> str:
    """Shortest Prometheus-compatible form of ``seconds`` (e.g. 90 -> "90s", 0.5 -> "500ms")."""
    if seconds <= 0:
        raise ValueError(f"a duration must be positive, got {seconds}")
    if seconds < 1 or seconds != int(seconds):
        return f"{round(seconds * 1000)}ms"
    whole = int(seconds)
    if whole % 3600 == 0:
        return f"{whole // 3600}h"
    if whole % 60 == 0:
        return f"{whole // 60}m"
    return f"{whole}s"


def _check(text: str) -> str:
    parse_duration(text)
    return text


Duration = Annotated[
    str,
    Field(pattern=DURATION_PATTERN, max_length=32, examples=["30s"]),
    AfterValidator(_check),
]
"""A duration string field; validated by pattern here and in the CRD."""
