"""What a pass does to the world, planned from the decided status against what runs.

Level-triggered: the plan compares ``decision.status`` with what the actuator
observed running (:class:`World`), never with the previous status, so a restarted
actuator, a process that died or a Deployment deleted by hand converge the same
way. The order is fixed and is the contract both actuators follow:

1. start versions that should run and do not, or run another artifact (replace);
   scale up the ones that need more replicas -- so they can become Ready;
2. write the routes (when their revision differs from the written one), and make
   sure a router runs with ``spec.router``'s process settings;
3. scale down;
4. stop versions the status dropped, but only once the router has confirmed routes
   that no longer name them (its in-flight requests drain; nothing new arrives).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from kanaria.api import LiveVersion, ModelDeploymentSpec, ModelDeploymentStatus
from kanaria.loop.identity import artifact_of

CONFIRM_GRACE_S = 10.0
"""How long after writing routes a dropped version may be stopped when the router's
confirmation cannot be read (no router reachable from the actuator). A router applies
a routes document within a second of seeing it; a stop after that costs at most a
retry of a request already in flight."""


@dataclass(frozen=True)
class RunningVersion:
    """A version as it runs (as the actuator found it)."""

    artifact: str
    """Its :func:`kanaria.loop.identity.artifact_of` digest when it was started."""
    replicas: int


@dataclass(frozen=True)
class RoutesSeen:
    """The routes as written and as the router runs them."""

    revision: str | None = None
    """Revision of the routes last written (None: none written yet)."""
    versions: frozenset[str] = frozenset()
    """Versions those routes name (a backend or the mirror)."""
    confirmed: bool | None = None
    """Does every router run that revision? None: the actuator cannot tell."""
    age_s: float = 0.0
    """Seconds since that revision was written (as far as the actuator knows)."""

    def settled(self) -> bool:
        """Are the written routes in effect (confirmed, or unconfirmable and old enough)?"""
        if self.confirmed is None:
            return self.age_s >= CONFIRM_GRACE_S
        return self.confirmed


@dataclass(frozen=True)
class World:
    """What runs, as the actuator observed it at the start of the pass."""

    versions: Mapping[str, RunningVersion]
    routes: RoutesSeen


@dataclass(frozen=True)
class StartVersion:
    """Start ``live`` (replacing what runs under its name, if ``replace``)."""

    live: LiveVersion
    replace: bool = False


@dataclass(frozen=True)
class ScaleVersion:
    """Run ``live`` (already running the same artifact) at ``live.replicas``."""

    live: LiveVersion


@dataclass(frozen=True)
class StopVersion:
    version: str


def version_effects(
    spec: ModelDeploymentSpec, status: ModelDeploymentStatus, world: World
) -> list[StartVersion | ScaleVersion]:
    """Step 1: what must start (or be replaced) and what must grow."""
    out: list[StartVersion | ScaleVersion] = []
    for live in status.versions:
        if live.replicas <= 0:
            continue
        running = world.versions.get(live.version)
        if running is None:
            out.append(StartVersion(live))
        elif running.artifact != artifact_of(live, spec):
            out.append(StartVersion(live, replace=True))
        elif live.replicas > running.replicas:
            out.append(ScaleVersion(live))
    return out


def shrink_effects(status: ModelDeploymentStatus, world: World) -> list[ScaleVersion]:
    """Step 3: versions that keep running with fewer replicas."""
    return [
        ScaleVersion(live)
        for live in status.versions
        if 0 < live.replicas < getattr(world.versions.get(live.version), "replicas", 0)
    ]


def stop_effects(
    status: ModelDeploymentStatus, world: World, routes_written_now: bool
) -> tuple[list[StopVersion], list[str]]:
    """Step 4: versions to stop now, and those held until the router confirms.

    A version is stopped once the status no longer wants it and the routes in effect
    do not name it. Routes written in this very pass are not in effect yet: their
    versions wait for the next pass.
    """
    wanted = {live.version for live in status.versions if live.replicas > 0}
    stop: list[StopVersion] = []
    held: list[str] = []
    for version in sorted(world.versions):
        if version in wanted:
            continue
        routes = world.routes
        if not routes_written_now and routes.settled() and version not in routes.versions:
            stop.append(StopVersion(version))
        else:
            held.append(version)
    return stop, held
