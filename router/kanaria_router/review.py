"""Review cases from the router: answers the model server marked for review go to the
model's review sinks (kanaria.review), never slowing the client.

The model server decides automated or review (it has the probabilities) and says so
in the ``x-kanaria-automation`` header; the router reads that header only. For a
review answer of a model whose routes name sinks (``review:`` in the routes
document), it builds a :class:`~kanaria.review.ReviewCase` from the request and the
answer it already holds and offers it to each sink's bounded buffer: O(1), and a
full buffer drops and counts. Senders follow the routes document: a reload that
changes a model's sinks closes the old senders and makes new ones.

Labels back: for a Label Studio sink the router also runs kanaria.review's
:class:`~kanaria.review.LabelPuller` every :data:`PULL_INTERVAL_S` seconds, posting
reviewers' choices to its own feedback API (which forwards each to the version that
answered), so the loop closes wherever the router runs: ``kanaria up`` or Kubernetes.
Several router replicas each pull; the model server scores an id once, so a second
post of the same label counts as ``unknown``, never twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from datetime import UTC, datetime

import orjson

from kanaria.api import Webhook
from kanaria.review import (
    Connection,
    LabelPuller,
    LabelStudioSink,
    ReviewMetrics,
    ReviewSender,
    WebhookSink,
    case_from_v2,
)
from kanaria.review.labelstudio import LabelStudioClient
from kanaria.routes import ReviewRoute
from kanaria_router.table import RouteTable

log = logging.getLogger("kanaria.router.review")

DECISION_HEADER = "x-kanaria-automation"
CONFIDENCE_HEADER = "x-kanaria-confidence"
POLICY_HEADER = "x-kanaria-automation-policy"
"""Request header carrying a version's policy to its model server (never from clients)."""
PULL_INTERVAL_S = 5.0
"""Seconds between two reads of a Label Studio project's annotations."""


