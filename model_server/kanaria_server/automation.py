"""The confidence policy on the model server's side: automated or for review, per answer.

The router carries the policy it read from the routes document in the
``x-kanaria-automation-policy`` request header (``partial;0.9`` or
``partial;0.9;output=score;spot=0.02``), so a new threshold applies with the next
request and no restart. The server already has the answer's probabilities (the value it exports as
``kanaria_output_confidence``), so it decides here at the cost of one max per row
and says which in the V2 response parameters ``kanaria_automation`` and
``kanaria_confidence`` and in the ``x-kanaria-automation`` / ``x-kanaria-confidence``
headers; the router reads the headers only.

Spot checks: a share (``spot``) of automated answers is also marked for review
(``kanaria_spot_check`` / ``x-kanaria-spot-check``), so reviewers keep measuring
agreement in the bands the model already decides alone; the client still gets an
automated answer. The draw is the caller's, so :func:`decide` stays pure.

A request of several rows is automated only if every row is: one unsure row is
enough to ask a person. Such an answer also says, per row, what the policy made of
it (``kanaria_automation_rows`` and ``kanaria_confidence_rows``), so a client can act
on the confident rows and hold only the unsure ones; a reviewer's labels on a
reviewed request count in each row's own confidence band. No confidence (a model
with neither a classifier output nor the named output, or a NaN) is never automated
in partial mode.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

from kanaria_server.errors import BadRequestError
from kanaria_server.monitoring import confidences

POLICY_HEADER: Final = b"x-kanaria-automation-policy"
DECISION_HEADER: Final = b"x-kanaria-automation"
CONFIDENCE_HEADER: Final = b"x-kanaria-confidence"
SPOT_CHECK_HEADER: Final = b"x-kanaria-spot-check"
BAND_WIDTH: Final = 0.05

Mode = Literal["assist", "partial", "full"]
DecisionKind = Literal["automated", "review"]


@dataclass(frozen=True)
class Policy:
    """The policy a request arrived with."""

    mode: Mode
    threshold: float
    output: str | None = None
    spot: float = 0.0
    """Share (0-1) of automated answers also sent for review as spot checks."""


@dataclass(frozen=True)
class Outcome:
    """What the policy made of one answer."""

    decision: DecisionKind
    confidence: float | None
    spot_check: bool = False
    """An automated answer drawn for review too (reviewers see it; the client does not wait)."""

    @property
    def reviewed(self) -> bool:
        """Whether a reviewer will see this answer (a review case or a spot check)."""
        return self.decision == "review" or self.spot_check

    @property
    def band(self) -> str | None:
        """The confidence band's lower edge ("0.90"), for agreement by band."""
        return band_of(self.confidence)


def band_of(confidence: float | None) -> str | None:
    if confidence is None:
        return None
    index = min(int(confidence / BAND_WIDTH + 1e-9), round(1 / BAND_WIDTH) - 1)
    return f"{index * BAND_WIDTH:.2f}"


_PARSED: dict[bytes, Policy] = {}
"""Policies seen, by header value: a router sends the same few values all day, so the
hot path pays a dict lookup, not a parse (bounded: a flood of values stops caching)."""
_PARSED_MAX = 64


def parse_policy(raw: bytes) -> Policy:
    """``mode;threshold[;output=name]``; a malformed one is the caller's error (400)."""
    cached = _PARSED.get(raw)
    if cached is not None:
        return cached
    policy = _parse(raw)
    if len(_PARSED) < _PARSED_MAX:
        _PARSED[raw] = policy
    return policy


def _parse(raw: bytes) -> Policy:
    parts = raw.decode("latin-1").split(";")
    mode = parts[0].strip()
    if mode not in ("assist", "partial", "full"):
        raise BadRequestError(
            f"x-kanaria-automation-policy: mode {mode!r} is not assist, partial or full"
        )
    threshold = 1.0
    if len(parts) > 1:
        try:
            threshold = float(parts[1])
        except ValueError:
            raise BadRequestError(
                f"x-kanaria-automation-policy: threshold {parts[1]!r} is not a number"
            ) from None
        if not 0 <= threshold <= 1:
            raise BadRequestError("x-kanaria-automation-policy: threshold must be 0-1")
    output = None
    spot = 0.0
    for extra in parts[2:]:
        key, _, value = (p.strip() for p in extra.partition("="))
        if key == "output" and value:
            output = value
        elif key == "spot":
            try:
                spot = float(value)
            except ValueError:
                raise BadRequestError(
                    f"x-kanaria-automation-policy: spot {value!r} is not a number"
                ) from None
            if not 0 <= spot <= 1:
                raise BadRequestError("x-kanaria-automation-policy: spot must be 0-1")
    return Policy(mode, threshold, output, spot)  # type: ignore[arg-type]


def confidence_of(
    policy: Policy, outputs: dict[str, npt.NDArray[np.generic]], classifier: str | None
) -> float | None:
    """The answer's confidence: its least sure row's (:func:`row_confidences`); None
    when there is none, or when any row's is not a finite 0-1 number."""
    if policy.output is None and classifier is not None:
        scores = outputs.get(classifier)
        if scores is not None and scores.ndim == 2 and scores.shape[0] == 1 and scores.size:
            value = _row_confidence(scores[0].tolist())  # the one-row fast path
            return value if math.isfinite(value) and 0 <= value <= 1 else None
    return least_sure(row_confidences(policy, outputs, classifier))


def least_sure(rows: list[float | None] | None) -> float | None:
    """The lowest row confidence; None when there are none or any row has none."""
    if not rows:
        return None
    known = [c for c in rows if c is not None]
    return min(known) if len(known) == len(rows) else None


def row_confidences(
    policy: Policy, outputs: dict[str, npt.NDArray[np.generic]], classifier: str | None
) -> list[float | None] | None:
    """Each row's confidence: the named output's values, else the classifier's max
    class probability (None for a row whose value is not a finite 0-1 number); None
    when the model has neither."""
    if policy.output is not None:
        arr = outputs.get(policy.output)
        if arr is None or arr.dtype.kind not in "fiu" or not arr.size:
            return None
        values = arr.reshape(arr.shape[0] if arr.ndim else 1, -1)[:, 0].astype(np.float64)
    elif classifier is not None and classifier in outputs:
        scores = outputs[classifier]
        if scores.ndim != 2 or not scores.size:
            return None
        values = confidences(scores)
    else:
        return None
    return [v if math.isfinite(v) and 0 <= v <= 1 else None for v in values.tolist()]


def decide_rows(policy: Policy, rows: list[float | None]) -> list[DecisionKind]:
    """What the policy makes of each row on its own (spot checks are per answer)."""
    return [decide(policy, c).decision for c in rows]


def _row_confidence(row: list[float]) -> float:
    """One row's max class probability, as :func:`confidences` computes it, in plain
    Python: for the one-row request (the common case) it is several times cheaper than
    numpy's per-call overhead."""
    top = max(row)
    if min(row) >= 0 and top <= 1 and abs(sum(row) - 1.0) <= 1e-3:
        return top
    return 1.0 / sum(math.exp(v - top) for v in row)


def decide(policy: Policy, confidence: float | None, draw: float = 1.0) -> Outcome:
    """assist: review; full: automated; partial: automated at or above the threshold.
    An automated answer is also a spot check when ``draw`` (uniform in [0, 1), the
    caller's) falls below the policy's spot share."""
    automated = policy.mode == "full" or (
        policy.mode == "partial" and confidence is not None and confidence >= policy.threshold
    )
    if automated:
        return Outcome("automated", confidence, spot_check=draw < policy.spot)
    return Outcome("review", confidence)
