"""What goes into the rollout engine and what comes out.

The engine is a pure function, so everything it needs is in these values:
:class:`Observations` are facts the caller gathered (readiness, measurements,
a manual command); :class:`Decision` is the new status, the retraining requests and
events, and the time the engine next needs a pass. The status alone says what should
run and where traffic goes (``status.versions``, ``status.weights``, ``status.mirror``);
the control loop (:mod:`kanaria.loop`) compares it with what runs and acts.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from kanaria.api import Measurement, MetricGate, ModelDeploymentStatus

CommandVerb = Literal["promote", "promote-full", "abort", "pause", "resume", "retry"]
COMMAND_VERBS: tuple[CommandVerb, ...] = (
    "promote",
    "promote-full",
    "abort",
    "pause",
    "resume",
    "retry",
)


class _Value(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- observations


class VersionObservation(_Value):
    """Readiness of one version, as the actuator sees it."""

    ready: bool
    """At least one replica serves requests (model loaded, probes pass)."""
    readyReplicas: int | None = None
    """Ready replicas; None means "as many as asked for" (the local runtime runs one)."""
    problem: str | None = Field(default=None, max_length=1024)
    """Why the version cannot start, when the actuator can tell (an image that cannot
    be had, a model that does not load and crash-loops): shown in status and an Event."""


class Command(_Value):
    """A manual command (``kanaria promote|abort|...``), applied once per nonce."""

    verb: CommandVerb
    nonce: str = Field(min_length=1, max_length=128)
    """Unique per command; the engine records it in ``status.lastCommand``."""


class Observations(_Value):
    """Facts gathered by the caller for one engine pass. Time-free: ``now`` is separate."""

    versions: dict[str, VersionObservation] = {}
    """Readiness per version name; a version missing here counts as not ready."""
    measurements: list[Measurement] = []
    """Results of the analysis requests from :func:`kanaria.rollout.plan_measurements`
    (purpose "analysis") taken for this pass: one analysis round."""
    retraining: Measurement | None = None
    """Result of the retraining request (purpose "retraining"), if one was due."""
    command: Command | None = None
    """A manual command; ignored if its nonce equals ``status.lastCommand``."""
    generation: int | None = None
    """metadata.generation of the spec (copied to status.observedGeneration)."""


class MeasurementRequest(_Value):
    """A measurement the engine wants taken before the next pass."""

    purpose: Literal["analysis", "retraining"]
    """analysis: a rollout gate on the candidate; retraining: the stable version's watch."""
    version: str
    """The version to measure."""
    gate: MetricGate
    """What to measure and how to judge it."""
    interval: str
    """Look-back window (the analysis interval, e.g. 30s)."""
    minRequests: int = 0
    """Requests needed in the window for a verdict; fewer is Inconclusive."""
    band: tuple[float, float] | None = None
    """reviewerAgreement: the confidence band [low, high) whose review cases count (the
    band the next setThreshold step automates); None: every review case."""
    traffic: Literal["router", "server"] = "router"
    """Where the version's requests are counted. router: it answers clients, so success
    rate and latency come from the router's metrics; server: it only sees mirrored or
    preview copies (shadow, blue-green preview), so they come from the model server's."""


# --------------------------------------------------------------------------- decision


class Retrain(_Value):
    """Ask for a retrained model: both actuators POST the RetrainRequested payload to
    spec.retraining.webhook (kanaria.retraining); the operator may also create a Job
    from spec.retraining.jobTemplate."""

    type: Literal["retrain"] = "retrain"
    version: str
    metric: str
    value: float | None
    threshold: float
    since: datetime
    """Since when the threshold has been crossed."""


Action = Retrain
"""The one request the status cannot express: ask for a retrained model, once. Everything
else an actuator does (start, scale, route, stop) follows from the status and is planned
by the control loop (:mod:`kanaria.loop.effects`), against what actually runs."""


class Event(_Value):
    """Something a person should see (a Kubernetes Event, a line in `kanaria up`'s log)."""

    type: Literal["Normal", "Warning"]
    reason: str
    """CamelCase reason, e.g. RolloutStarted, StepAdvanced, Promoted, RolledBack."""
    message: str


class Decision(_Value):
    """The engine's answer: the new status, the one-shot requests it makes, its events,
    and when it next needs to look."""

    status: ModelDeploymentStatus
    actions: list[Action] = []
    events: list[Event] = []
    nextPassAt: datetime | None = None
    """When a rule next changes its mind with no change in the world: an analysis round
    or a retraining check falling due, a pause or a delay ending. None: only a change
    (a spec, a command, readiness) moves anything, so the loop waits for one."""
