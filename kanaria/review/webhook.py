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
    """POSTs each batch of cases to ``webhook.url``."""

    name = "webhook"

    def __init__(self, webhook: Webhook, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.webhook = webhook
        self._client = httpx.AsyncClient(
            timeout=parse_duration(webhook.timeout), transport=transport
        )
        self._headers = {"Content-Type": "application/json", **webhook.headers}

    async def deliver(self, cases: Sequence[ReviewCase]) -> None:
        try:
            response = await self._client.post(
                self.webhook.url, content=batch_body(cases), headers=self._headers
            )
        except httpx.HTTPError as exc:
            raise DeliveryError(
                f"review webhook {self.webhook.url}: {type(exc).__name__}: {exc}", retryable=True
            ) from exc
        retryable = classify(response.status_code)
        if retryable is not None:
            raise DeliveryError(
                f"review webhook {self.webhook.url} answered HTTP {response.status_code}: "
                f"{response.text[:200]}",
                retryable=retryable,
            )

    async def aclose(self) -> None:
        await self._client.aclose()
