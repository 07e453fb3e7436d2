"""The webhook sink: POST review cases as JSON to an endpoint the team runs.

One POST per batch, body ``{"apiVersion", "kind": "ReviewCases", "cases": [...]}``
(:func:`kanaria.review.case.batch_body`), with the webhook's own headers (an
Authorization header, say) as in ``spec.retraining.webhook``. A 2xx answer
means delivered. What happens next is decided by the answer, in one place
(:func:`classify`): no answer, 408, 425, 429 and 5xx may pass and are retried
by the sender; any other answer will not pass and fails the batch at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import httpx

from kanaria.api import Webhook
from kanaria.durations import parse_duration
from kanaria.review.case import ReviewCase, batch_body
from kanaria.review.sender import DeliveryError

RETRYABLE_STATUS: Final = frozenset({408, 425, 429})
"""4xx answers that say "later", not "never"."""


def classify(status: int) -> bool | None:
    """None for a 2xx (delivered); else whether trying again may help."""
    if 200 <= status < 300:
        return None
    return status >= 500 or status in RETRYABLE_STATUS


class WebhookSink:
    """POSTs each batch of cases to ``webhook.url``.

    The POST itself is :meth:`post`, over httpx here; a component with a cheaper
    client on its loop overrides it (the router's aiohttp session: about 8x less CPU
    per POST than httpx, bench/README.md)."""

    name = "webhook"

    def __init__(self, webhook: Webhook, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.webhook = webhook
        self.timeout_s = parse_duration(webhook.timeout)
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self.headers = {"Content-Type": "application/json", **webhook.headers}

    async def deliver(self, cases: Sequence[ReviewCase]) -> None:
        status, text = await self.post(batch_body(cases))
        retryable = classify(status)
        if retryable is not None:
            raise DeliveryError(
                f"review webhook {self.webhook.url} answered HTTP {status}: {text[:200]}",
                retryable=retryable,
            )

    async def post(self, body: bytes) -> tuple[int, str]:
        """POST ``body``; the status and the answer's text. Raises a retryable
        :class:`DeliveryError` when there is no answer."""
        if self._client is None:  # made on first use: a sink that sends nothing costs nothing
            self._client = httpx.AsyncClient(timeout=self.timeout_s, transport=self._transport)
        try:
            response = await self._client.post(self.webhook.url, content=body, headers=self.headers)
        except httpx.HTTPError as exc:
            raise no_answer(self.webhook.url, exc) from exc
        return response.status_code, response.text

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()


def no_answer(url: str, exc: BaseException) -> DeliveryError:
    """The retryable error of a POST that got no answer (refused, reset, timed out)."""
    return DeliveryError(f"review webhook {url}: {type(exc).__name__}: {exc}", retryable=True)