class ReviewHub:
    """The review senders of every model the routes name sinks for."""

    def __init__(self, metrics: ReviewMetrics) -> None:
        self.metrics = metrics
        self._routes: dict[str, ReviewRoute] = {}
        self._senders: dict[str, list[ReviewSender]] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self._pulls: dict[str, tuple[asyncio.Task[None], asyncio.Event]] = {}
        self._feedback: tuple[str, dict[str, str]] | None = None

    def attach(self, feedback_url: str, headers: dict[str, str]) -> None:
        """Where pulled labels go (the router's own feedback API, with a token when the
        router requires one); starts the pullers of the routes already applied. Call
        from the running loop."""
        self._feedback = (feedback_url, headers)
        for model, route in self._routes.items():
            self._start_pull(model, route)

    def sync(self, table: RouteTable) -> None:
        """Make the senders match the routes: new or changed sinks get new senders."""
        wanted = {m.name: m.review for m in table.models.values() if m.review is not None}
        for model in list(self._senders):
            if wanted.get(model) != self._routes.get(model):
                self._close(self._senders.pop(model))
                self._routes.pop(model, None)
                self._stop_pull(model)
        for model, route in wanted.items():
            if model not in self._senders:
                self._senders[model] = self._make(model, route)
                self._routes[model] = route
                if self._feedback is not None:
                    self._start_pull(model, route)

    def _start_pull(self, model: str, route: ReviewRoute) -> None:
        ls = route.labelStudio
        if ls is None or self._feedback is None or model in self._pulls:
            return
        stop = asyncio.Event()
        task = asyncio.get_running_loop().create_task(
            self._pull(model, route, stop), name=f"review-pull-{model}"
        )
        self._pulls[model] = (task, stop)

    def _stop_pull(self, model: str) -> None:
        pull = self._pulls.pop(model, None)
        if pull is not None:
            pull[1].set()

    async def _pull(self, model: str, route: ReviewRoute, stop: asyncio.Event) -> None:
        """Find the project (the sink's, by title), then pull until stopped."""
        ls = route.labelStudio
        assert ls is not None
        assert self._feedback is not None
        conn = Connection(url=str(ls.url).rstrip("/"), token=os.environ.get(ls.tokenEnv, ""))
        client = LabelStudioClient(conn)
        url, headers = self._feedback
        try:
            project = None
            while project is None and not stop.is_set():
                try:
                    project = await client.find_project(ls.project)
                except Exception as exc:  # Label Studio down: try again later
                    log.warning("review project %r of %s not read: %s", ls.project, model, exc)
                if project is None:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), PULL_INTERVAL_S)
            if project is None:
                return
            puller = LabelPuller(
                client, project, model, ls.classes, url, self.metrics, headers=headers
            )
            try:
                await puller.run(PULL_INTERVAL_S, stop)
            finally:
                await puller.aclose()
        finally:
            await client.aclose()

    def _make(self, model: str, route: ReviewRoute) -> list[ReviewSender]:
        out: list[ReviewSender] = []
        if route.webhook is not None:
            sink = WebhookSink(Webhook(url=str(route.webhook)))
            out.append(ReviewSender(sink, model, self.metrics, capacity=route.bufferSize))
        ls = route.labelStudio
        if ls is not None:
            token = os.environ.get(ls.tokenEnv, "")
            if not token:
                log.error(
                    "review sink labelstudio of %s: $%s is empty; its cases are dropped",
                    model,
                    ls.tokenEnv,
                )
            conn = Connection(url=str(ls.url).rstrip("/"), token=token)
            ls_sink = LabelStudioSink(
                conn, model, ls.classes, namespace=route.namespace, title=ls.project
            )
            out.append(ReviewSender(ls_sink, model, self.metrics, capacity=route.bufferSize))
        return out

    def _close(self, senders: list[ReviewSender]) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # never started: nothing was offered, nothing to deliver
        for sender in senders:
            task = loop.create_task(sender.aclose())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    def offer(
        self,
        model: str,
        version: str,
        request_id: str,
        confidence: str | None,
        request_body: bytes,
        answer_body: bytes,
    ) -> None:
        """Offer one review answer to the model's sinks (no-op when it has none). A body
        that is not V2 JSON (binary tensors) is logged once per call, never raised:
        the client already has its answer."""
        senders = self._senders.get(model)
        if not senders:
            return
        try:
            req = orjson.loads(request_body)
            ans = orjson.loads(answer_body)
            conf = float(confidence) if confidence else None
            case = case_from_v2(
                request_id,
                model,
                version,
                datetime.now(UTC),
                req.get("inputs", []),
                ans.get("outputs", []),
                confidence=conf,
                classes=_classes(ans.get("outputs", [])),
                namespace=self._routes[model].namespace,
            )
        except (ValueError, TypeError, AttributeError) as exc:
            log.warning("review case of %s request %s not made: %s", model, request_id, exc)
            return
        for sender in senders:
            sender.start()
            sender.offer(case)

    async def aclose(self) -> None:
        pulls = [task for task, _ in self._pulls.values()]
        for model in list(self._pulls):
            self._stop_pull(model)
        if pulls:
            await asyncio.gather(*pulls, return_exceptions=True)
        for senders in self._senders.values():
            for sender in senders:
                await sender.aclose()
        self._senders.clear()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)


def _classes(outputs: list[dict[str, object]]) -> list[int]:
    """Argmax per row of the first [batch, classes] output (the suggestion)."""
    for out in outputs:
        shape = out.get("shape")
        data = out.get("data")
        if (
            isinstance(shape, list)
            and len(shape) == 2
            and isinstance(data, list)
            and shape[1]
            and isinstance(shape[1], int)
            and shape[1] >= 2
        ):
            width = shape[1]
            rows = [data[i : i + width] for i in range(0, len(data), width)]
            return [_argmax(r) for r in rows if r]
    return []


def _argmax(row: list[object]) -> int:
    best = 0
    for i, value in enumerate(row):
        if isinstance(value, int | float) and value > row[best]:  # type: ignore[operator]
            best = i
    return best
