"""Reviewers' decisions back to Kanaria: Label Studio annotations become feedback labels.

Each pull reads the review project's annotated tasks, takes per request id the
class the reviewers chose (the latest submitted annotation of each row; a
skipped task is no decision), and once every row of the request has one, posts
``{"id": <request id>, "label": <class index or one per row>}`` to Kanaria's
feedback API, ``POST {feedback_url}/v2/models/{model}/feedback``, the same call
a client makes with a delayed label (the router forwards it to the version that
made the prediction; a model server takes it directly). There the label is
scored against the prediction, which is what reviewer agreement is built from.

One POST per request: labels come at the pace of people, and one label the
feedback API refuses must not take others down with it. What happens next
depends on the answer (:func:`classify_feedback`): a label the API matched is
``accepted``; one whose request id the API no longer remembers is ``unknown``
(both are done); a failure that may pass (no answer, 408/429/5xx) is
``failed`` and sent again at the next pull; any other refusal is ``failed`` and
not sent again (it would be refused again). An id is sent once per puller; a
``state_path`` keeps the ids across restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx

from kanaria.review.labelstudio import SINK_NAME, LabelStudioClient, annotation_class
from kanaria.review.metrics import LabelResult, ReviewMetrics

log = logging.getLogger(__name__)

FeedbackVerdict = Literal["accepted", "unknown", "retry", "refused"]


def feedback_path(model: str) -> str:
    return f"/v2/models/{model}/feedback"


def classify_feedback(status: int, body: Any, request_id: str) -> FeedbackVerdict:
    """What a feedback API answer means for one posted id.

    Both the router (``{"forwarded", "unknown", "errors"}``; 404 when it remembers
    none of the ids) and the model server (``{"matched", ..., "unknown"}``) list
    the ids they do not remember in ``unknown``.
    """
    if 200 <= status < 300:
        unknown = body.get("unknown", []) if isinstance(body, dict) else []
        return "unknown" if request_id in unknown else "accepted"
    if status == 404:
        return "unknown"
    if status >= 500 or status in {408, 425, 429}:
        return "retry"
    return "refused"


@dataclass
class Decision:
    """The reviewers' classes for one request, row by row."""

    rows: int
    labels: dict[int, int] = field(default_factory=dict)

    def complete(self) -> bool:
        return len(self.labels) == self.rows

    def label(self) -> int | list[int]:
        """The feedback ``label``: one class, or one per row."""
        if self.rows == 1:
            return self.labels[0]
        return [self.labels[r] for r in range(self.rows)]


def decisions(
    tasks: Sequence[dict[str, Any]], class_names: Sequence[str]
) -> tuple[dict[str, Decision], set[int]]:
    """Request id -> the reviewers' decision, from exported tasks; also the ids of
    the submitted annotations that name no class (counted ``invalid`` once each)."""
    found: dict[str, Decision] = {}
    invalid: set[int] = set()
    for task in tasks:
        data = task.get("data") or {}
        request_id, row, rows = data.get("request_id"), data.get("row", 0), data.get("rows", 1)
        if not isinstance(request_id, str) or not isinstance(row, int) or not isinstance(rows, int):
            continue  # not a task the sink made
        submitted = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
        submitted.sort(key=lambda a: (str(a.get("updated_at") or ""), int(a.get("id") or 0)))
        chosen = None
        for annotation in reversed(submitted):
            chosen = annotation_class(annotation, class_names)
            if chosen is not None:
                break
        if chosen is None:
            invalid.update(int(a.get("id") or 0) for a in submitted)
            continue
        decision = found.setdefault(request_id, Decision(rows=rows))
        decision.labels[row] = chosen
    return found, invalid


@dataclass
class PullResult:
    """What one pull did, by label result (the counters' increments)."""

    accepted: int = 0
    unknown: int = 0
    failed: int = 0
    invalid: int = 0
    """Newly seen submitted annotations that name no class of the model."""
    pending: int = 0
    """Requests with some rows decided and some not: sent once all are."""


class LabelPuller:
    """Reads a review project's annotations and posts them to the feedback API."""

    def __init__(
        self,
        client: LabelStudioClient,
        project: int,
        model: str,
        class_names: Sequence[str],
        feedback_url: str,
        metrics: ReviewMetrics,
        *,
        state_path: Path | None = None,
        timeout_s: float = 10.0,
        headers: dict[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.client = client
        self.project = project
        self.model = model
        self.class_names = list(class_names)
        self.feedback_url = feedback_url.rstrip("/")
        self.metrics = metrics
        self.state_path = state_path
        self.done: set[str] = set()
        self._invalid_seen: set[int] = set()
        if state_path is not None and state_path.exists():
            self.done = set(json.loads(state_path.read_text()))
        self._http = httpx.AsyncClient(
            timeout=timeout_s, headers={**(headers or {})}, transport=transport
        )

    async def pull_once(self) -> PullResult:
        """One pass: read annotations, post each complete, new decision. Raises
        LabelStudioError when Label Studio cannot be read (nothing was posted)."""
        tasks = await self.client.annotated_tasks(self.project)
        found, invalid = decisions(tasks, self.class_names)
        result = PullResult(invalid=len(invalid - self._invalid_seen))
        self._invalid_seen |= invalid
        self._count("invalid", result.invalid)
        done_before = len(self.done)
        for request_id, decision in found.items():
            if request_id in self.done:
                continue
            if not decision.complete():
                result.pending += 1
                continue
            outcome = await self._post(request_id, decision.label())
            setattr(result, outcome, getattr(result, outcome) + 1)
            self._count(outcome, 1)
        if len(self.done) != done_before:
            self._save()
        return result

    async def run(self, interval_s: float, stop: asyncio.Event) -> None:
        """Pull every ``interval_s`` seconds until ``stop`` is set; a failed pull is
        logged and tried again at the next interval."""
        while not stop.is_set():
            try:
                await self.pull_once()
            except Exception:
                log.exception("review label pull for %s failed", self.model)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_s)

    async def _post(self, request_id: str, label: int | list[int]) -> LabelResult:
        url = self.feedback_url + feedback_path(self.model)
        try:
            response = await self._http.post(url, json={"id": request_id, "label": label})
        except httpx.HTTPError as exc:
            log.warning("feedback for %s: %s: %s (will retry)", request_id, url, exc)
            return "failed"
        try:
            body = response.json()
        except ValueError:
            body = None
        verdict = classify_feedback(response.status_code, body, request_id)
        if verdict == "retry":
            log.warning("feedback for %s: HTTP %d (will retry)", request_id, response.status_code)
            return "failed"
        self.done.add(request_id)
        if verdict == "refused":
            log.warning(
                "feedback for %s refused: HTTP %d %s",
                request_id, response.status_code, response.text[:300],
            )  # fmt: skip
            return "failed"
        return verdict

    def _count(self, result: LabelResult, n: int) -> None:
        if n:
            self.metrics.labels.labels(self.model, SINK_NAME, result).inc(n)

    def _save(self) -> None:
        if self.state_path is not None:
            tmp = self.state_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(sorted(self.done)))
            tmp.replace(self.state_path)

    async def aclose(self) -> None:
        await self._http.aclose()
