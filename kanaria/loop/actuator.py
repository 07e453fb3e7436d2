"""The adapter protocol: what an actuator reads from and writes to its world.

An actuator knows *how* (processes on 127.0.0.1, or Kubernetes objects); the loop
(:mod:`kanaria.loop.cycle`) knows *what* and *in which order*. Nothing here decides.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from kanaria.api import LiveVersion, Measurement, ModelDeploymentSpec, ModelDeploymentStatus
from kanaria.loop.effects import World
from kanaria.rollout import Command, Decision, MeasurementRequest, Observations, Retrain
from kanaria.rollout.types import VersionObservation
from kanaria.routes import RoutesConfig


@dataclass(frozen=True)
class Reading:
    """Everything an actuator reads at the start of a pass, except measurements."""

    versions: Mapping[str, VersionObservation]
    """Readiness (and, when not ready, why) of every version it runs or was asked to."""
    world: World
    """What runs and which routes are in effect."""
    command: Command | None = None
    """A manual command not yet applied."""
    generation: int | None = None
    """The spec's generation."""


class Actuator(Protocol):
    """Reads and writes one ModelDeployment's world."""

    name: str
    """The ModelDeployment's name (the model's name in the routes document)."""
    namespace: str | None
    """Its namespace (named in each review case); None under ``kanaria up``."""

    def read(self, spec: ModelDeploymentSpec, status: ModelDeploymentStatus | None) -> Reading:
        """Readiness, what runs, the routes in effect, a pending command."""
        ...

    def measure(self, request: MeasurementRequest, now: datetime) -> Measurement:
        """Take one measurement the engine asked for (never raises: an Error verdict)."""
        ...

    def start_version(self, spec: ModelDeploymentSpec, live: LiveVersion, replace: bool) -> None:
        """Run ``live`` at ``live.replicas`` (replacing another artifact under its name)."""
        ...

    def scale_version(self, spec: ModelDeploymentSpec, live: LiveVersion) -> None:
        """Change a running version's replica count to ``live.replicas``."""
        ...

    def addresses(self, versions: list[str]) -> Mapping[str, str]:
        """The URL at which the router reaches each of ``versions`` that has one now."""
        ...

    def write_routes(self, spec: ModelDeploymentSpec, routes: RoutesConfig) -> None:
        """Hand ``routes`` to the router."""
        ...

    def ensure_router(self, spec: ModelDeploymentSpec) -> None:
        """Make sure a router runs, with ``spec.router``'s process settings (auth, rate
        limits: a change restarts it); called each pass once routes exist."""
        ...

    def stop_version(self, version: str) -> None:
        """Stop a version the router no longer names."""
        ...

    def record(
        self, spec: ModelDeploymentSpec, observations: Observations, decision: Decision
    ) -> None:
        """Write the decided status once, post its events, update the loop's metrics."""
        ...

    def retrain(self, spec: ModelDeploymentSpec, decision: Decision, action: Retrain) -> None:
        """Ask for a retrained model (kanaria.retraining, plus what the actuator adds)."""
        ...
