"""Calling the retraining webhook when the engine asks for a retrained model.

The engine (:mod:`kanaria.rollout`) decides *when* retraining is due (input
drift or accuracy past ``spec.retraining.threshold`` on the stable version for
``spec.retraining.duration``) and emits a :class:`~kanaria.rollout.Retrain`
action. The local runtime answers it by POSTing :func:`retrain_payload` to
``spec.retraining.webhook`` with :func:`call_webhook`; the operator may also
create a Job from ``spec.retraining.jobTemplate``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx

from kanaria.api import API_VERSION, ModelDeploymentSpec, Webhook
from kanaria.durations import parse_duration
from kanaria.rollout.types import Retrain

PAYLOAD_KIND = "RetrainRequested"


class WebhookError(Exception):
    """The webhook could not be called or refused the payload; ``str()`` says why."""


def retrain_payload(
    name: str,
    namespace: str | None,
    spec: ModelDeploymentSpec,
    action: Retrain,
    now: datetime,
) -> dict[str, Any]:
    """The JSON body sent to the webhook: which model, which version, what crossed what."""
    return {
        "apiVersion": API_VERSION,
        "kind": PAYLOAD_KIND,
        "model": name,
        "namespace": namespace,
        "version": action.version,
        "uri": spec.model.uri if spec.model.version == action.version else None,
        "metric": action.metric,
        "value": action.value,
        "threshold": action.threshold,
        "since": action.since.isoformat(),
        "time": now.isoformat(),
    }


def call_webhook(
    webhook: Webhook, payload: dict[str, Any], transport: httpx.BaseTransport | None = None
) -> int:
    """POST ``payload`` as JSON; returns the HTTP status (2xx), raises WebhookError otherwise."""
    timeout = parse_duration(webhook.timeout)
    headers = {"Content-Type": "application/json", **webhook.headers}
    try:
        with httpx.Client(timeout=timeout, transport=transport) as client:
            response = client.post(webhook.url, json=payload, headers=headers)
    except httpx.TimeoutException as exc:
        raise WebhookError(
            f"retraining webhook {webhook.url} did not answer within {webhook.timeout}"
        ) from exc
    except httpx.HTTPError as exc:
        raise WebhookError(f"cannot call retraining webhook {webhook.url}: {exc}") from exc
    if not 200 <= response.status_code < 300:
        raise WebhookError(
            f"retraining webhook {webhook.url} answered HTTP {response.status_code}: "
            f"{response.text[:200]}"
        )
    return response.status_code
