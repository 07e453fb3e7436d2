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

This module is that flow; the rules it applies live beside it, one module per
strategy (``canary``, ``bluegreen``, ``shadow``, and ``promotion`` for the final
switch) over the shared state and gating rules of ``pass_state``, the analysis
round of ``rounds``, and the dispatch tables of ``stages``.
"""

from __future__ import annotations

from datetime import datetime

from kanaria.api import (
    MirrorStatus,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    Phase,
    VersionRef,
)
from kanaria.rollout.canary import advance_step
from kanaria.rollout.pass_state import GraduateKind, Pass, StrategyKind
from kanaria.rollout.promotion import begin_switch
from kanaria.rollout.retrain import track_retraining
from kanaria.rollout.rounds import record_round
from kanaria.rollout.schedule import next_pass_at
from kanaria.rollout.stages import STRATEGIES, stage_of
from kanaria.rollout.types import Command, Decision, Observations


def decide(
    spec: ModelDeploymentSpec,
    status: ModelDeploymentStatus | None,
    observations: Observations,
    now: datetime,
) -> Decision:
    """One engine pass: the new status, its retraining requests and events, and when the
    engine next needs to look."""
    if now.tzinfo is None:
        raise ValueError("decide() needs a timezone-aware 'now' (e.g. datetime.now(UTC))")
    before = status or ModelDeploymentStatus()
    p = Pass(spec, before.model_copy(deep=True), observations, now)
    run(p)
    return Decision(
        status=p.s,
        actions=p.retrain_actions,
        events=p.events,
        nextPassAt=next_pass_at(spec, p.s, p.timers),
    )


def run(p: Pass) -> None:
    """The rules in order. A manual command's force is a value handed to the progress
    step (and spent there), never state that outlives it."""
    if p.obs.generation is not None:
        p.s.observedGeneration = p.obs.generation
    sync_target(p)
    forced = False
    cmd = p.obs.command
    if cmd is not None and cmd.nonce != p.s.lastCommand:
        p.s.lastCommand = cmd.nonce
        forced = command(p, cmd)
    record_round(p)
    if p.active and p.s.phase is not Phase.Paused:
        progress(p, forced)
    retraining(p)
    finish(p)


# --------------------------------------------------------------------------- 1. spec changes


def sync_target(p: Pass) -> None:
    target = VersionRef.of(p.spec.model, p.spec.server)
    if target.same(p.s.target):
        sync_server(p)
        return
    p.s.target = target
    stable = p.s.stable
    if stable is None:
        p.s.stable = target
        p.s.candidate = None
        p.set_versions(None)
        p.s.phase = Phase.Progressing
        p.s.message = f"deploying {target.version} as the first stable version"
        p.event("Deployed", f"{target.version} is the first version: stable at 100%")
        return
    if target.version == stable.version:
        if not target.same(stable):
            p.s.message = (
                f"spec.model.version {target.version} is the stable version but its uri or "
                "sha256 changed: give the new model a new version name"
            )
            p.event("VersionReused", p.s.message, warning=True)
            return
        if p.active or p.s.phase is Phase.RolledBack:
            cand = p.s.candidate.version if p.s.candidate else "?"
            p.end_rollout(Phase.Healthy, f"spec.model is back at {stable.version}")
            p.event("RolloutCancelled", f"{cand} dropped: spec.model is {stable.version}")
        return
    if p.active:
        old = p.s.candidate.version if p.s.candidate else "?"
        p.event("RolloutRestarted", f"{old} replaced by {target.version} before it finished")
    start_rollout(p, target)


def sync_server(p: Pass) -> None:
    """Apply a changed spec.server to the stable version, but only between rollouts:
    during one, each version keeps the settings it started with."""
    stable = p.s.stable
    if p.active or stable is None or stable.version != p.spec.model.version:
        return
    if stable.server == p.spec.server:
        return
    first = stable.server is None  # a status written before settings were pinned
    p.s.stable = stable.model_copy(update={"server": p.spec.server})
    if p.s.target is not None:
        p.s.target = p.s.target.model_copy(update={"server": p.spec.server})
    p.set_versions(None)
    if not first:
        p.event(
            "ServerSettingsApplied",
            f"spec.server changed: {stable.version}'s model servers restart with it",
        )


def start_rollout(p: Pass, target: VersionRef) -> None:
    assert p.s.stable is not None
    kind = p.spec.strategy.kind
    p.s.candidate = target
    p.s.strategy = kind
    p.s.phase = Phase.Progressing
    p.s.pausedAt = None
    p.s.pauseReason = None
    p.s.switchedAt = None
    p.s.gates = {}
    p.s.analysisStartedAt = None
    p.s.lastAnalysisAt = None
    p.s.lastRoundVerdict = None
    p.s.stepWeight = 0
    p.s.mirror = None
    p.s.currentStep = None
    enter_strategy(p, kind)
    p.event(
        "RolloutStarted",
        f"rolling out {target.version} from {p.s.stable.version} with {kind}",
    )


def enter_strategy(p: Pass, kind: StrategyKind) -> None:
    """Begin the first stage of ``kind`` for the current candidate."""
    p.s.strategy = kind
    p.set_stage_start()
    STRATEGIES[kind](p)


# --------------------------------------------------------------------------- 2. commands


def command(p: Pass, cmd: Command) -> bool:
    """Apply a manual command; returns whether the progress step is forced.

    promote: finish the current step or stage now (a paused rollout resumes);
    promote-full: skip to full promotion; abort: roll back; pause/resume: hold and
    continue; retry: start the rollout of spec.model again after a rollback (or a
    finished shadow). A command that does not apply is recorded and reported.
    A promote (or resuming a rollout that awaits one) forces the next gated move,
    which then happens without analysis.
    """
    verb = cmd.verb
    if verb == "retry":
        if p.active or p.s.target is None or p.s.stable is None:
            ignored(p, cmd, "nothing to retry (a rollout is running or none happened)")
        elif p.s.target.version == p.s.stable.version:
            ignored(p, cmd, f"{p.s.stable.version} is already stable")
        else:
            p.event("Retry", f"retrying {p.s.target.version} (manual)")
            start_rollout(p, p.s.target)
        return False
    if not p.active:
        ignored(p, cmd, "no rollout in progress")
        return False
    forced = False
    if verb == "abort":
        p.rollback("Aborted", "aborted by a person")
    elif verb == "pause":
        if p.s.phase is Phase.Paused:
            ignored(p, cmd, "already paused")
        else:
            p.pause("Manual", "paused by a person: `kanaria resume` continues")
    elif verb == "resume":
        if p.s.phase is not Phase.Paused:
            ignored(p, cmd, "not paused")
        else:
            if p.s.pauseReason == "PauseStep":
                advance_step(p)
            elif p.s.pauseReason == "AwaitingPromotion":
                forced = True
            unpause(p)
            p.event("Resumed", "resumed by a person")
    elif verb == "promote":
        if p.s.phase is Phase.Paused:
            unpause(p)
        forced = promote_one(p)
        p.event("ManualPromote", "promoted one step by a person")
    else:  # promote-full
        if p.s.phase is Phase.Paused:
            unpause(p)
        forced = True
        begin_switch(p, forced)
        p.event("PromotedFull", "full promotion by a person: skipping remaining steps")
    return forced


def ignored(p: Pass, cmd: Command, why: str) -> None:
    p.event("CommandIgnored", f"{cmd.verb} ignored: {why}", warning=True)


def unpause(p: Pass) -> None:
    was = p.s.pauseReason
    stage = stage_of(p.s.stage)
    p.s.phase = Phase.Promoting if stage is not None and stage.promoting else Phase.Progressing
    p.s.pausedAt = None
    p.s.pauseReason = None
    if was == "InconclusiveAnalysis":
        for counters in p.s.gates.values():
            counters.consecutiveInconclusive = 0


def promote_one(p: Pass) -> bool:
    """Finish the current stage now; returns whether the rest of the pass is forced.
    A stage whose strategy settings are gone is promoted fully instead."""
    stage = stage_of(p.s.stage)
    if settings_missing(p) is not None:
        begin_switch(p, True)
        return True
    if stage is None:
        return True
    done = stage.promote(p)
    if done.continue_as is not None:
        graduate_into(p, done.continue_as)
    return done.forced


def graduate_into(p: Pass, kind: GraduateKind) -> None:
    """A graduated shadow goes on as its next strategy in the same pass (the graduation
    spent any force: the new strategy's gates apply from its first move)."""
    enter_strategy(p, kind)
    progress(p, forced=False)


# --------------------------------------------------------------------------- 4. progress


def settings_missing(p: Pass) -> str | None:
    """The strategy the current stage needs, if the spec no longer has it (it was
    edited mid-rollout without changing spec.model)."""
    stage = stage_of(p.s.stage)
    return stage.missing_settings(p) if stage is not None else None


def progress(p: Pass, forced: bool) -> None:
    """Move the current stage forward; ``forced`` is a manual promote not yet spent."""
    missing = settings_missing(p)
    if missing is not None:
        p.s.message = (
            f"spec.strategy no longer has the {missing} settings this rollout is using: "
            "holding; `kanaria abort` rolls back, `kanaria promote --full` promotes"
        )
        return
    stage = stage_of(p.s.stage)
    if stage is None:
        return
    graduated = stage.progress(p, forced)
    if graduated is not None:
        graduate_into(p, graduated)


# --------------------------------------------------------------------------- retraining


def retraining(p: Pass) -> None:
    rt = p.spec.retraining
    m = p.obs.retraining
    if rt is None or m is None or p.s.stable is None or m.version != p.s.stable.version:
        return
    p.keep([m])
    outcome = track_retraining(rt, p.s, m, p.now)
    if outcome.condition is not None:
        status, reason, message = outcome.condition
        p.set_condition("DriftDetected", status, reason, message)
    if outcome.action is not None:
        p.retrain_actions.append(outcome.action)
        p.event("RetrainRequested", outcome.action_message, warning=True)


# --------------------------------------------------------------------------- 5. weights, conditions


def candidate_size(p: Pass) -> int | None:
    """Replicas the candidate should have now, or None when it should not run.

    A canary is sized for the next weight it will get (so new replicas are up before
    the traffic arrives); blue-green and a promotion use full size; a shadow is sized
    for its share of mirrored traffic.
    """
    if not p.active:
        return None
    stage = stage_of(p.s.stage)
    return stage.candidate_size(p) if stage is not None else p.spec.replicas


def finish(p: Pass) -> None:
    s = p.s
    if s.stable is None:
        s.weights = {}
        s.weight = 0
        return
    # Derived from spec and stage every pass, so a spec.replicas edit applies at once.
    p.set_versions(candidate_size(p))
    cand = s.candidate
    if p.active and cand is not None:
        report_problem(p, cand.version)
        weight = s.stepWeight if p.ready(cand.version) else 0
        s.weight = weight
        s.weights = {s.stable.version: 100 - weight, cand.version: weight}
        s.mirror = mirror_for(p, cand.version)
        if (weight > 0 or s.mirror is not None or analysis_stage(p)) and (
            s.analysisStartedAt is None
        ):
            s.analysisStartedAt = p.now
    else:
        s.weight = 0
        s.weights = {s.stable.version: 100}
        s.mirror = None
        if s.phase is not Phase.RolledBack:
            s.strategy = p.spec.strategy.kind  # what the next rollout will use
        stable_ready = p.ready(s.stable.version)
        if s.phase in (Phase.Healthy, Phase.Degraded, Phase.Progressing, Phase.Pending):
            if stable_ready:
                if s.phase is not Phase.Healthy:
                    s.message = f"{s.stable.version} is stable and Ready"
                s.phase = Phase.Healthy
            elif s.phase is Phase.Healthy:
                s.phase = Phase.Degraded
                s.message = f"{s.stable.version} is not Ready"
    stable_ready = p.ready(s.stable.version)
    p.set_condition(
        "Available",
        stable_ready,
        "StableReady" if stable_ready else "StableNotReady",
        f"{s.stable.version} {'is' if stable_ready else 'is not'} Ready",
    )
    progressing = s.phase in (Phase.Progressing, Phase.Promoting)
    p.set_condition("Progressing", progressing, s.phase.value, s.message)
    paused = s.phase is Phase.Paused
    p.set_condition("Paused", paused, s.pauseReason or "NotPaused", s.message if paused else "")


def report_problem(p: Pass, version: str) -> None:
    """A candidate that cannot start says why (status.message, one Warning Event per
    new reason); it gets no traffic either way, so the stable is untouched."""
    o = p.obs.versions.get(version)
    if o is None or o.ready or not o.problem:
        return
    p.s.message = f"{version} cannot start: {o.problem}"
    if p.s.message != p.previous_message:
        p.event("VersionNotReady", p.s.message, warning=True)


def mirror_for(p: Pass, version: str) -> MirrorStatus | None:
    if not p.ready(version):
        return None
    stage = stage_of(p.s.stage)
    percent = stage.mirror_percent(p) if stage is not None else 0.0
    return MirrorStatus(version=version, percent=percent) if percent > 0 else None


def analysis_stage(p: Pass) -> bool:
    """Does the current stage ask for analysis even without traffic (preview header)?"""
    stage = stage_of(p.s.stage)
    return stage is not None and stage.analysis_without_traffic(p)
