"""kopf handlers: one daemon per ModelDeployment drives its passes.

Importing this module registers the handlers, so both ``kanaria operator`` and
``kopf run -m kanaria_operator.handlers`` work (the latter reads its settings
from KANARIA_* environment variables only).

Why a daemon and not a timer: the next pass is due when the engine says
(``Decision.nextPassAt``: an analysis round, a pause ending), and a spec change, a
manual command or a version's readiness changing must start a pass at once; a
daemon sleeps on "next pass due, or woken by a change". kopf
puts its finalizer on ModelDeployments for daemons, so a deletion waits until
the daemon stopped; children are then removed by garbage collection through
their owner references.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import kopf
from kanaria_operator.kubeio import Kube, load_api_client
from kanaria_operator.lease import LeaderElector
from kanaria_operator.measure import PrometheusMeasure
from kanaria_operator.objects import LABEL_COMPONENT, LABEL_MD, Images
from kanaria_operator.reconcile import Reconciler
from kanaria_operator.settings import OperatorSettings
from kubernetes.dynamic.exceptions import ResourceNotFoundError
from prometheus_client import start_http_server

from kanaria.api import COMMAND_ANNOTATION, GROUP, PLURAL, VERSION

FINALIZER = "kanaria.io/operator"
STANDBY_POLL_S = 1.0
"""How often a standby operator checks whether it became the leader."""

log = logging.getLogger("kanaria_operator")


@dataclass
class _State:
    settings: OperatorSettings
    reconciler: Reconciler
    elector: LeaderElector
    loop: asyncio.AbstractEventLoop
    wake: dict[tuple[str, str], asyncio.Event] = field(default_factory=dict)
    seen: dict[tuple[str, str], tuple[Any, ...]] = field(default_factory=dict)

    def wake_event(self, namespace: str, name: str) -> asyncio.Event:
        return self.wake.setdefault((namespace, name), asyncio.Event())

    def wake_all(self) -> None:
        for event in self.wake.values():
            event.set()


@dataclass
class _Runtime:
    """What kopf's handler functions share: kopf gives them no object of ours."""

    configured: OperatorSettings | None = None
    state: _State | None = None


_runtime = _Runtime()


def configure(settings: OperatorSettings) -> None:
    """Settings for the next operator start (``kanaria operator`` passes its flags here)."""
    _runtime.configured = settings


def _require_state() -> _State:
    if _runtime.state is None:
        raise kopf.PermanentError("the operator did not start (startup handler missing)")
    return _runtime.state


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    """Connect, start the metrics endpoint and leader election, tune kopf."""
    ours = _runtime.configured or OperatorSettings()
    settings.persistence.finalizer = FINALIZER
    settings.posting.enabled = False  # we post our own Events, one per engine event
    # No dynamic scanning of CRDs and namespaces: it needs cluster-wide list/watch on
    # both, and the operator serves one resource that must be installed first.
    settings.scanning.disabled = True
    settings.execution.max_workers = 64
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    kube = Kube(load_api_client(ours.kubeconfig))
    try:
        await asyncio.to_thread(lambda: kube.modeldeployments)
    except ResourceNotFoundError as exc:
        raise kopf.PermanentError(
            "the ModelDeployment CRD is not installed: kubectl apply -f manifests/crds "
            "(or install the Helm chart) before starting the operator"
        ) from exc
    reconciler = Reconciler(
        kube,
        Images(ours.server_image, ours.router_image, ours.image_pull_policy),
        PrometheusMeasure(ours.prometheus_url),
        ours.resync_interval_s,
        check_model_uris=ours.check_model_uris,
    )
    loop = asyncio.get_running_loop()
    elector = LeaderElector(
        kube,
        ours.lease_name,
        ours.lease_namespace,
        ours.identity,
        ours.lease_duration_s,
        on_change=lambda _leading: _wake_all_soon(loop),
    )
    _runtime.state = _State(ours, reconciler, elector, loop)
    if ours.metrics_port:
        start_http_server(ours.metrics_port, addr=ours.metrics_host)
    elector.start()
    log.info(
        "kanaria operator %s started: %s, prometheus %s",
        ours.identity,
        "namespaces " + ",".join(ours.namespaces) if ours.namespaces else "cluster-wide",
        ours.prometheus_url or "(none: gates will report Error)",
    )


