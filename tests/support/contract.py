"""The loop's contract, as scenarios that run unchanged through both actuators.

A behaviour of the control loop (kanaria.loop) must hold for ``kanaria up`` and for
the operator alike, so each scenario here is written once against :class:`Target`
and run by tests/kanaria/local/test_contract.py (real processes) and
tests/kanaria_operator/test_node_product.py (real pods on the real node). A steady
client runs through the router the whole time; the scenarios check what it saw.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

GATES = [{"name": "success-rate", "builtin": "successRate", "min": 0.95}]
CANARY = {"canary": {"steps": [{"setWeight": 50}, {"analysis": {"rounds": 1}}]}}


class Target(Protocol):
    """One actuator running one ModelDeployment, with a steady client on its router."""

    def source(self, version: str) -> dict[str, str]:
        """``spec.model`` for a model file of this target (``v1`` .. ``v3`` exist)."""
        ...

    def apply(self, spec: dict[str, Any]) -> None:
        """Apply ``spec`` (the actuator adds only where it runs: resources, names)."""
        ...

    def wait(self, check: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
        """Wait (bounded) until the status meets ``check``; return it."""
        ...

    def instances(self, version: str) -> set[str]:
        """What runs a version now: process ids, or pod uids."""
        ...

    def failures(self) -> int:
        """Client requests that failed, other than those a model failed on purpose."""
        ...


def spec(
    target: Target, version: str, strategy: dict[str, Any], server_args: list[str] | None = None
) -> dict[str, Any]:
    return {
        "model": target.source(version),
        "server": {"args": server_args or []},
        "strategy": strategy,
        "analysis": {"interval": "2s", "failureLimit": 0, "minRequests": 3, "metrics": GATES},
    }


def healthy_on(version: str) -> Callable[[dict[str, Any]], bool]:
    return lambda s: (
        s.get("phase") == "Healthy" and (s.get("stable") or {}).get("version") == (version)
    )


def rolled_back(version: str) -> Callable[[dict[str, Any]], bool]:
    return lambda s: (
        s.get("phase") == "RolledBack" and (s.get("candidate") or {}).get("version") == version
    )


def promoted_then_old_version_stopped(target: Target, old: str, new: str) -> None:
    """A canary is promoted; the old version stops only once the router runs routes
    without it, so the client sees no failure through the promotion and the stop."""
    assert target.instances(old)
    target.apply(spec(target, new, CANARY))
    target.wait(healthy_on(new), f"{new} promoted")
    target.wait(lambda s: not target.instances(old), f"{old} stopped")
    assert target.failures() == 0


def faulty_candidate_leaves_the_stable_running(target: Target, stable: str, bad: str) -> None:
    """Server settings belong to a version: a candidate started with fault injection is
    rolled back, and the stable's processes or pods never restarted."""
    before = target.instances(stable)
    target.apply(spec(target, bad, CANARY, ["--chaos-error-rate", "0.5"]))
    status = target.wait(rolled_back(bad), f"{bad} rolled back")
    assert status["weights"] == {stable: 100}
    assert target.instances(stable) == before
    assert target.failures() == 0  # the injected errors are counted apart


def new_server_settings_replace_the_stable(target: Target, stable: str) -> None:
    """The same version with other server settings is another artifact: with no
    rollout running it replaces what runs, and clients see no failure."""
    before = target.instances(stable)
    args = ["--chaos-latency-ms", "1"]
    target.apply(spec(target, stable, CANARY, args))
    target.wait(
        lambda s: ((s.get("stable") or {}).get("server") or {}).get("args") == args,
        "the stable's server settings",
    )
    target.wait(
        lambda s: bool(target.instances(stable)) and not target.instances(stable) & before,
        f"{stable} replaced",
    )
    target.wait(healthy_on(stable), f"{stable} Healthy again")
    assert target.failures() == 0
