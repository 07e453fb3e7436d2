"""Review cases from the router: answers the model server marked for review go to the
model's review sinks (kanaria.review), never slowing the client.

The model server decides automated or review (it has the probabilities) and says so
in the ``x-kanaria-automation`` header; the router reads that header only. For a
review answer of a model whose routes name sinks (``review:`` in the routes
document), it builds a :class:`~kanaria.review.ReviewCase` from the request and the
answer it already holds and offers it to each sink's bounded buffer: O(1), and a
full buffer drops and counts. Senders follow the routes document: a reload that
changes a model's sinks closes the old senders and makes new ones.
"""

from __future__ import annotations

import asyncio
import logging
import os
from datetime import UTC, datetime

import orjson

from kanaria.api import Webhook
from kanaria.review import (
    Connection,
    LabelStudioSink,
    ReviewMetrics,
    ReviewSender,
    WebhookSink,
    case_from_v2,
)
from kanaria.routes import ReviewRoute
from kanaria_router.table import RouteTable

log = logging.getLogger("kanaria.router.review")

DECISION_HEADER = "x-kanaria-automation"
CONFIDENCE_HEADER = "x-kanaria-confidence"
POLICY_HEADER = "x-kanaria-automation-policy"
"""Request header carrying a version's policy to its model server (never from clients)."""


class ReviewHub:
    """The review senders of every model the routes name sinks for."""

    def __init__(self, metrics: ReviewMetrics) -> None:
        self.metrics = metrics
        self._routes: dict[str, ReviewRoute] = {}
        self._senders: dict[str, list[ReviewSender]] = {}
        self._closing: set[asyncio.Task[None]] = set()

    def sync(self, table: RouteTable) -> None:
        """Make the senders match the routes: new or changed sinks get new senders."""
        wanted = {m.name: m.review for m in table.models.values() if m.review is not None}
        for model in list(self._senders):
            if wanted.get(model) != self._routes.get(model):
                self._close(self._senders.pop(model))
                self._routes.pop(model, None)
        for model, route in wanted.items():
            if model not in self._senders:
                self._senders[model] = self._make(model, route)
                self._routes[model] = route

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
