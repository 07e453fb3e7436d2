"""The one control loop (kanaria.loop.run_pass), driven through an in-memory world.

``Recorder`` is a stand-in actuator: it keeps what runs in a dict and records every
call, so these tests pin the loop's contract (what is done, in which order, and when
the next pass is due) without processes. The same loop runs against real processes
and real pods in tests/kanaria/local/test_contract.py and
tests/kanaria_operator/test_node_contract.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from kanaria.api import (
    LiveVersion,
    Measurement,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    Phase,
    Verdict,
)
from kanaria.loop import (
    Reading,
    RoutesSeen,
    RunningVersion,
    World,
    artifact_of,
    build_routes,
    run_pass,
)
from kanaria.loop.effects import CONFIRM_GRACE_S
from kanaria.loop.routes import routed_versions, router_revisions
from kanaria.rollout import (
    Command,
    Decision,
    MeasurementRequest,
    Observations,
    Retrain,
    VersionObservation,
)
from kanaria.routes import RoutesConfig
from tests.kanaria.rollout_sim import T0, make_spec

CANARY = {"canary": {"steps": [{"setWeight": 50}, {"pause": {"duration": "45s"}}]}}


@dataclass
class Recorder:
    """An actuator whose world is a dict (a stand-in: no processes, no API server)."""

    name: str = "m"
    namespace: str | None = None
    running: dict[str, RunningVersion] = field(default_factory=dict)
    routes: RoutesConfig | None = None
    router_runs: str | None = None
    """The revision the (imaginary) router runs; None: it cannot be asked."""
    router_reachable: bool = True
    routes_age_s: float = 0.0
    unready: set[str] = field(default_factory=set)
    command: Command | None = None
    calls: list[tuple[str, Any]] = field(default_factory=list)
    status: ModelDeploymentStatus | None = None

    def read(self, spec: ModelDeploymentSpec, status: ModelDeploymentStatus | None) -> Reading:
        versions = {v: VersionObservation(ready=v not in self.unready) for v in self.running}
        seen = RoutesSeen()
        if self.routes is not None:
            confirmed = (
                (self.router_runs == self.routes.revision) if self.router_reachable else None
            )
            seen = RoutesSeen(
                revision=self.routes.revision,
                versions=routed_versions(self.routes),
                confirmed=confirmed,
                age_s=self.routes_age_s,
            )
        command, self.command = self.command, None
        return Reading(versions, World(dict(self.running), seen), command, 1)

    def measure(self, request: MeasurementRequest, now: datetime) -> Measurement:
        return Measurement(
            metric=request.gate.name, version=request.version, verdict=Verdict.Successful, time=now
        )

    def start_version(self, spec: ModelDeploymentSpec, live: LiveVersion, replace: bool) -> None:
        self.calls.append(("replace" if replace else "start", live.version))
        self.running[live.version] = RunningVersion(artifact_of(live, spec), live.replicas)

    def scale_version(self, spec: ModelDeploymentSpec, live: LiveVersion) -> None:
        self.calls.append(("scale", (live.version, live.replicas)))
        self.running[live.version] = RunningVersion(artifact_of(live, spec), live.replicas)

    def addresses(self, versions: list[str]) -> Mapping[str, str]:
        return {v: f"http://{v}.test" for v in versions if v in self.running}

    def write_routes(self, spec: ModelDeploymentSpec, routes: RoutesConfig) -> None:
        self.calls.append(("routes", dict(routes.models[self.name].versions)))
        self.routes = routes
        self.routes_age_s = 0.0

    def ensure_router(self, spec: ModelDeploymentSpec) -> None:
        self.calls.append(("router", None))

    def stop_version(self, version: str) -> None:
        self.calls.append(("stop", version))
        del self.running[version]

    def record(
        self, spec: ModelDeploymentSpec, observations: Observations, decision: Decision
    ) -> None:
        self.calls.append(("record", decision.status.phase))
        self.status = decision.status

    def retrain(self, spec: ModelDeploymentSpec, decision: Decision, action: Retrain) -> None:
        self.calls.append(("retrain", action.version))

    def router_applies(self) -> None:
        """The router picks up the routes last written."""
        assert self.routes is not None
        self.router_runs = self.routes.revision

    def kinds(self) -> list[str]:
        """The calls since the last look, without the router and record bookkeeping."""
        out = [c[0] for c in self.calls if c[0] not in ("router", "record")]
        self.calls.clear()
        return out


def spec_at(version: str, **server: Any) -> ModelDeploymentSpec:
    spec = make_spec(CANARY, version=version)
    if server:
        spec = spec.model_copy(update={"server": spec.server.model_copy(update=server)})
    return spec


def passes(world: Recorder, spec: ModelDeploymentSpec, now: datetime, n: int = 1) -> Decision:
    decision = None
    for _ in range(n):
        outcome = run_pass(world, spec, world.status, now)
        decision = outcome.decision
        if world.routes is not None:
            world.router_applies()
    assert decision is not None
    return decision


def test_first_pass_starts_the_version_then_writes_routes_then_the_router() -> None:
    world = Recorder()
    outcome = run_pass(world, spec_at("v1"), None, T0)
    assert [c[0] for c in world.calls] == ["start", "routes", "router", "record"]
    assert world.calls[0] == ("start", "v1")
    assert outcome.held == []
    # Routes were just written: the loop looks again soon, to see them confirmed.
    assert outcome.next_pass_at == T0 + timedelta(seconds=1)


def test_a_dropped_version_stops_only_after_the_router_runs_routes_without_it() -> None:
    world = Recorder()
    passes(world, spec_at("v1"), T0, 2)
    world.kinds()
    v2 = spec_at("v2")
    now = T0 + timedelta(seconds=1)
    passes(world, v2, now, 3)  # v2 starts, becomes Ready, takes 50%
    assert world.status is not None
    assert world.status.weights == {"v1": 50, "v2": 50}
    world.kinds()
    world.command = Command(verb="promote-full", nonce="n1")
    outcome = run_pass(world, v2, world.status, now)
    assert world.status.phase is Phase.Healthy
    # v2 grows to the full size first, then the routes move; v1 still runs.
    assert world.kinds() == ["scale", "routes"]
    assert outcome.held == ["v1"]
    # The router has not applied them yet: v1 is held, however many passes run.
    for _ in range(3):
        outcome = run_pass(world, v2, world.status, now)
        assert outcome.held == ["v1"]
        assert outcome.next_pass_at == now + timedelta(seconds=1)
    assert world.kinds() == []
    world.router_applies()
    outcome = run_pass(world, v2, world.status, now)
    assert world.kinds() == ["stop"]
    assert "v1" not in world.running
    assert outcome.held == []


def test_without_a_router_to_ask_a_stop_waits_out_the_grace_period() -> None:
    world = Recorder(router_reachable=False)
    passes(world, spec_at("v1"), T0, 2)
    v2 = spec_at("v2")
    passes(world, v2, T0, 3)
    world.command = Command(verb="promote-full", nonce="n1")
    run_pass(world, v2, world.status, T0)
    world.kinds()
    world.routes_age_s = CONFIRM_GRACE_S / 2
    assert run_pass(world, v2, world.status, T0).held == ["v1"]
    world.routes_age_s = CONFIRM_GRACE_S
    run_pass(world, v2, world.status, T0)
    assert world.kinds() == ["stop"]


def test_another_artifact_under_the_same_version_name_replaces_it() -> None:
    world = Recorder()
    passes(world, spec_at("v1"), T0, 2)
    world.kinds()
    # Server settings belong to the version: a change with no rollout running reaches
    # the stable, and it is a new artifact.
    changed = spec_at("v1", args=["--chaos-latency-ms", "5"])
    passes(world, changed, T0)
    assert world.kinds() == ["replace"]
    passes(world, changed, T0)
    assert world.kinds() == []  # converged: nothing more to do


def test_growth_comes_before_the_routes_and_shrinking_after() -> None:
    world = Recorder()
    spec = spec_at("v1")
    passes(world, spec, T0, 2)
    world.kinds()
    bigger = spec.model_copy(update={"replicas": 5})
    passes(world, bigger, T0)
    assert world.kinds() == ["scale"]
    assert world.running["v1"].replicas == 5
    passes(world, spec, T0)
    assert world.kinds() == ["scale"]
    assert world.running["v1"].replicas == 2


def test_the_next_pass_is_when_the_pause_ends() -> None:
    world = Recorder()
    passes(world, spec_at("v1"), T0, 2)
    v2 = spec_at("v2")
    passes(world, v2, T0, 3)
    now = T0 + timedelta(seconds=10)
    outcome = run_pass(world, v2, world.status, now)
    assert world.status is not None
    assert world.status.currentStep == 1  # in the 45 s pause
    assert world.status.stepStartedAt is not None
    assert outcome.next_pass_at == world.status.stepStartedAt + timedelta(seconds=45)


def test_an_unchanged_world_needs_no_pass_until_something_changes() -> None:
    world = Recorder()
    spec = spec_at("v1")
    passes(world, spec, T0, 3)
    world.kinds()
    outcome = run_pass(world, spec, world.status, T0 + timedelta(seconds=30))
    assert world.kinds() == []
    assert outcome.next_pass_at is None


def test_routes_readiness_rule_and_content_revision() -> None:
    spec = spec_at("v2")
    status = ModelDeploymentStatus(
        versions=[
            LiveVersion(version="v1", uri="file:///v1", role="stable", replicas=1),
            LiveVersion(version="v2", uri="file:///v2", role="candidate", replicas=1),
        ],
        weights={"v1": 80, "v2": 20},
    )
    urls = {"v1": "http://a", "v2": "http://b"}
    one_ready = build_routes("m", spec, status, urls, {"v1": True})
    assert one_ready is not None
    backends = one_ready.models["m"].versions
    assert (backends["v1"].ready, backends["v2"].ready) == (True, False)
    # No weighted version Ready: all weighted ones are eligible (the router needs a target).
    none_ready = build_routes("m", spec, status, urls, {})
    assert none_ready is not None
    assert all(b.ready for b in none_ready.models["m"].versions.values())
    assert none_ready.revision != one_ready.revision
    assert build_routes("m", spec, status, urls, {"v1": True}) == one_ready


def test_router_revisions_are_read_from_its_metrics_text() -> None:
    text = (
        "# HELP kanaria_router_routes_revision_info x\n"
        "# TYPE kanaria_router_routes_revision_info gauge\n"
        'kanaria_router_routes_revision_info{revision="Healthy/-/abc"} 1.0\n'
    )
    assert router_revisions(text) == {"Healthy/-/abc"}
    assert router_revisions("not metrics {{{") == frozenset()


def test_review_cases_name_the_actuators_namespace() -> None:
    """Reviewers of several namespaces share one tool: the routes the loop writes name
    the ModelDeployment's namespace in the review sink (None under ``kanaria up``)."""
    raw = make_spec(CANARY).model_dump(mode="json", exclude_none=True)
    raw["automation"] = {"mode": "assist", "review": {"webhook": "http://reviews:8000/cases"}}
    spec = ModelDeploymentSpec.model_validate(raw)
    for namespace in ("fraud-prod", None):
        world = Recorder(namespace=namespace)
        run_pass(world, spec, None, T0)
        assert world.routes is not None
        review = world.routes.models["m"].review
        assert review is not None
        assert review.namespace == namespace
