"""The state of one ``decide`` pass and the rules every strategy shares.

The strategies (``canary``, ``bluegreen``, ``shadow``, and ``promotion`` for the
final switch) are functions over a :class:`Pass`; what they have in common lives
here once: readiness, the "may traffic go up" gating rules, sizing, conditions,
and the ways a rollout ends (rollback, pause, back to stable alone). A strategy
describes each of its stages as a :class:`Stage`, and the engine dispatches on
``status.stage`` through the table in ``kanaria.rollout.stages`` instead of
comparing stage names.

What a manual promote forces is not state of the pass: it is a ``forced`` value
handed from the command to the progress step, spent by the first gated move, so
each function that can skip analysis says so in its signature.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, NamedTuple

from kanaria.api import (
    BlueGreenStrategy,
    CanaryStep,
    Condition,
    LiveVersion,
    Measurement,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    Pause,
    Phase,
    RolloutStage,
    StepAnalysis,
    Verdict,
    VersionRole,
)
from kanaria.durations import parse_duration
from kanaria.rollout.gates import applicable_gates
from kanaria.rollout.types import Event, Observations, Retrain

MAX_MEASUREMENTS = 20
"""Measurements kept in status (newest last)."""

ACTIVE_PHASES = (Phase.Progressing, Phase.Paused, Phase.Promoting)
"""Phases in which a candidate is being rolled out."""

StrategyKind = Literal["canary", "blueGreen", "shadow", "automation"]
"""A strategy a rollout can be in (status.strategy)."""

GraduateKind = Literal["canary", "blueGreen", "automation"]
"""A strategy a shadow can continue as once it passed."""

_SEVERITY = {
    Verdict.Successful: 0,
    Verdict.Inconclusive: 1,
    Verdict.Error: 2,
    Verdict.Failed: 3,
}


def worst(verdicts: list[Verdict]) -> Verdict:
    """The round's verdict: Failed > Error > Inconclusive > Successful."""
    return max(verdicts, key=_SEVERITY.__getitem__)


def due(status: ModelDeploymentStatus, interval_seconds: float, now: datetime) -> bool:
    """Is an analysis round due? One interval after analysis started or the last round."""
    last = status.lastAnalysisAt or status.analysisStartedAt
    return last is not None and now - last >= timedelta(seconds=interval_seconds)


