"""The mirror worker's wire format: copies down a pipe, outcomes back up.

The router hands each shadow copy to a second process (``mirror_worker``) so
that sending copies, reading the shadow's answers and comparing them never take
CPU from live requests: the worker runs at a lower priority and only gets what
the router leaves. This module is the pure half of that hand-off, so both ends
(and the tests) share one definition.

- A **copy** goes router → worker as one frame: a 12-byte header (``!III``: the
  lengths of the metadata, the request body and the primary's answer), then the
  metadata as a JSON array, then the two bodies as they are (binary tensors
  included: nothing is re-encoded).
- An **outcome report** goes worker → router as one JSON line: how many copies
  ended ``sent`` or ``failed`` per (model, shadow), and the comparison results
  per (model, shadow, baseline, result). The router counts a copy as
  outstanding from hand-off until a report accounts for it, which is what bounds
  the pipe and the worker's queue.
"""

from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass
from typing import Any

import orjson

HEADER = struct.Struct("!III")
"""Frame header: lengths of the metadata JSON, the request body, the primary's body."""

READY = b'{"ready":true}\n'
"""First line the worker writes: it reads copies from now on."""

MAX_FRAME_PART = 2**31
"""Largest length a header may announce (the router's body limit is far below)."""


@dataclass(frozen=True)
class Copy:
    """One copy to send to a shadow, with what the worker needs to compare its answer."""

    model: str
    shadow: str
    url: str
    baseline: str
    request_id: str
    headers: list[tuple[str, str]]
    """The primary's forwarded headers; the worker adds the shadow marker."""
    body: bytes
    primary_status: int
    primary_body: bytes
    rtol: float
    atol: float
    log_percent: float
    """Share (0-100) of disagreements written to the log, before the rate limit."""


def copy_size(body: bytes, primary_body: bytes) -> int:
    """What a copy weighs against the router's byte bound: its two bodies."""
    return len(body) + len(primary_body)


def encode_copy(copy: Copy) -> bytes:
    """One frame for the pipe."""
    meta = orjson.dumps(
        [
            copy.model,
            copy.shadow,
            copy.url,
            copy.baseline,
            copy.request_id,
            copy.headers,
            copy.primary_status,
            copy.rtol,
            copy.atol,
            copy.log_percent,
        ]
    )
    return b"".join(
        (HEADER.pack(len(meta), len(copy.body), len(copy.primary_body)), meta, copy.body,
         copy.primary_body)
    )  # fmt: skip


def frame_lengths(header: bytes) -> tuple[int, int, int]:
    """The three part lengths a frame header announces; ``ValueError`` if implausible."""
    meta, body, primary = HEADER.unpack(header)
    if meta == 0 or max(meta, body, primary) >= MAX_FRAME_PART:
        raise ValueError(f"corrupt mirror frame header {header.hex()}")
    return meta, body, primary


def decode_copy(meta: bytes, body: bytes, primary_body: bytes) -> Copy:
    """The copy a frame carries; ``ValueError`` when the metadata is not what
    :func:`encode_copy` writes (a version mismatch or a corrupt pipe)."""
    try:
        fields: Any = orjson.loads(meta)
        model, shadow, url, baseline, request_id, headers, status, rtol, atol, pct = fields
        return Copy(
            model=str(model),
            shadow=str(shadow),
            url=str(url),
            baseline=str(baseline),
            request_id=str(request_id),
            headers=[(str(k), str(v)) for k, v in headers],
            body=body,
            primary_status=int(status),
            primary_body=primary_body,
            rtol=float(rtol),
            atol=float(atol),
            log_percent=float(pct),
        )
    except (orjson.JSONDecodeError, TypeError, ValueError) as exc:
        raise ValueError(f"corrupt mirror frame metadata: {exc}") from exc


@dataclass
class Tally:
    """Outcomes and comparison results since the last report (the worker's side)."""

    outcomes: Counter[tuple[str, str, str]]
    comparisons: Counter[tuple[str, str, str, str]]
    size: int = 0
    """Bytes of the finished copies (their :func:`copy_size`): the router bounds bytes too."""

    @classmethod
    def empty(cls) -> Tally:
        return cls(Counter(), Counter())

    def __bool__(self) -> bool:
        return bool(self.outcomes) or bool(self.comparisons)

    def outcome(self, model: str, shadow: str, outcome: str, size: int = 0) -> None:
        """One copy of ``size`` bytes finished: ``sent`` (the shadow answered) or ``failed``."""
        self.outcomes[model, shadow, outcome] += 1
        self.size += size

    def comparison(self, model: str, shadow: str, baseline: str, agree: bool) -> None:
        self.comparisons[model, shadow, baseline, "agree" if agree else "disagree"] += 1

    def to_line(self) -> bytes:
        """The report as one JSON line."""
        return (
            orjson.dumps(
                {
                    "outcomes": [[*k, n] for k, n in self.outcomes.items()],
                    "comparisons": [[*k, n] for k, n in self.comparisons.items()],
                    "size": self.size,
                }
            )
            + b"\n"
        )


def parse_report(line: bytes) -> Tally:
    """A report line back into counts; ``ValueError`` when it is not one."""
    try:
        doc: Any = orjson.loads(line)
        tally = Tally.empty()
        tally.size = int(doc["size"])
        if tally.size < 0:
            raise ValueError(f"negative size {tally.size}")
        for model, shadow, outcome, n in doc["outcomes"]:
            if outcome not in ("sent", "failed") or int(n) < 1:
                raise ValueError(f"bad outcome {outcome!r} x{n}")
            tally.outcomes[str(model), str(shadow), outcome] += int(n)
        for model, shadow, baseline, result, n in doc["comparisons"]:
            if result not in ("agree", "disagree") or int(n) < 1:
                raise ValueError(f"bad comparison result {result!r} x{n}")
            tally.comparisons[str(model), str(shadow), str(baseline), result] += int(n)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"corrupt mirror report {line[:200]!r}: {exc}") from exc
    return tally
