"""Answering the engine's request for a retrained model: one payload, both actuators.

The engine (:mod:`kanaria.rollout`) decides *when* retraining is due (input
drift or accuracy past ``spec.retraining.threshold`` on the stable version for
``spec.retraining.duration``) and emits a :class:`~kanaria.rollout.Retrain`
action. Both actuators answer it with :func:`request_retraining`, which POSTs
the ``RetrainRequested`` payload (:func:`retrain_payload`) to
``spec.retraining.webhook`` and says what happened as an Event: ``kanaria up``
logs it, the operator posts it (and may also create a Job from
``spec.retraining.jobTemplate``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx

from kanaria.api import API_VERSION, ModelDeploymentSpec, ModelDeploymentStatus, Webhook
from kanaria.durations import parse_duration
from kanaria.rollout.types import Event, Retrain

PAYLOAD_KIND = "RetrainRequested"
CALLED = "RetrainingWebhookCalled"
FAILED = "RetrainingWebhookFailed"


class WebhookError(Exception):
    """The webhook could not be called or refused the payload; ``str()`` says why."""


def version_uri(
    spec: ModelDeploymentSpec, status: ModelDeploymentStatus | None, version: str
) -> str | None:
    """The model URI ``version`` runs from: its entry in ``status``, else ``spec.model``."""
    if status is not None:
        for live in status.versions:
            if live.version == version:
                return live.uri
        if status.stable is not None and status.stable.version == version:
            return status.stable.uri
    return spec.model.uri if spec.model.version == version else None


def retrain_payload(
    name: str,
    namespace: str | None,
    action: Retrain,
    uri: str | None,
    now: datetime,
) -> dict[str, Any]:
    """The JSON body sent to the webhook: which model, which version, what crossed what.

    ``namespace`` is None outside Kubernetes (``kanaria up``); ``uri`` is the
    model the version runs from.
    """
    return {
        "apiVersion": API_VERSION,
        "kind": PAYLOAD_KIND,
        "model": name,
        "namespace": namespace,
        "version": action.version,
        "uri": uri,
        "metric": action.metric,
        "value": action.value,
        "threshold": action.threshold,
        "since": action.since.isoformat(),
        "time": now.isoformat(),
    }


def request_retraining(
    name: str,
    namespace: str | None,
    spec: ModelDeploymentSpec,
    status: ModelDeploymentStatus | None,
    action: Retrain,
    now: datetime,
) -> Event | None:
    """POST the payload to ``spec.retraining.webhook``; the Event says how it went.

    None when no webhook is set. Never raises: a failed call is a Warning Event
    (the engine asks again after ``spec.retraining.cooldown``).
    """
    retraining = spec.retraining
    if retraining is None or retraining.webhook is None:
        return None
    hook = retraining.webhook
    payload = retrain_payload(
        name, namespace, action, version_uri(spec, status, action.version), now
    )
    try:
        code = call_webhook(hook, payload)
    except WebhookError as exc:
        return Event(type="Warning", reason=FAILED, message=str(exc))
    return Event(
        type="Normal",
        reason=CALLED,
        message=f"retraining webhook {hook.url} answered HTTP {code}: {action.metric} of "
        f"{action.version} is {action.value} (threshold {action.threshold})",
    )


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