class Pass:
    """The state of one ``decide`` call; functions mutate ``self.s`` (a private copy)."""

    def __init__(
        self,
        spec: ModelDeploymentSpec,
        status: ModelDeploymentStatus,
        obs: Observations,
        now: datetime,
    ) -> None:
        self.spec = spec
        self.s = status
        self.obs = obs
        self.now = now
        self.events: list[Event] = []
        self.retrain_actions: list[Retrain] = []
        self.timers: list[datetime] = []
        """Moments a waiting rule can next change its mind (a pause or a delay ending)."""
        self.round_stage = status.stage
        """The stage this pass's measurements were planned for (before any command)."""
        self.previous_message = status.message
        """status.message before this pass (an Event is posted when a problem is new)."""

    # ------------------------------------------------------------------ facts

    def event(self, reason: str, message: str, warning: bool = False) -> None:
        self.events.append(
            Event(type="Warning" if warning else "Normal", reason=reason, message=message)
        )

    def ready(self, version: str | None) -> bool:
        if version is None:
            return False
        o = self.obs.versions.get(version)
        return o is not None and o.ready

    def ready_at(self, version: str, replicas: int) -> bool:
        """Ready with at least ``replicas`` replicas (None readyReplicas counts as all)."""
        o = self.obs.versions.get(version)
        if o is None or not o.ready:
            return False
        return o.readyReplicas is None or o.readyReplicas >= replicas

    def elapsed(self, since: datetime | None) -> float:
        return (self.now - since).total_seconds() if since is not None else 0.0

    def left(self, seconds: float, since: datetime | None) -> float:
        """Seconds left of a wait of ``seconds`` that began at ``since``; a wait that is
        not over is remembered, so the next pass is planned for the moment it ends."""
        left = seconds - self.elapsed(since)
        if left > 0:
            self.timers.append(self.now + timedelta(seconds=left))
        return left

    @property
    def active(self) -> bool:
        return self.s.phase in ACTIVE_PHASES and self.s.candidate is not None

    # ------------------------------------------------------------------ the strategy's settings

    def canary_steps(self) -> list[CanaryStep]:
        """The canary steps of this rollout (a graduated shadow's, if it became a canary)."""
        if self.s.strategy == "canary":
            canary = self.spec.strategy.canary
            if canary is None and self.spec.strategy.shadow is not None:
                canary = self.spec.strategy.shadow.canary
            if canary is not None:
                return list(canary.steps)
        return []

    def blue_green(self) -> BlueGreenStrategy | None:
        """The blue-green settings (a shadow's, if it graduates to blue-green)."""
        strategy = self.spec.strategy
        return strategy.blueGreen or (strategy.shadow.blueGreen if strategy.shadow else None)

    # ------------------------------------------------------------------ gating

    @property
    def has_gates(self) -> bool:
        """Do any gates apply in the current stage? (Only those count for moving on.)"""
        return bool(applicable_gates(self.spec, self.s.stage))

    def clear_to_advance(self, forced: bool) -> bool:
        """May traffic go up (or the candidate be promoted) now?

        Without gates in this stage: yes. With gates: the latest round must have been
        Successful, and a move away from a weight already carrying traffic needs a
        Successful round taken since that weight was set. A manual promote (``forced``)
        overrides.
        """
        if forced or not self.has_gates:
            return True
        last = self.s.lastRoundVerdict
        if last is not None and last is not Verdict.Successful:
            return False
        return (self.s.stepWeight == 0 and self.s.mirror is None) or self.s.successfulRounds >= 1

    def rounds_passed(self, rounds: int, forced: bool) -> bool:
        """An analysis requirement: ``rounds`` Successful rounds in a row in this stage
        (waived by a manual promote, ``forced``, or when no gate applies)."""
        if forced or not self.has_gates:
            return True
        return self.s.successfulRounds >= rounds

    # ------------------------------------------------------------------ shared steps

    def pausing(self, i: int, pause: Pause, where: str) -> bool:
        """Step ``i`` is a pause: is it still on? An open-ended one pauses the rollout
        until a person promotes; a timed one lasts its duration from the step's start.
        ``where`` names the position in the messages (a weight, a threshold)."""
        if pause.duration is None:
            self.pause("PauseStep", f"step {i}: paused at {where} until promoted")
            return True
        left = self.left(parse_duration(pause.duration), self.s.stepStartedAt)
        if left > 0:
            self.s.message = f"step {i}: pause at {where}, {left:.0f}s left"
            return True
        return False

    def analysing(self, i: int, analysis: StepAnalysis, forced: bool, where: str) -> bool:
        """Step ``i`` asks for analysis rounds: are they still to come?"""
        if self.rounds_passed(analysis.rounds, forced):
            return False
        self.s.message = (
            f"step {i}: analysis {self.s.successfulRounds}/{analysis.rounds} rounds at {where}"
        )
        return True

    # ------------------------------------------------------------------ status writes

    def candidate_replicas(self, weight: float) -> int:
        return max(1, math.ceil(self.spec.replicas * weight / 100))

    def set_stage_start(self) -> None:
        self.s.stepStartedAt = self.now
        self.s.successfulRounds = 0

    def set_versions(self, candidate_replicas: int | None) -> None:
        """status.versions: stable at full size, plus the candidate if given a size."""
        out: list[LiveVersion] = []
        for ref, role, replicas in (
            (self.s.stable, VersionRole.stable, self.spec.replicas),
            (self.s.candidate, VersionRole.candidate, candidate_replicas),
        ):
            if ref is None or replicas is None:
                continue
            out.append(LiveVersion(**ref.model_dump(), role=role, replicas=replicas))
        self.s.versions = out

    def set_condition(self, type_: str, status: bool, reason: str, message: str = "") -> None:
        value = "True" if status else "False"
        for i, c in enumerate(self.s.conditions):
            if c.type == type_:
                changed = c.status != value
                self.s.conditions[i] = Condition(
                    type=type_,
                    status=value,
                    reason=reason,
                    message=message,
                    lastTransitionTime=self.now if changed else c.lastTransitionTime,
                )
                return
        self.s.conditions.append(
            Condition(
                type=type_,
                status=value,
                reason=reason,
                message=message,
                lastTransitionTime=self.now,
            )
        )

    def keep(self, measurements: list[Measurement]) -> None:
        self.s.measurements = [*self.s.measurements, *measurements][-MAX_MEASUREMENTS:]

    # ------------------------------------------------------------------ how a rollout stops

    def end_rollout(self, phase: Phase, message: str) -> None:
        """Back to stable alone at 100%; the candidate is kept in status only if rolled back."""
        self.s.phase = phase
        self.s.stage = None
        self.s.stepWeight = 0
        self.s.mirror = None
        self.s.pausedAt = None
        self.s.pauseReason = None
        self.s.switchedAt = None
        if phase is not Phase.RolledBack:
            self.s.candidate = None
            self.s.currentStep = None
            self.s.strategy = None
        self.set_versions(None)
        self.s.message = message

    def rollback(self, reason: str, message: str) -> None:
        cand = self.s.candidate.version if self.s.candidate else "?"
        stable = self.s.stable.version if self.s.stable else "?"
        self.end_rollout(Phase.RolledBack, f"rolled back {cand}: {message}")
        self.event(
            "RolledBack", f"{cand} rolled back, 100% on {stable} ({reason}): {message}", True
        )

    def pause(self, reason: str, message: str) -> None:
        self.s.phase = Phase.Paused
        self.s.pausedAt = self.now
        self.s.pauseReason = reason
        self.s.message = message
        self.event("Paused", message, warning=reason == "InconclusiveAnalysis")


