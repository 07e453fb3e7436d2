"""Review cases from the router: answers the model server marked for review go to the
model's review sinks (kanaria.review), never slowing the client.

The model server decides automated or review (it has the probabilities) and says so
in the ``x-kanaria-automation`` header; the router reads that header only. For a
review answer of a model whose routes name sinks (``review:`` in the routes
document), it offers a :class:`~kanaria.review.PendingCase` (the request and the
answer it already holds, as bytes, with a few strings) to each sink's bounded
buffer: O(1), and a full buffer drops and counts. The sender parses and builds the
cases on its own task, a batch at a time, after the clients have their answers
(bodies past :data:`PENDING_MAX_BYTES` are made into their case first, as before).
A webhook sink POSTs through aiohttp, as the router's forwarding does (httpx costs
about 8x the CPU per POST). Senders follow the routes document: a reload that
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
import time

import aiohttp

from kanaria.api import Webhook
from kanaria.review import (
    Connection,
    LabelPuller,
    LabelStudioSink,
    PendingCase,
    ReviewCase,
    ReviewMetrics,
    ReviewSender,
    WebhookSink,
)
from kanaria.review.labelstudio import LabelStudioClient
from kanaria.review.webhook import no_answer
from kanaria.routes import ReviewRoute
from kanaria_router.table import RouteTable

log = logging.getLogger("kanaria.router.review")

DECISION_HEADER = "x-kanaria-automation"
CONFIDENCE_HEADER = "x-kanaria-confidence"
SPOT_CHECK_HEADER = "x-kanaria-spot-check"
"""Set (``true``) on an automated answer the model server drew for a spot check."""
POLICY_HEADER = "x-kanaria-automation-policy"
"""Request header carrying a version's policy to its model server (never from clients)."""
PULL_INTERVAL_S = 5.0
"""Seconds between two reads of a Label Studio project's annotations."""
PENDING_MAX_BYTES = 16 * 1024
"""Request and answer bodies up to this size (together) wait in a sender's buffer as
they are and are parsed with the batch; larger ones (up to the router's 16 MiB body
limit) are made into their case on the request path as before, so that a full buffer
holds cases within the prediction log's size rule, not the bodies: 1,000 pending
cases hold at most 16 MiB."""


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
            sink = AiohttpWebhookSink(Webhook(url=str(route.webhook)))
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
        spot_check: bool = False,
    ) -> None:
        """Offer one review answer (or a spot-checked automated one) to the model's
        sinks (no-op when it has none): O(1) for bodies up to
        :data:`PENDING_MAX_BYTES`, parsed by the senders' tasks. A
        body that is not V2 JSON (binary tensors) is logged (and, parsed there, counted
        as failed), never raised: the client already has its answer."""
        senders = self._senders.get(model)
        if not senders:
            return
        pending = PendingCase(
            request_id,
            model,
            version,
            time.time(),
            request_body,
            answer_body,
            confidence=confidence,
            namespace=self._routes[model].namespace,
            spot_check=spot_check,
        )
        case: PendingCase | ReviewCase = pending
        if len(request_body) + len(answer_body) > PENDING_MAX_BYTES:
            try:  # a buffer of such bodies would hold far more than their cases
                case = pending.build()
            except ValueError as exc:
                log.warning("review case of %s not made: %s", model, exc)
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


class AiohttpWebhookSink(WebhookSink):
    """The webhook sink over an aiohttp session of its own (kept alive between batches),
    made on the router's loop at the first POST."""

    _session: aiohttp.ClientSession | None = None

    async def post(self, body: bytes) -> tuple[int, str]:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                trust_env=True,  # HTTP(S)_PROXY, as httpx reads them
            )
        try:
            async with self._session.post(
                str(self.webhook.url), data=body, headers=self.headers, allow_redirects=False
            ) as response:  # a redirect is an answer that is not 2xx, as with httpx
                text = (await response.read()).decode("utf-8", "replace")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise no_answer(str(self.webhook.url), exc) from exc
        return response.status, text

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
        await super().aclose()
