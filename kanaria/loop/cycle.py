"""One observe -> decide -> act pass, the same for ``kanaria up`` and the operator.

1. read: readiness, what runs, the routes in effect, a pending command;
2. measure what the engine planned for this stage (``plan_measurements``);
3. decide (:func:`kanaria.rollout.decide`, pure);
4. act in the fixed order of :mod:`kanaria.loop.effects`: versions up, routes and
   the router, versions down, stops only after the router confirmed routes
   without them;
5. record: the status written once, events, metrics; then retraining requests;
6. say when the next pass is due: the engine's ``nextPassAt``, or a second from now
   while a stop waits for the router's confirmation. Readiness changes wake the
   actuator's loop earlier (each actuator watches its own world for them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from kanaria.api import ModelDeploymentSpec, ModelDeploymentStatus
from kanaria.loop.actuator import Actuator, Reading
from kanaria.loop.effects import (
    ScaleVersion,
    StartVersion,
    StopVersion,
    shrink_effects,
    stop_effects,
    version_effects,
)
from kanaria.loop.routes import build_routes
from kanaria.rollout import Decision, Observations, decide, plan_measurements
from kanaria.routes import RoutesConfig

RECHECK_S = 1.0
"""How soon to look again while a dropped version waits for the router's confirmation."""

Effect = StartVersion | ScaleVersion | RoutesConfig | StopVersion


@dataclass(frozen=True)
class PassOutcome:
    """What one pass saw, decided and did."""

    reading: Reading
    observations: Observations
    decision: Decision
    effects: list[Effect] = field(default_factory=list)
    """Effects applied, in order (a RoutesConfig stands for "routes written")."""
    held: list[str] = field(default_factory=list)
    """Dropped versions still running until the router confirms routes without them."""
    next_pass_at: datetime | None = None
    """When the loop should run again on its own (None: wait for a change)."""


def run_pass(
    actuator: Actuator,
    spec: ModelDeploymentSpec,
    status: ModelDeploymentStatus | None,
    now: datetime,
) -> PassOutcome:
    """One pass over one ModelDeployment (see the module docstring)."""
    reading = actuator.read(spec, status)
    requests = plan_measurements(spec, status, now)
    taken = [actuator.measure(r, now) for r in requests]
    observations = Observations(
        versions=dict(reading.versions),
        measurements=[m for r, m in zip(requests, taken, strict=True) if r.purpose == "analysis"],
        retraining=next(
            (m for r, m in zip(requests, taken, strict=True) if r.purpose == "retraining"), None
        ),
        command=reading.command,
        generation=reading.generation,
    )
    decision = decide(spec, status, observations, now)
    decided = decision.status
    world = reading.world
    effects: list[Effect] = []

    for effect in version_effects(spec, decided, world):
        if isinstance(effect, StartVersion):
            actuator.start_version(spec, effect.live, effect.replace)
        else:
            actuator.scale_version(spec, effect.live)
        effects.append(effect)

    ready = {v: o.ready for v, o in reading.versions.items()}
    names = [v.version for v in decided.versions] or [spec.model.version]
    routes = build_routes(
        actuator.name,
        spec,
        decided,
        actuator.addresses(names),
        ready,
        namespace=actuator.namespace,
    )
    routes_written_now = routes is not None and routes.revision != world.routes.revision
    if routes is not None and routes_written_now:
        actuator.write_routes(spec, routes)
        effects.append(routes)
    if routes is not None or world.routes.revision is not None:
        actuator.ensure_router(spec)

    for shrink in shrink_effects(decided, world):
        actuator.scale_version(spec, shrink.live)
        effects.append(shrink)

    stops, held = stop_effects(decided, world, routes_written_now)
    for stop in stops:
        actuator.stop_version(stop.version)
        effects.append(stop)

    actuator.record(spec, observations, decision)
    for action in decision.actions:
        actuator.retrain(spec, decision, action)

    next_at = decision.nextPassAt
    if held or routes_written_now:
        soon = now + timedelta(seconds=RECHECK_S)
        next_at = soon if next_at is None else min(next_at, soon)
    return PassOutcome(reading, observations, decision, effects, held, next_at)
