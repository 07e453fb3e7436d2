"""The operator's error model: every failure of a pass is one of two kinds, grouped by
what happens next (as kopf's permanent and temporary errors are).

- :class:`SpecError` -- what the ModelDeployment asks for cannot be done until a
  person changes it (a spec the models reject, auth without a Secret, an object the
  API server refuses, a model URI nobody can fetch). It becomes the ``InvalidSpec``
  condition with its reason and a Warning Event once; nothing retries it faster.
- :class:`TemporaryError` -- the world failed, not the spec (the API server
  overloaded or forbidding, a conflict, Prometheus away, a bug). The pass is retried
  after a growing delay (:data:`BACKOFF_S`, reset by the next good pass) and a
  Warning Event says so once per distinct reason.

:func:`classify` maps any exception raised in a pass to one of them, in one place.
"""

from __future__ import annotations

from dataclasses import dataclass

from kanaria_operator.kubeio import summary
from kubernetes.dynamic.exceptions import DynamicApiError

BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
"""Delays before retrying a pass after 1, 2, 3, ... temporary failures in a row."""

TRANSIENT_HTTP = frozenset({401, 403, 404, 409, 429, 500, 502, 503, 504})
"""API answers that say nothing about the spec: auth not there yet, a race, overload.
(A 500 the API server gives for a value it cannot decode is raised as a SpecError by
the code that applies objects built from the spec, which knows better.)"""


@dataclass(frozen=True)
class SpecError(Exception):
    """The spec asks for something that cannot be done: ``InvalidSpec``."""

    reason: str
    """CamelCase, e.g. SpecRejected, AuthWithoutSecret, ObjectRejected, ModelUnreachable."""
    message: str

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"


@dataclass(frozen=True)
class TemporaryError(Exception):
    """The world failed: retried with backoff."""

    reason: str
    """CamelCase, e.g. ApiUnavailable, ApiConflict, PassFailed."""
    message: str

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"


def classify(exc: BaseException) -> SpecError | TemporaryError:
    """What a failed pass means and what happens next."""
    if isinstance(exc, SpecError | TemporaryError):
        return exc
    if isinstance(exc, DynamicApiError):
        status = int(getattr(exc, "status", 0) or 0)
        if status == 409:
            return TemporaryError("ApiConflict", f"HTTP 409: {summary(exc)}")
        if status in (401, 403):
            return TemporaryError("ApiForbidden", f"HTTP {status}: {summary(exc)}")
        return TemporaryError("ApiUnavailable", f"HTTP {status}: {summary(exc)}")
    if isinstance(exc, OSError | TimeoutError):
        return TemporaryError("ApiUnreachable", f"{exc.__class__.__name__}: {exc}")
    return TemporaryError("PassFailed", f"{exc.__class__.__name__}: {exc}")


def backoff(failures: int) -> float:
    """Seconds to wait after ``failures`` temporary failures in a row (>= 1)."""
    return BACKOFF_S[min(max(failures, 1), len(BACKOFF_S)) - 1]
