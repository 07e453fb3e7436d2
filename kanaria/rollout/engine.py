"""The rollout engine: ``decide(spec, status, observations, now) -> Decision``.

Pure on purpose: no I/O, no clock reads, no randomness. The operator and the
local runtime gather facts, call :func:`decide`, write the returned status and
apply its actions; because all state is in the status, a restarted actuator
continues at the same step, and tests can replay any sequence of facts.

The rules, in the order one pass applies them:

1. ``spec.model`` differs from ``status.target``: the first version becomes
   stable at 100% at once; a new one starts a rollout from the current stable
   (replacing any candidate in flight); going back to the stable cancels it.
2. A manual command whose nonce is new is applied once (see ``_command``).
3. The analysis round in ``observations.measurements`` updates per-gate
   counters. Failed > failureLimit or Errors in a row > consecutiveErrorLimit
   roll back; Inconclusive in a row > inconclusiveLimit pauses for a person.
4. The strategy moves forward where its conditions hold. Any traffic increase
   or promotion needs the last round to have been Successful (when gates apply
   in the current stage, see ``kanaria.rollout.gates``), so missing data holds
   the weight and never promotes; a stage without applicable gates is held only
   by its pauses and by people.
5. Weights follow readiness: an unready candidate gets 0%; a rollback is 100%
   on stable in one step.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from kanaria.api import (
    BlueGreenStrategy,
    CanaryStep,
    Condition,
    GateCounters,
    LiveVersion,
    Measurement,
    MirrorStatus,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    Phase,
    Verdict,
    VersionRef,
    VersionRole,
)
from kanaria.durations import parse_duration
from kanaria.rollout.diff import actions_between
from kanaria.rollout.gates import applicable_gates
from kanaria.rollout.retrain import track_retraining
from kanaria.rollout.types import Action, Command, Decision, Event, Observations

MAX_MEASUREMENTS = 20
"""Measurements kept in status (newest last)."""

ACTIVE_PHASES = (Phase.Progressing, Phase.Paused, Phase.Promoting)
"""Phases in which a candidate is being rolled out."""

_SEVERITY = {
    Verdict.Successful: 0,
    Verdict.Inconclusive: 1,
    Verdict.Error: 2,
    Verdict.Failed: 3,
}


def worst(verdicts: list[Verdict]) -> Verdict:
    """The round's verdict: Failed > Error > Inconclusive > Successful."""
    return max(verdicts, key=_SEVERITY.__getitem__)


def decide(
    spec: ModelDeploymentSpec,
    status: ModelDeploymentStatus | None,
    observations: Observations,
    now: datetime,
) -> Decision:
    """One engine pass: the new status and the actions that realise it."""
    if now.tzinfo is None:
        raise ValueError("decide() needs a timezone-aware 'now' (e.g. datetime.now(UTC))")
    before = status or ModelDeploymentStatus()
    engine = _Pass(spec, before.model_copy(deep=True), observations, now)
    engine.run()
    actions: list[Action] = actions_between(before, engine.s)
    actions.extend(engine.retrain_actions)
    return Decision(status=engine.s, actions=actions, events=engine.events)