# --------------------------------------------------------------------------- stages


class Promoted(NamedTuple):
    """What a manual promote of one stage leaves for the rest of the pass."""

    forced: bool
    """The force is not spent yet: the next gated move in this pass skips analysis."""
    continue_as: GraduateKind | None = None
    """A shadow graduated: the engine enters this strategy and progresses it now."""


def _full_size(p: Pass) -> int:
    return p.spec.replicas


def _no_mirror(p: Pass) -> float:
    return 0.0


def _no_analysis_without_traffic(p: Pass) -> bool:
    return False


def _no_settings_needed(p: Pass) -> str | None:
    return None


@dataclass(frozen=True)
class Stage:
    """One stage of a strategy: how it moves, and what it means for sizing and routes.

    A row of the engine's dispatch table (``kanaria.rollout.stages.STAGES``), so that
    adding or changing a stage is one place, not a string comparison in each rule.
    """

    name: RolloutStage
    progress: Callable[[Pass, bool], GraduateKind | None]
    """Move forward where the conditions hold, given whether a manual promote forces
    the next gated move; returns the strategy a graduated shadow continues as."""
    promote: Callable[[Pass], Promoted]
    """A manual ``promote``: finish this stage now."""
    promoting: bool = False
    """The candidate already gets (or is about to get) all traffic: unpausing here
    resumes in phase Promoting rather than Progressing."""
    traffic: Literal["router", "server"] = "router"
    """Where the candidate's requests are counted (see MeasurementRequest.traffic)."""
    missing_settings: Callable[[Pass], str | None] = _no_settings_needed
    """The spec.strategy settings this stage needs, named, when the spec lost them."""
    candidate_size: Callable[[Pass], int] = _full_size
    """Replicas the candidate should have in this stage."""
    mirror_percent: Callable[[Pass], float] = _no_mirror
    """Percent of requests mirrored to a Ready candidate in this stage."""
    analysis_without_traffic: Callable[[Pass], bool] = _no_analysis_without_traffic
    """Does this stage ask for analysis even before the candidate gets traffic?"""
