"""The operator's Kubernetes I/O: a thin layer over the client's DynamicClient.

Everything that talks to the API server goes through :class:`Kube`, so the
reconcile logic deals in plain dicts and the builders in
:mod:`kanaria_operator.objects` stay pure. Objects are written with server-side
apply (field manager ``kanaria-operator``), which creates or updates in one
call and leaves fields owned by others (an HPA's replicas, a user's labels)
alone.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kanaria_operator.objects import MANAGER
from kubernetes import client, config
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import DynamicApiError, NotFoundError
from kubernetes.dynamic.resource import Resource

from kanaria.api import API_VERSION, KIND

log = logging.getLogger(__name__)


def load_api_client(kubeconfig: Path | None) -> client.ApiClient:
    """An API client from ``kubeconfig``, else in-cluster config, else ~/.kube/config."""
    # The kubernetes package ships no type hints for its config loaders.
    if kubeconfig is not None:
        api: client.ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(kubeconfig)
        )
        return api
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
        return client.ApiClient()
    except config.ConfigException:
        return config.new_client_from_config()  # type: ignore[no-untyped-call,no-any-return]


def merge_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """A JSON merge patch (RFC 7386) turning ``old`` into ``new``.

    Merge patches merge maps recursively, so a key that disappeared (a version
    dropped from ``status.weights``) must be sent as null at every depth.
    """
    patch: dict[str, Any] = {k: None for k in old if k not in new}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, dict) and isinstance(before, dict):
            patch[key] = merge_patch(before, value)
        else:
            patch[key] = value
    return patch


def summary(exc: DynamicApiError) -> str:
    """The API server's message for a failed call (e.g. a 422's field errors)."""
    return str(exc.summary())  # type: ignore[no-untyped-call]


class Kube:
    """Typed-enough helpers over the dynamic client; every result is a plain dict."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self.api_client = api_client
        self._dynamic: DynamicClient | None = None
        self._lock = threading.Lock()
        self._resources: dict[tuple[str, str], Resource] = {}

    @property
    def dynamic(self) -> DynamicClient:
        with self._lock:
            if self._dynamic is None:
                # A private discovery cache: the default one in /tmp is shared by every
                # process on the host and may predate the CRD.
                cache = Path(tempfile.mkdtemp(prefix="kanaria-operator-")) / "discovery.json"
                self._dynamic = DynamicClient(  # type: ignore[no-untyped-call]
                    self.api_client, cache_file=str(cache)
                )
            return self._dynamic

    def resource(self, api_version: str, kind: str) -> Resource:
        key = (api_version, kind)
        if key not in self._resources:
            self._resources[key] = self.dynamic.resources.get(api_version=api_version, kind=kind)
        return self._resources[key]

    def for_object(self, obj: dict[str, Any]) -> Resource:
        return self.resource(obj["apiVersion"], obj["kind"])

    @staticmethod
    def _dict(result: Any) -> dict[str, Any]:
        out: dict[str, Any] = result.to_dict()
        return out

    def get(self, resource: Resource, name: str, namespace: str | None) -> dict[str, Any]:
        return self._dict(resource.get(name=name, namespace=namespace))

    def get_or_none(
        self, resource: Resource, name: str, namespace: str | None
    ) -> dict[str, Any] | None:
        try:
            return self.get(resource, name, namespace)
        except NotFoundError:
            return None

    def list(self, resource: Resource, namespace: str, selector: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self._dict(
            resource.get(namespace=namespace, label_selector=selector)
        ).get("items", [])
        return items

    def create(
        self, resource: Resource, body: dict[str, Any], namespace: str | None
    ) -> dict[str, Any]:
        return self._dict(resource.create(body=body, namespace=namespace))

    def replace(
        self, resource: Resource, body: dict[str, Any], namespace: str | None
    ) -> dict[str, Any]:
        return self._dict(resource.replace(body=body, namespace=namespace))

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply ``obj`` as the operator (force: the operator owns these fields)."""
        return self._dict(
            self.for_object(obj).server_side_apply(
                body=obj,
                namespace=obj["metadata"].get("namespace"),
                field_manager=MANAGER,
                force_conflicts=True,
            )
        )

    def delete(self, resource: Resource, name: str, namespace: str) -> None:
        with contextlib.suppress(NotFoundError):
            resource.delete(
                name=name, namespace=namespace, body={"propagationPolicy": "Background"}
            )

    # ------------------------------------------------------------ ModelDeployments

    @property
    def modeldeployments(self) -> Resource:
        return self.resource(API_VERSION, KIND)

    def get_model_deployment(self, name: str, namespace: str) -> dict[str, Any] | None:
        return self.get_or_none(self.modeldeployments, name, namespace)

    def patch_status(
        self, name: str, namespace: str, status: dict[str, Any], old: dict[str, Any]
    ) -> None:
        """Replace ``status`` through the status subresource (one write per pass).

        A JSON merge patch with ``status`` set whole: keys of ``old`` (the status
        read at the start of the pass) that the engine dropped are sent as null.
        Nothing is written when nothing changed (an idle ModelDeployment's passes
        would otherwise churn resourceVersions and wake every watcher).
        """
        if status == old:
            return
        body = {"status": merge_patch(old, status)}
        self.modeldeployments.status.patch(
            body=body,
            name=name,
            namespace=namespace,
            content_type="application/merge-patch+json",
        )

    # ------------------------------------------------------------ Events

    def event(
        self,
        owner: dict[str, Any],
        reason: str,
        message: str,
        warning: bool = False,
    ) -> None:
        """Post a core/v1 Event about ``owner`` (``kubectl describe mdep`` lists them)."""
        meta = owner["metadata"]
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{meta['name']}.{uuid.uuid4().hex[:12]}",
                "namespace": meta["namespace"],
            },
            "involvedObject": {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "reason": reason,
            "message": message[:1024],
            "type": "Warning" if warning else "Normal",
            "source": {"component": MANAGER},
            "reportingComponent": MANAGER,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            self.create(self.resource("v1", "Event"), body, meta["namespace"])
        except Exception as exc:  # an Event is a courtesy: never fail a pass over it
            log.warning("could not post event %s on %s: %s", reason, meta["name"], exc)
