"""Actions from two statuses: what an actuator must do to go from one to the other.

Derived from the desired state (``versions``, ``weights``, ``mirror``) rather than
emitted ad hoc by each transition, so the actions can never disagree with the
status. Order matters and is part of the contract: new and bigger versions first
(so they can become Ready), then the routes, then shrinking and stopping (so no
request is routed to a version that is going away).
"""

from __future__ import annotations

from kanaria.api import LiveVersion, ModelDeploymentStatus
from kanaria.rollout.types import Action, ScaleVersion, SetRoutes, StartVersion, StopVersion


def _artifact(v: LiveVersion) -> tuple[str, str, str | None, str | None]:
    return (v.version, v.uri, v.sha256, v.referenceProfile)


def actions_between(before: ModelDeploymentStatus, after: ModelDeploymentStatus) -> list[Action]:
    """Start/scale-up, routes, scale-down/stop: the ordered actions from ``before`` to ``after``."""
    old = {v.version: v for v in before.versions}
    new = {v.version: v for v in after.versions}
    replaced = {n for n in old.keys() & new.keys() if _artifact(old[n]) != _artifact(new[n])}
    first: list[Action] = [StopVersion(version=n) for n in sorted(replaced)]
    grow: list[Action] = []
    shrink: list[Action] = []
    for name, v in new.items():
        if name not in old or name in replaced:
            grow.append(
                StartVersion(
                    version=name,
                    uri=v.uri,
                    sha256=v.sha256,
                    referenceProfile=v.referenceProfile,
                    replicas=v.replicas,
                )
            )
        elif v.replicas > old[name].replicas:
            grow.append(ScaleVersion(version=name, replicas=v.replicas))
        elif v.replicas < old[name].replicas:
            shrink.append(ScaleVersion(version=name, replicas=v.replicas))
    stop: list[Action] = [StopVersion(version=n) for n in old if n not in new]
    routes: list[Action] = []
    if after.weights and (after.weights != before.weights or after.mirror != before.mirror):
        routes.append(SetRoutes(weights=dict(after.weights), mirror=after.mirror))
    return [*first, *grow, *routes, *shrink, *stop]