def _wake_all_soon(loop: asyncio.AbstractEventLoop) -> None:
    """Leadership changed (elector thread): run every daemon's next round now."""
    loop.call_soon_threadsafe(_wake_all)


def _wake_all() -> None:
    if _runtime.state is not None:
        _runtime.state.wake_all()


@kopf.on.cleanup()
async def cleanup(**_: Any) -> None:
    """Give up the leader Lease so a successor starts at once."""
    if _runtime.state is not None:
        await asyncio.to_thread(_runtime.state.elector.stop)


@kopf.on.login()
def login(**_: Any) -> kopf.ConnectionInfo:
    """kopf connects with the same credentials as our own client (the --kubeconfig
    setting, else in-cluster, else ~/.kube/config)."""
    ours = _runtime.configured or OperatorSettings()
    cfg = load_api_client(ours.kubeconfig).configuration
    header = cfg.get_api_key_with_prefix("BearerToken") or cfg.get_api_key_with_prefix(
        "authorization"
    )
    scheme, _sep, token = (header or "").rpartition(" ")
    return kopf.ConnectionInfo(
        server=cfg.host,
        ca_path=cfg.ssl_ca_cert,
        insecure=not cfg.verify_ssl,
        scheme=scheme or ("Bearer" if token else None),
        token=token or None,
        certificate_path=cfg.cert_file,
        private_key_path=cfg.key_file,
    )


@kopf.on.event(GROUP, VERSION, PLURAL)
async def changed(event: kopf.RawEvent, name: str, namespace: str | None, **_: Any) -> None:
    """Wake the daemon when the spec or the command annotation changed (not on our own
    status writes, which would otherwise loop)."""
    state = _runtime.state
    if state is None or not name or not namespace:
        return
    body = event.get("object") or {}
    meta = body.get("metadata") or {}
    key = (namespace, name)
    if event.get("type") == "DELETED":
        state.seen.pop(key, None)
        return
    fingerprint = (meta.get("generation"), (meta.get("annotations") or {}).get(COMMAND_ANNOTATION))
    if state.seen.get(key) != fingerprint:
        state.seen[key] = fingerprint
        state.wake_event(namespace, name).set()


@kopf.on.event("apps", "v1", "deployments", labels={LABEL_COMPONENT: "model-server"})
async def version_changed(event: kopf.RawEvent, name: str, namespace: str | None, **_: Any) -> None:
    """Wake the owner's daemon when a version's readiness changes, so that a candidate
    becoming Ready (or a stable losing its pods) is acted on at once, not at the next
    analysis interval."""
    state = _runtime.state
    if state is None or not name or not namespace:
        return
    body = event.get("object") or {}
    owner = ((body.get("metadata") or {}).get("labels") or {}).get(LABEL_MD)
    if not owner:
        return
    key = (namespace, f"deployment/{name}")
    if event.get("type") == "DELETED":
        state.seen.pop(key, None)
        fingerprint: tuple[Any, ...] = ("deleted",)
    else:
        st = body.get("status") or {}
        fingerprint = (st.get("readyReplicas"), st.get("availableReplicas"), st.get("replicas"))
    if state.seen.get(key) != fingerprint:
        state.seen[key] = fingerprint
        if (namespace, owner) in state.wake:
            state.wake[(namespace, owner)].set()


@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=10.0)
async def drive(name: str, namespace: str | None, stopped: kopf.DaemonStopped, **_: Any) -> None:
    """Run passes for one ModelDeployment until it is deleted or the operator stops."""
    state = _require_state()
    if namespace is None:  # ModelDeployments are namespaced; kopf types allow None
        return
    wake = state.wake_event(namespace, name)
    try:
        while not stopped:
            wake.clear()
            if state.elector.is_leader:
                delay = await asyncio.to_thread(state.reconciler.run_pass, name, namespace)
            else:
                delay = STANDBY_POLL_S
            waiter = asyncio.ensure_future(wake.wait())
            stopper = asyncio.ensure_future(stopped.wait())
            try:
                await asyncio.wait({waiter, stopper}, timeout=delay, return_when="FIRST_COMPLETED")
            finally:
                waiter.cancel()
                stopper.cancel()
    finally:
        state.wake.pop((namespace, name), None)
        state.reconciler.forget(namespace, name)
