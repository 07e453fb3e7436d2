"""Leader election with a coordination.k8s.io Lease: one operator acts, others stand by.

Two operators at once (two replicas, or old and new pod during a rolling
update) would both drive the same rollout and race on status. Only the holder
of the Lease reconciles; the others watch and keep the Lease under observation.

Expiry is judged the way client-go does it: by how long *this* process has seen
the Lease record unchanged (a monotonic clock), never by comparing the holder's
timestamps with our own wall clock, so clock skew between nodes cannot elect two
leaders. Updates carry the resourceVersion they read, so of two candidates that
try to take an expired Lease at once, the API server lets exactly one win.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kanaria_operator.kubeio import Kube
from kubernetes.dynamic.exceptions import ConflictError, NotFoundError

log = logging.getLogger(__name__)


def _micro_time(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class _Observed:
    record: tuple[Any, ...]
    at: float


class LeaderElector:
    """Acquire and renew a Lease in a background thread; ``is_leader`` says who acts."""

    def __init__(
        self,
        kube: Kube,
        name: str,
        namespace: str,
        identity: str,
        duration_s: float,
        on_change: Callable[[bool], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kube = kube
        self.name = name
        self.namespace = namespace
        self.identity = identity
        self.duration_s = duration_s
        self._on_change = on_change
        self._clock = clock
        self._leader = threading.Event()
        self._stop = threading.Event()
        self._observed: _Observed | None = None
        self._thread: threading.Thread | None = None

    @property
    def is_leader(self) -> bool:
        return self._leader.is_set()

    def _set_leader(self, value: bool) -> None:
        if value != self.is_leader:
            (self._leader.set if value else self._leader.clear)()
            log.info(
                "%s leadership of lease %s/%s as %s",
                "acquired" if value else "lost",
                self.namespace,
                self.name,
                self.identity,
            )
            if self._on_change is not None:
                self._on_change(value)

    def _spec(self, acquire_time: str | None, transitions: int) -> dict[str, Any]:
        now = _micro_time(datetime.now(UTC))
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.duration_s)),
            "acquireTime": acquire_time or now,
            "renewTime": now,
            "leaseTransitions": transitions,
        }

    def try_acquire_or_renew(self) -> bool:
        """One round: create, renew or take over the Lease. Returns whether we lead."""
        leases = self.kube.resource("coordination.k8s.io/v1", "Lease")
        try:
            lease = self.kube.get(leases, self.name, self.namespace)
        except NotFoundError:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._spec(None, 0),
            }
            try:
                self.kube.create(leases, body, self.namespace)
            except ConflictError:
                return False
            return True
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        record = (holder, spec.get("renewTime"), spec.get("leaseDurationSeconds"))
        now = self._clock()
        if self._observed is None or self._observed.record != record:
            self._observed = _Observed(record, now)
        duration = float(spec.get("leaseDurationSeconds") or self.duration_s)
        expired = now - self._observed.at > duration
        if holder and holder != self.identity and not expired:
            return False
        transitions = int(spec.get("leaseTransitions") or 0)
        mine = holder == self.identity
        lease["spec"] = self._spec(
            spec.get("acquireTime") if mine else None, transitions if mine else transitions + 1
        )
        try:
            self.kube.replace(leases, lease, self.namespace)
        except ConflictError:
            return False
        return True

    def release(self) -> None:
        """Give the Lease up on shutdown so a successor need not wait for it to expire."""
        if not self.is_leader:
            return
        leases = self.kube.resource("coordination.k8s.io/v1", "Lease")
        try:
            lease = self.kube.get(leases, self.name, self.namespace)
            if (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                lease["spec"]["holderIdentity"] = ""
                lease["spec"]["leaseDurationSeconds"] = 1
                self.kube.replace(leases, lease, self.namespace)
        except Exception as exc:  # shutting down: a failed release only delays the successor
            log.warning("could not release lease %s/%s: %s", self.namespace, self.name, exc)
        self._set_leader(False)

    def _loop(self) -> None:
        interval = self.duration_s / 3
        while not self._stop.is_set():
            started = self._clock()
            try:
                leading = self.try_acquire_or_renew()
            except Exception as exc:  # API server unreachable: stop acting until renewed
                log.warning("lease %s/%s: %s", self.namespace, self.name, exc)
                leading = False
            self._set_leader(leading)
            elapsed = self._clock() - started
            self._stop.wait(max(0.05, (interval if leading else interval / 2) - elapsed))

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="leader-election", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.release()
