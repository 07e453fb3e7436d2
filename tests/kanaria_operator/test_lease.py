"""Leader election against the real API server, with the electors' clocks in the test's
hands (expiry is judged on each elector's own monotonic clock)."""

from __future__ import annotations

import uuid

import pytest
from kanaria_operator.kubeio import Kube, load_api_client
from kanaria_operator.lease import LeaderElector

from tests.support.controlplane import ControlPlane

pytestmark = pytest.mark.controlplane


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def electors(cp: ControlPlane, namespace: str) -> tuple[LeaderElector, LeaderElector, Clock]:
    kube = Kube(load_api_client(cp.kubeconfig))
    name = f"lease-{uuid.uuid4().hex[:6]}"
    clock_b = Clock()
    a = LeaderElector(kube, name, namespace, "a", duration_s=10)
    b = LeaderElector(kube, name, namespace, "b", duration_s=10, clock=clock_b)
    return a, b, clock_b


def test_one_holder_until_the_lease_expires_on_the_standbys_clock(
    control_plane: ControlPlane, namespace: str
) -> None:
    a, b, clock_b = electors(control_plane, namespace)
    assert a.try_acquire_or_renew() is True
    assert b.try_acquire_or_renew() is False
    clock_b.now += 9  # not yet expired as b sees it
    assert b.try_acquire_or_renew() is False
    assert a.try_acquire_or_renew() is True  # a renews: the record changes
    clock_b.now += 9
    assert b.try_acquire_or_renew() is False  # b sees the renewal now: its timer restarts
    clock_b.now += 9
    assert b.try_acquire_or_renew() is False
    clock_b.now += 2  # 11s unchanged since b saw a's renewal, a is gone: expired
    assert b.try_acquire_or_renew() is True
    assert a.try_acquire_or_renew() is False  # a sees b holding a fresh lease
    lease = control_plane.get_json("lease", a.name, "-n", namespace)["spec"]
    assert lease["holderIdentity"] == "b"
    assert lease["leaseTransitions"] == 1


def test_release_hands_over_at_once(control_plane: ControlPlane, namespace: str) -> None:
    a, b, _ = electors(control_plane, namespace)
    assert a.try_acquire_or_renew() is True
    a._set_leader(True)
    a.release()
    assert a.is_leader is False
    assert b.try_acquire_or_renew() is True
