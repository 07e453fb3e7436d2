"""Automation ramp: the candidate answers every client, its threshold steps down.

One stage, Automating. The candidate gets all traffic once Ready, in assist (every
prediction goes to review with the model's answer as a suggestion, so a person still
decides everything); then ``setThreshold`` steps automate the predictions whose
confidence is at least the threshold, ``analysis`` steps hold it until the gates pass
(reviewerAgreement on the band the next step automates, automationRate, success and
latency), ``pause`` steps hold for a time or a person. After the last step the
candidate is promoted with the threshold it reached (``spec.automation.mode: full``:
everything automated).

A failing reviewerAgreement or automationRate gate does not roll the version back (its
answers were fine as suggestions): the threshold moves back to the last step whose
analysis passed, in one move, and the rollout pauses for a person (``resume`` tries
the next step again, ``promote`` moves on, ``abort`` rolls back). Other gates (success,
latency) roll back as in every strategy; Inconclusive holds.
"""

from __future__ import annotations

from typing import Final

from kanaria.api import (
    AutomationStatus,
    Builtin,
    Measurement,
    Phase,
    ThresholdStep,
    Verdict,
)
from kanaria.rollout.pass_state import GraduateKind, Pass, Promoted, Stage
from kanaria.rollout.promotion import begin_switch

AUTOMATION_GATES: Final = frozenset({Builtin.reviewerAgreement, Builtin.automationRate})
"""Gates about the degree of automation: failing one moves the threshold back instead
of rolling the version back."""
ASSIST_THRESHOLD: Final = 1.0
"""The threshold shown while in assist (nothing is automated)."""


def steps(p: Pass) -> list[ThresholdStep]:
    ramp = p.spec.strategy.automation_ramp
    return list(ramp.steps) if ramp is not None else []


def next_threshold(p: Pass, after: int) -> float | None:
    """The threshold of the first setThreshold step at or after index ``after``."""
    for step in steps(p)[after:]:
        if step.setThreshold is not None:
            return step.setThreshold
    return None


def enter(p: Pass) -> None:
    """Begin the ramp in assist: the candidate takes all traffic once Ready."""
    cand = p.s.candidate
    assert cand is not None
    p.s.stage = "Automating"
    p.s.currentStep = 0
    p.s.stepWeight = 100
    p.s.automation = AutomationStatus(
        version=cand.version,
        mode="assist",
        threshold=ASSIST_THRESHOLD,
        nextThreshold=next_threshold(p, 0),
    )
    p.s.message = f"automation: {cand.version} in assist, every prediction reviewed"
    p.set_versions(p.spec.replicas)


def _advance(p: Pass) -> None:
    p.s.currentStep = (p.s.currentStep or 0) + 1
    p.s.stepStartedAt = p.now
    i = p.s.currentStep
    if i < len(steps(p)) and steps(p)[i].analysis is not None:
        p.s.successfulRounds = 0
    auto = p.s.automation
    if auto is not None:
        p.s.automation = auto.model_copy(update={"nextThreshold": next_threshold(p, i)})
    p.event("StepAdvanced", f"step {i}/{len(steps(p))}, {describe(p)}")


def describe(p: Pass) -> str:
    """The degree of automation in force, in words."""
    auto = p.s.automation
    if auto is None:
        return "no automation"
    if auto.mode == "partial":
        return f"partial, threshold {auto.threshold:g}"
    return auto.mode


def _set_threshold(p: Pass, value: float) -> None:
    auto = p.s.automation
    assert auto is not None
    safe = auto.threshold if auto.mode == "partial" else None
    p.s.automation = auto.model_copy(
        update={"mode": "partial", "threshold": value, "safeThreshold": safe}
    )
    p.s.successfulRounds = 0
    p.event("ThresholdSet", f"{auto.version}: automated at confidence >= {value:g}")