class _Pass:
    """The state of one ``decide`` call; methods mutate ``self.s`` (a private copy)."""

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
        self.retrain_actions: list[Action] = []
        self.forced = False
        """Set by a manual promote: the next gated move happens without analysis."""
        self.round_stage = status.stage
        """The stage this pass's measurements were planned for (before any command)."""
        self.previous_message = status.message
        """status.message before this pass (an Event is posted when a problem is new)."""

    # ------------------------------------------------------------------ helpers

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

    @property
    def active(self) -> bool:
        return self.s.phase in ACTIVE_PHASES and self.s.candidate is not None

    @property
    def has_gates(self) -> bool:
        """Do any gates apply in the current stage? (Only those count for moving on.)"""
        return bool(applicable_gates(self.spec, self.s.stage))

    def clear_to_advance(self) -> bool:
        """May traffic go up (or the candidate be promoted) now?

        Without gates in this stage: yes. With gates: the latest round must have been
        Successful,
        and a move away from a weight already carrying traffic needs a Successful
        round taken since that weight was set. A manual promote overrides.
        """
        if self.forced or not self.has_gates:
            return True
        last = self.s.lastRoundVerdict
        if last is not None and last is not Verdict.Successful:
            return False
        return (self.s.stepWeight == 0 and self.s.mirror is None) or self.s.successfulRounds >= 1

    def rounds_passed(self, rounds: int) -> bool:
        """An analysis requirement: ``rounds`` Successful rounds in a row in this stage."""
        if self.forced or not self.has_gates:
            return True
        return self.s.successfulRounds >= rounds

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

    # ------------------------------------------------------------------ the pass

    def run(self) -> None:
        if self.obs.generation is not None:
            self.s.observedGeneration = self.obs.generation
        self.sync_target()
        if self.obs.command is not None and self.obs.command.nonce != self.s.lastCommand:
            self.s.lastCommand = self.obs.command.nonce
            self.command(self.obs.command)
        self.record_round()
        if self.active and self.s.phase is not Phase.Paused:
            self.progress()
        self.retraining()
        self.finish()

    # ------------------------------------------------------------------ 1. spec changes

    def sync_target(self) -> None:
        target = VersionRef.of(self.spec.model, self.spec.server)
        if target.same(self.s.target):
            self.sync_server()
            return
        self.s.target = target
        stable = self.s.stable
        if stable is None:
            self.s.stable = target
            self.s.candidate = None
            self.set_versions(None)
            self.s.phase = Phase.Progressing
            self.s.message = f"deploying {target.version} as the first stable version"
            self.event("Deployed", f"{target.version} is the first version: stable at 100%")
            return
        if target.version == stable.version:
            if not target.same(stable):
                self.s.message = (
                    f"spec.model.version {target.version} is the stable version but its uri or "
                    "sha256 changed: give the new model a new version name"
                )
                self.event("VersionReused", self.s.message, warning=True)
                return
            if self.active or self.s.phase is Phase.RolledBack:
                cand = self.s.candidate.version if self.s.candidate else "?"
                self.end_rollout(Phase.Healthy, f"spec.model is back at {stable.version}")
                self.event("RolloutCancelled", f"{cand} dropped: spec.model is {stable.version}")
            return
        if self.active:
            old = self.s.candidate.version if self.s.candidate else "?"
            self.event("RolloutRestarted", f"{old} replaced by {target.version} before it finished")
        self.start_rollout(target)

    def sync_server(self) -> None:
        """Apply a changed spec.server to the stable version, but only between rollouts:
        during one, each version keeps the settings it started with."""
        stable = self.s.stable
        if self.active or stable is None or stable.version != self.spec.model.version:
            return
        if stable.server == self.spec.server:
            return
        first = stable.server is None  # a status written before settings were pinned
        self.s.stable = stable.model_copy(update={"server": self.spec.server})
        if self.s.target is not None:
            self.s.target = self.s.target.model_copy(update={"server": self.spec.server})
        self.set_versions(None)
        if not first:
            self.event(
                "ServerSettingsApplied",
                f"spec.server changed: {stable.version}'s model servers restart with it",
            )

    def start_rollout(self, target: VersionRef) -> None:
        assert self.s.stable is not None
        kind = self.spec.strategy.kind
        self.s.candidate = target
        self.s.strategy = kind
        self.s.phase = Phase.Progressing
        self.s.pausedAt = None
        self.s.pauseReason = None
        self.s.switchedAt = None
        self.s.gates = {}
        self.s.analysisStartedAt = None
        self.s.lastAnalysisAt = None
        self.s.lastRoundVerdict = None
        self.s.stepWeight = 0
        self.s.mirror = None
        self.s.currentStep = None
        self.enter_strategy(kind)
        self.event(
            "RolloutStarted",
            f"rolling out {target.version} from {self.s.stable.version} with {kind}",
        )

    def enter_strategy(self, kind: str) -> None:
        """Begin the first stage of ``kind`` for the current candidate."""
        self.s.strategy = kind  # type: ignore[assignment]
        self.set_stage_start()
        strategy = self.spec.strategy
        if kind == "canary":
            self.s.stage = "Steps"
            self.s.currentStep = 0
            self.s.message = "canary: starting"
            self.set_versions(self.candidate_replicas(self.next_weight()))
        elif kind == "blueGreen":
            self.s.stage = "Preview"
            self.s.message = "blue-green: bringing the candidate up at full size, 0% traffic"
            self.set_versions(self.spec.replicas)
        else:
            shadow = strategy.shadow
            assert shadow is not None
            self.s.stage = "Mirroring"
            self.s.message = f"shadow: mirroring {shadow.mirrorPercent:g}% of requests"
            self.set_versions(self.candidate_replicas(shadow.mirrorPercent))

    def canary_steps(self) -> list[CanaryStep]:
        if self.s.strategy == "canary":
            canary = self.spec.strategy.canary
            if canary is None and self.spec.strategy.shadow is not None:
                canary = self.spec.strategy.shadow.canary
            if canary is not None:
                return list(canary.steps)
        return []

    def next_weight(self) -> int:
        """The weight of the current or next setWeight step (sizes the canary)."""
        steps = self.canary_steps()
        for step in steps[self.s.currentStep or 0 :]:
            if step.setWeight is not None:
                return max(step.setWeight, self.s.stepWeight)
        return max(self.s.stepWeight, 1)

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

    def unpause(self) -> None:
        was = self.s.pauseReason
        self.s.phase = (
            Phase.Promoting if self.s.stage in ("Switching", "PostPromotion") else Phase.Progressing
        )
        self.s.pausedAt = None
        self.s.pauseReason = None
        if was == "InconclusiveAnalysis":
            for counters in self.s.gates.values():
                counters.consecutiveInconclusive = 0

    # ------------------------------------------------------------------ 2. commands

    def command(self, cmd: Command) -> None:
        """Apply a manual command.

        promote: finish the current step or stage now (a paused rollout resumes);
        promote-full: skip to full promotion; abort: roll back; pause/resume: hold and
        continue; retry: start the rollout of spec.model again after a rollback (or a
        finished shadow). A command that does not apply is recorded and reported.
        """
        verb = cmd.verb
        if verb == "retry":
            if self.active or self.s.target is None or self.s.stable is None:
                self.ignored(cmd, "nothing to retry (a rollout is running or none happened)")
            elif self.s.target.version == self.s.stable.version:
                self.ignored(cmd, f"{self.s.stable.version} is already stable")
            else:
                self.event("Retry", f"retrying {self.s.target.version} (manual)")
                self.start_rollout(self.s.target)
            return
        if not self.active:
            self.ignored(cmd, "no rollout in progress")
            return
        if verb == "abort":
            self.rollback("Aborted", "aborted by a person")
        elif verb == "pause":
            if self.s.phase is Phase.Paused:
                self.ignored(cmd, "already paused")
            else:
                self.pause("Manual", "paused by a person: `kanaria resume` continues")
        elif verb == "resume":
            if self.s.phase is not Phase.Paused:
                self.ignored(cmd, "not paused")
            else:
                if self.s.pauseReason == "PauseStep":
                    self.advance_step()
                elif self.s.pauseReason == "AwaitingPromotion":
                    self.forced = True
                self.unpause()
                self.event("Resumed", "resumed by a person")
        elif verb == "promote":
            if self.s.phase is Phase.Paused:
                self.unpause()
            self.forced = True
            self.promote_one()
            self.event("ManualPromote", "promoted one step by a person")
        else:  # promote-full
            if self.s.phase is Phase.Paused:
                self.unpause()
            self.forced = True
            self.begin_switch()
            self.event("PromotedFull", "full promotion by a person: skipping remaining steps")

    def ignored(self, cmd: Command, why: str) -> None:
        self.event("CommandIgnored", f"{cmd.verb} ignored: {why}", warning=True)

    def promote_one(self) -> None:
        stage = self.s.stage
        if self.settings_missing() is not None:
            self.begin_switch()
        elif stage == "Steps":
            steps = self.canary_steps()
            step = (
                steps[self.s.currentStep or 0] if (self.s.currentStep or 0) < len(steps) else None
            )
            if step is not None and step.setWeight is not None:
                self.s.stepWeight = step.setWeight
            self.advance_step()
            # Finish this step only: the next one is forced only if it is a setWeight (so it
            # applies now) or the promotion itself; a following analysis step still runs.
            i = self.s.currentStep or 0
            self.forced = i >= len(steps) or steps[i].setWeight is not None
        elif stage == "Mirroring":
            self.graduate()
        elif stage == "Preview":
            self.switch_blue_green()
        elif stage == "PostPromotion":
            self.complete_promotion()
        # Switching: forced=True lets it complete as soon as the candidate is ready.

    # ------------------------------------------------------------------ 3. analysis round

    def record_round(self) -> None:
        cand = self.s.candidate
        if not self.obs.measurements or not self.active or cand is None:
            return
        names = {m.name for m in applicable_gates(self.spec, self.round_stage)}
        round_ = [
            m for m in self.obs.measurements if m.version == cand.version and m.metric in names
        ]
        if not round_:
            return
        limits = self.spec.analysis
        for m in round_:
            c = self.s.gates.setdefault(m.metric, GateCounters())
            if m.verdict is Verdict.Failed:
                c.failed += 1
            c.consecutiveErrors = c.consecutiveErrors + 1 if m.verdict is Verdict.Error else 0
            c.consecutiveInconclusive = (
                c.consecutiveInconclusive + 1 if m.verdict is Verdict.Inconclusive else 0
            )
        self.keep(round_)
        verdict = worst([m.verdict for m in round_])
        self.s.lastAnalysisAt = self.now
        self.s.lastRoundVerdict = verdict
        self.s.successfulRounds = (
            self.s.successfulRounds + 1 if verdict is Verdict.Successful else 0
        )
        by_name = {m.metric: m for m in round_}
        for name, c in sorted(self.s.gates.items()):
            got = by_name.get(name)
            if got is None:
                continue
            if c.failed > limits.failureLimit:
                self.rollback(
                    "AnalysisFailed",
                    f"gate {name} failed {c.failed}x (failureLimit {limits.failureLimit}): "
                    f"{got.reason}",
                )
                return
            if c.consecutiveErrors > limits.consecutiveErrorLimit:
                self.rollback(
                    "AnalysisError",
                    f"gate {name} errored {c.consecutiveErrors}x in a row "
                    f"(consecutiveErrorLimit {limits.consecutiveErrorLimit}): {got.reason}",
                )
                return
        for name, c in sorted(self.s.gates.items()):
            got = by_name.get(name)
            if (
                got is not None
                and c.consecutiveInconclusive > limits.inconclusiveLimit
                and self.s.phase is not Phase.Paused
            ):
                self.pause(
                    "InconclusiveAnalysis",
                    f"gate {name} inconclusive {c.consecutiveInconclusive}x in a row "
                    f"(inconclusiveLimit {limits.inconclusiveLimit}): {got.reason}; "
                    "`kanaria resume` keeps waiting for data, `promote` moves on, "
                    "`abort` rolls back",
                )
                return

    def keep(self, measurements: list[Measurement]) -> None:
        self.s.measurements = [*self.s.measurements, *measurements][-MAX_MEASUREMENTS:]

    # ------------------------------------------------------------------ 4. progress

    def progress(self) -> None:
        stage = self.s.stage
        missing = self.settings_missing()
        if missing is not None:
            self.s.message = (
                f"spec.strategy no longer has the {missing} settings this rollout is using: "
                "holding; `kanaria abort` rolls back, `kanaria promote --full` promotes"
            )
            return
        if stage == "Steps":
            self.progress_canary()
        elif stage == "Preview":
            self.progress_preview()
        elif stage == "PostPromotion":
            self.progress_post_promotion()
        elif stage == "Mirroring":
            self.progress_shadow()
        if self.s.stage == "Switching" and self.s.phase is Phase.Promoting:
            self.progress_switch()

    def advance_step(self) -> None:
        self.s.currentStep = (self.s.currentStep or 0) + 1
        self.s.stepStartedAt = self.now
        steps = self.canary_steps()
        if self.s.currentStep < len(steps) and steps[self.s.currentStep].analysis is not None:
            self.s.successfulRounds = 0
        self.event(
            "StepAdvanced", f"step {self.s.currentStep}/{len(steps)}, weight {self.s.stepWeight}%"
        )

    def progress_canary(self) -> None:
        steps = self.canary_steps()
        cand = self.s.candidate
        assert cand is not None
        while self.s.phase is Phase.Progressing and (self.s.currentStep or 0) < len(steps):
            i = self.s.currentStep or 0
            step = steps[i]
            if step.setWeight is not None:
                if step.setWeight > self.s.stepWeight:
                    if not self.clear_to_advance():
                        self.s.message = (
                            f"step {i}: holding {self.s.stepWeight}% until analysis passes"
                        )
                        return
                    self.s.stepWeight = step.setWeight
                    self.s.successfulRounds = 0
                    self.forced = False
                    self.set_versions(self.candidate_replicas(self.s.stepWeight))
                if not self.ready(cand.version):
                    self.s.message = f"step {i}: waiting for {cand.version} to be Ready"
                    return
                self.advance_step()
            elif step.pause is not None:
                if step.pause.duration is None:
                    self.pause(
                        "PauseStep", f"step {i}: paused at {self.s.stepWeight}% until promoted"
                    )
                    return
                left = parse_duration(step.pause.duration) - self.elapsed(self.s.stepStartedAt)
                if left > 0:
                    self.s.message = f"step {i}: pause at {self.s.stepWeight}%, {left:.0f}s left"
                    return
                if not self.clear_to_advance():
                    self.s.message = f"step {i}: pause over, holding until analysis passes"
                    return
                self.advance_step()
            else:
                assert step.analysis is not None
                if not self.rounds_passed(step.analysis.rounds):
                    self.s.message = (
                        f"step {i}: analysis {self.s.successfulRounds}/{step.analysis.rounds} "
                        f"rounds at {self.s.stepWeight}%"
                    )
                    return
                self.advance_step()
        if self.s.phase is Phase.Progressing and (self.s.currentStep or 0) >= len(steps):
            if not self.clear_to_advance():
                self.s.message = "all steps done, holding until analysis passes"
                return
            self.begin_switch()

    def progress_preview(self) -> None:
        bg = self.blue_green()
        cand = self.s.candidate
        assert cand is not None
        assert bg is not None  # settings_missing() checked it
        if not self.ready_at(cand.version, self.spec.replicas):
            self.s.message = f"blue-green: waiting for {cand.version} at full size"
            return
        pre = bg.prePromotionAnalysis
        if pre is not None and not self.rounds_passed(pre.rounds):
            self.s.message = (
                f"blue-green: pre-promotion analysis {self.s.successfulRounds}/{pre.rounds} rounds"
            )
            return
        if not self.clear_to_advance():
            self.s.message = "blue-green: holding until analysis passes"
            return
        if not bg.autoPromote and not self.forced:
            self.pause(
                "AwaitingPromotion", f"blue-green: {cand.version} ready, waiting for promote"
            )
            return
        self.switch_blue_green()

    def blue_green(self) -> BlueGreenStrategy | None:
        strategy = self.spec.strategy
        return strategy.blueGreen or (strategy.shadow.blueGreen if strategy.shadow else None)

    def settings_missing(self) -> str | None:
        """The strategy the current stage needs, if the spec no longer has it (it was
        edited mid-rollout without changing spec.model)."""
        stage = self.s.stage
        if stage == "Steps" and not self.canary_steps():
            return "canary"
        if stage in ("Preview", "PostPromotion") and self.blue_green() is None:
            return "blueGreen"
        if stage == "Mirroring" and self.spec.strategy.shadow is None:
            return "shadow"
        return None

    def switch_blue_green(self) -> None:
        cand = self.s.candidate
        assert cand is not None
        self.s.stage = "PostPromotion"
        self.s.phase = Phase.Promoting
        self.s.stepWeight = 100
        self.s.mirror = None
        self.s.switchedAt = self.now
        self.set_stage_start()
        self.forced = False
        self.s.message = f"blue-green: switched to {cand.version}, old version kept warm"
        self.event("Switched", f"100% of traffic on {cand.version}")

    def progress_post_promotion(self) -> None:
        bg = self.blue_green()
        assert bg is not None  # settings_missing() checked it
        wait = parse_duration(bg.scaleDownDelay) - self.elapsed(self.s.switchedAt)
        post = bg.postPromotionAnalysis
        if post is not None and not self.rounds_passed(post.rounds):
            self.s.message = (
                f"blue-green: post-promotion analysis {self.s.successfulRounds}/{post.rounds}"
                " rounds"
            )
            return
        if wait > 0:
            self.s.message = f"blue-green: old version kept warm for {wait:.0f}s more"
            return
        if not self.clear_to_advance():
            self.s.message = "blue-green: holding the old version until analysis passes"
            return
        self.complete_promotion()

    def progress_shadow(self) -> None:
        shadow = self.spec.strategy.shadow
        assert shadow is not None
        if shadow.duration is not None:
            left = parse_duration(shadow.duration) - self.elapsed(self.s.stepStartedAt)
            if left > 0:
                self.s.message = f"shadow: mirroring, {left:.0f}s left"
                return
        if not self.rounds_passed(shadow.analysis.rounds) or not self.clear_to_advance():
            self.s.message = (
                f"shadow: analysis {self.s.successfulRounds}/{shadow.analysis.rounds} rounds"
            )
            return
        self.graduate()

    def graduate(self) -> None:
        shadow = self.spec.strategy.shadow
        assert shadow is not None
        cand = self.s.candidate
        assert cand is not None
        self.s.mirror = None
        if shadow.graduateTo == "none":
            if self.forced:
                self.begin_switch()
                return
            stable = self.s.stable.version if self.s.stable else "?"
            self.end_rollout(
                Phase.Healthy, f"shadow of {cand.version} passed; {stable} stays stable"
            )
            self.event("ShadowCompleted", f"{cand.version} passed the shadow run and was stopped")
            return
        self.forced = False
        self.event(
            "Graduated", f"shadow of {cand.version} passed: continuing as {shadow.graduateTo}"
        )
        self.enter_strategy(shadow.graduateTo)
        self.progress()

    def begin_switch(self) -> None:
        """Full promotion: scale the candidate to full size, then move all traffic."""
        cand = self.s.candidate
        assert cand is not None
        self.s.stage = "Switching"
        self.s.phase = Phase.Promoting
        self.s.mirror = None
        self.s.message = f"promoting {cand.version}: scaling to {self.spec.replicas} replicas"
        self.set_versions(self.spec.replicas)
        self.progress_switch()

    def progress_switch(self) -> None:
        cand = self.s.candidate
        assert cand is not None
        if not self.ready_at(cand.version, self.spec.replicas):
            self.s.message = (
                f"promoting {cand.version}: waiting for {self.spec.replicas} ready replicas"
            )
            return
        if (
            not self.forced
            and self.has_gates
            and self.s.lastRoundVerdict not in (None, Verdict.Successful)
        ):
            self.s.message = f"promoting {cand.version}: holding until analysis passes"
            return
        self.complete_promotion()

    def complete_promotion(self) -> None:
        cand = self.s.candidate
        assert cand is not None
        old = self.s.stable.version if self.s.stable else "?"
        self.s.stable = cand
        self.end_rollout(Phase.Healthy, f"{cand.version} promoted: stable at 100%")
        self.s.currentStep = None
        self.event("Promoted", f"{cand.version} is stable at 100%; {old} stopped")

    # ------------------------------------------------------------------ retraining

    def retraining(self) -> None:
        rt = self.spec.retraining
        m = self.obs.retraining
        if rt is None or m is None or self.s.stable is None or m.version != self.s.stable.version:
            return
        self.keep([m])
        outcome = track_retraining(rt, self.s, m, self.now)
        if outcome.condition is not None:
            status, reason, message = outcome.condition
            self.set_condition("DriftDetected", status, reason, message)
        if outcome.action is not None:
            self.retrain_actions.append(outcome.action)
            self.event("RetrainRequested", outcome.action_message, warning=True)

    # ------------------------------------------------------------------ 5. weights, conditions

    def candidate_size(self) -> int | None:
        """Replicas the candidate should have now, or None when it should not run.

        A canary is sized for the next weight it will get (so new replicas are up before
        the traffic arrives); blue-green and a promotion use full size; a shadow is sized
        for its share of mirrored traffic.
        """
        if not self.active:
            return None
        stage = self.s.stage
        if stage == "Steps":
            return self.candidate_replicas(self.next_weight())
        if stage == "Mirroring" and self.spec.strategy.shadow is not None:
            return self.candidate_replicas(self.spec.strategy.shadow.mirrorPercent)
        return self.spec.replicas

    def finish(self) -> None:
        s = self.s
        if s.stable is None:
            s.weights = {}
            s.weight = 0
            return
        # Derived from spec and stage every pass, so a spec.replicas edit applies at once.
        self.set_versions(self.candidate_size())
        cand = s.candidate
        if self.active and cand is not None:
            self.report_problem(cand.version)
            weight = s.stepWeight if self.ready(cand.version) else 0
            s.weight = weight
            s.weights = {s.stable.version: 100 - weight, cand.version: weight}
            s.mirror = self.mirror_for(cand.version)
            if (weight > 0 or s.mirror is not None or self.analysis_stage()) and (
                s.analysisStartedAt is None
            ):
                s.analysisStartedAt = self.now
        else:
            s.weight = 0
            s.weights = {s.stable.version: 100}
            s.mirror = None
            if s.phase is not Phase.RolledBack:
                s.strategy = self.spec.strategy.kind  # what the next rollout will use
            stable_ready = self.ready(s.stable.version)
            if s.phase in (Phase.Healthy, Phase.Degraded, Phase.Progressing, Phase.Pending):
                if stable_ready:
                    if s.phase is not Phase.Healthy:
                        s.message = f"{s.stable.version} is stable and Ready"
                    s.phase = Phase.Healthy
                elif s.phase is Phase.Healthy:
                    s.phase = Phase.Degraded
                    s.message = f"{s.stable.version} is not Ready"
        stable_ready = self.ready(s.stable.version)
        self.set_condition(
            "Available",
            stable_ready,
            "StableReady" if stable_ready else "StableNotReady",
            f"{s.stable.version} {'is' if stable_ready else 'is not'} Ready",
        )
        progressing = s.phase in (Phase.Progressing, Phase.Promoting)
        self.set_condition("Progressing", progressing, s.phase.value, s.message)
        paused = s.phase is Phase.Paused
        self.set_condition(
            "Paused", paused, s.pauseReason or "NotPaused", s.message if paused else ""
        )

    def report_problem(self, version: str) -> None:
        """A candidate that cannot start says why (status.message, one Warning Event per
        new reason); it gets no traffic either way, so the stable is untouched."""
        o = self.obs.versions.get(version)
        if o is None or o.ready or not o.problem:
            return
        self.s.message = f"{version} cannot start: {o.problem}"
        if self.s.message != self.previous_message:
            self.event("VersionNotReady", self.s.message, warning=True)

    def mirror_for(self, version: str) -> MirrorStatus | None:
        if not self.ready(version):
            return None
        percent = 0.0
        if self.s.stage == "Mirroring" and self.spec.strategy.shadow is not None:
            percent = self.spec.strategy.shadow.mirrorPercent
        elif self.s.stage == "Preview":
            bg = self.blue_green()
            percent = bg.mirrorPercent if bg is not None else 0.0
        return MirrorStatus(version=version, percent=percent) if percent > 0 else None

    def analysis_stage(self) -> bool:
        """Does the current stage ask for analysis even without traffic (preview header)?"""
        if self.s.stage == "Preview":
            bg = self.blue_green()
            return bg is not None and bg.prePromotionAnalysis is not None
        if self.s.stage == "Steps":
            steps = self.canary_steps()
            i = self.s.currentStep or 0
            return i < len(steps) and steps[i].analysis is not None
        return False


def due(status: ModelDeploymentStatus, interval_seconds: float, now: datetime) -> bool:
    """Is an analysis round due? One interval after analysis started or the last round."""
    last = status.lastAnalysisAt or status.analysisStartedAt
    return last is not None and now - last >= timedelta(seconds=interval_seconds)
