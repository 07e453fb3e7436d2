"""Delayed labels: remember recent predictions by request id and score labels against them.

Labels often arrive minutes or hours after the prediction (a chargeback, a
click). The server keeps the predicted classes of recent requests in a bounded,
time-limited map; ``POST /v2/models/{name}/feedback`` looks them up and counts
each row correct or incorrect for this version. Ids that were never seen, were
already labelled, or have been evicted (capacity) or expired (TTL) come back as
``unknown``, never silently dropped. Pure logic; the clock is injectable.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kanaria_server.errors import BadRequestError


@dataclass
class FeedbackResult:
    """Outcome of one feedback call."""

    matched: int = 0
    correct: int = 0
    incorrect: int = 0
    unknown: list[str] = field(default_factory=list)
    bands: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Review cases only: (agree, disagree) rows per confidence band of the prediction."""

    def as_json(self) -> dict[str, Any]:
        return {
            "matched": self.matched,
            "correct": self.correct,
            "incorrect": self.incorrect,
            "unknown": self.unknown,
        }


def parse_feedback(doc: Any) -> list[tuple[str, list[int]]]:
    """Validate ``{"id", "label"}`` or a list of them; a label is a class or one per row."""
    items = doc if isinstance(doc, list) else [doc]
    if not items:
        raise BadRequestError('feedback must be {"id": ..., "label": ...} or a non-empty list')
    parsed: list[tuple[str, list[int]]] = []
    for i, item in enumerate(items):
        where = f"feedback[{i}]" if isinstance(doc, list) else "feedback"
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            raise BadRequestError(
                f"{where}: needs a string 'id' (the request id of the prediction)"
            )
        label = item.get("label")
        raw: list[Any] = label if isinstance(label, list) else [label]
        labels = [v for v in raw if isinstance(v, int) and not isinstance(v, bool)]
        if not labels or len(labels) != len(raw):
            raise BadRequestError(
                f"{where}: 'label' must be a class index or a list of class indices (one per row)"
            )
        parsed.append((item["id"], labels))
    return parsed


class FeedbackStore:
    """Bounded map request id -> predicted classes, with a time limit per entry."""

    def __init__(
        self, capacity: int, ttl_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.capacity = capacity
        self.ttl_s = ttl_s
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, list[int], list[str | None] | None]] = (
            OrderedDict()
        )

    def __len__(self) -> int:
        return len(self._entries)

    def remember(
        self, request_id: str, classes: list[int], bands: list[str | None] | None = None
    ) -> None:
        """Keep a prediction's classes; for a reviewed answer also its confidence band,
        one for the whole answer or one per row, so that a reviewer's label counts as
        agreement in the band of the row it labels."""
        if self.capacity <= 0:
            return
        self._entries[request_id] = (self._clock() + self.ttl_s, classes, bands)
        self._entries.move_to_end(request_id)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def score(self, items: list[tuple[str, list[int]]]) -> FeedbackResult:
        """Match labels with remembered predictions; each matched id is consumed."""
        now = self._clock()
        result = FeedbackResult()
        for request_id, labels in items:
            entry = self._entries.pop(request_id, None)
            if entry is None or entry[0] < now:
                result.unknown.append(request_id)
                continue
            classes = entry[1]
            expanded = labels * len(classes) if len(labels) == 1 else labels
            if len(expanded) != len(classes):
                self._entries[request_id] = entry
                raise BadRequestError(
                    f"feedback for {request_id!r} has {len(labels)} labels, the prediction "
                    f"had {len(classes)} rows"
                )
            result.matched += 1
            bands = entry[2]
            if bands is not None and len(bands) != len(classes):
                bands = bands[:1] * len(classes)  # one band for the whole answer
            for row, (label, predicted) in enumerate(zip(expanded, classes, strict=True)):
                agreed = label == predicted
                if agreed:
                    result.correct += 1
                else:
                    result.incorrect += 1
                band = bands[row] if bands is not None else None
                if band is not None:
                    a, d = result.bands.get(band, (0, 0))
                    result.bands[band] = (a + agreed, d + (not agreed))
        return result