def progress(p: Pass, forced: bool) -> GraduateKind | None:
    """Work through the steps as far as they allow; after the last, promote."""
    cand = p.s.candidate
    assert cand is not None
    if p.s.automation is None or p.s.automation.version != cand.version:
        enter(p)
    all_steps = steps(p)
    while p.s.phase is Phase.Progressing and (p.s.currentStep or 0) < len(all_steps):
        i = p.s.currentStep or 0
        step = all_steps[i]
        if not p.ready(cand.version):
            p.s.message = f"step {i}: waiting for {cand.version} to be Ready"
            return None
        if step.setThreshold is not None:
            auto = p.s.automation
            assert auto is not None
            if auto.mode == "assist" or step.setThreshold < auto.threshold:
                if not p.clear_to_advance(forced):
                    p.s.message = f"step {i}: holding {describe(p)} until analysis passes"
                    return None
                _set_threshold(p, step.setThreshold)
                forced = False
            _advance(p)
        elif step.pause is not None:
            if p.pausing(i, step.pause, describe(p)):
                return None
            _advance(p)
        else:
            assert step.analysis is not None
            if p.analysing(i, step.analysis, forced, describe(p)):
                return None
            _advance(p)
    if p.s.phase is Phase.Progressing and (p.s.currentStep or 0) >= len(all_steps):
        if not p.clear_to_advance(forced):
            p.s.message = f"all steps done at {describe(p)}, holding until analysis passes"
            return None
        _final_mode(p)
        begin_switch(p, forced)
    return None


def _final_mode(p: Pass) -> None:
    """spec.automation.mode full: the ramp ends with everything automated."""
    auto = p.s.automation
    conf = p.spec.automation
    if auto is not None and conf is not None and conf.mode == "full":
        p.s.automation = auto.model_copy(update={"mode": "full", "nextThreshold": None})


def threshold_fallback(p: Pass, round_: list[Measurement]) -> bool:
    """A failing automation gate in the Automating stage: move the threshold back to
    the last safe step in one move and pause for a person. True if it did (the round
    is then recorded here and no rollback follows from these gates)."""
    if p.s.stage != "Automating" or p.s.automation is None:
        return False
    kinds = {g.name: g.builtin for g in p.spec.analysis.metrics}
    failed = [
        m for m in round_ if m.verdict is Verdict.Failed and kinds.get(m.metric) in AUTOMATION_GATES
    ]
    others_failed = any(
        m.verdict in (Verdict.Failed, Verdict.Error) and kinds.get(m.metric) not in AUTOMATION_GATES
        for m in round_
    )
    if not failed or others_failed:
        return False
    auto = p.s.automation
    safe = auto.safeThreshold
    back = (
        auto.model_copy(update={"mode": "assist", "threshold": ASSIST_THRESHOLD})
        if safe is None
        else auto.model_copy(update={"mode": "partial", "threshold": safe})
    )
    # the step after the one that set the safe threshold (or the start: assist)
    resume_at = 0
    for i, step in enumerate(steps(p)):
        if safe is not None and step.setThreshold is not None and step.setThreshold >= safe:
            resume_at = i + 1
    p.s.automation = back.model_copy(
        update={
            "fallbacks": auto.fallbacks + 1,
            "safeThreshold": safe,
            "nextThreshold": next_threshold(p, resume_at),
        }
    )
    p.s.currentStep = resume_at
    p.s.stepStartedAt = p.now
    p.keep(round_)
    p.s.lastAnalysisAt = p.now
    p.s.lastRoundVerdict = Verdict.Failed
    p.s.successfulRounds = 0
    reason = "; ".join(f"gate {m.metric}: {m.reason}" for m in failed)
    p.event(
        "ThresholdMovedBack",
        f"{auto.version}: threshold {auto.threshold:g} -> {describe(p)} ({reason})",
        warning=True,
    )
    p.pause(
        "ThresholdMovedBack",
        f"threshold moved back to {describe(p)}: {reason}; `kanaria resume` tries the next "
        "step again, `promote` moves on, `abort` rolls back",
    )
    return True


def promote(p: Pass) -> Promoted:
    """Finish the current step now (a setThreshold step applies its threshold)."""
    all_steps = steps(p)
    i = p.s.currentStep or 0
    step = all_steps[i] if i < len(all_steps) else None
    if step is not None and step.setThreshold is not None:
        _set_threshold(p, step.setThreshold)
    _advance(p)
    j = p.s.currentStep or 0
    if j >= len(all_steps):
        _final_mode(p)
    return Promoted(forced=j >= len(all_steps) or all_steps[j].setThreshold is not None)


def _missing_settings(p: Pass) -> str | None:
    if p.spec.strategy.automation_ramp is None:
        return "automation"
    return None if p.spec.automation is not None else "automation"


AUTOMATING = Stage(
    name="Automating",
    progress=progress,
    promote=promote,
    missing_settings=_missing_settings,
)
"""The automation ramp's stage."""
