"""Canary: steps of ``setWeight``, ``pause`` and ``analysis``, then full promotion.

One stage, Steps; ``status.currentStep`` is the step being worked on and
``status.stepWeight`` the traffic the candidate gets (once Ready). The candidate
is sized for the weight of the current or next setWeight step, so its replicas
are up before the traffic arrives.
"""

from __future__ import annotations

from kanaria.api import Phase
from kanaria.rollout.pass_state import GraduateKind, Pass, Promoted, Stage
from kanaria.rollout.promotion import begin_switch


def enter(p: Pass) -> None:
    """Begin the canary for the current candidate at step 0."""
    p.s.stage = "Steps"
    p.s.currentStep = 0
    p.s.message = "canary: starting"
    p.set_versions(p.candidate_replicas(next_weight(p)))


def next_weight(p: Pass) -> int:
    """The weight of the current or next setWeight step (sizes the canary)."""
    steps = p.canary_steps()
    for step in steps[p.s.currentStep or 0 :]:
        if step.setWeight is not None:
            return max(step.setWeight, p.s.stepWeight)
    return max(p.s.stepWeight, 1)


def advance_step(p: Pass) -> None:
    p.s.currentStep = (p.s.currentStep or 0) + 1
    p.s.stepStartedAt = p.now
    steps = p.canary_steps()
    if p.s.currentStep < len(steps) and steps[p.s.currentStep].analysis is not None:
        p.s.successfulRounds = 0
    p.event("StepAdvanced", f"step {p.s.currentStep}/{len(steps)}, weight {p.s.stepWeight}%")


def progress(p: Pass, forced: bool) -> GraduateKind | None:
    """Work through the steps as far as they allow in this pass; after the last one,
    begin the full promotion. A manual promote (``forced``) is spent by the first
    weight increase it allows."""
    steps = p.canary_steps()
    cand = p.s.candidate
    assert cand is not None
    while p.s.phase is Phase.Progressing and (p.s.currentStep or 0) < len(steps):
        i = p.s.currentStep or 0
        step = steps[i]
        if step.setWeight is not None:
            if step.setWeight > p.s.stepWeight:
                if not p.clear_to_advance(forced):
                    p.s.message = f"step {i}: holding {p.s.stepWeight}% until analysis passes"
                    return None
                p.s.stepWeight = step.setWeight
                p.s.successfulRounds = 0
                forced = False
                p.set_versions(p.candidate_replicas(p.s.stepWeight))
            if not p.ready(cand.version):
                p.s.message = f"step {i}: waiting for {cand.version} to be Ready"
                return None
            advance_step(p)
        elif step.pause is not None:
            if p.pausing(i, step.pause, f"{p.s.stepWeight}%"):
                return None
            if not p.clear_to_advance(forced):
                p.s.message = f"step {i}: pause over, holding until analysis passes"
                return None
            advance_step(p)
        else:
            assert step.analysis is not None
            if p.analysing(i, step.analysis, forced, f"{p.s.stepWeight}%"):
                return None
            advance_step(p)
    if p.s.phase is Phase.Progressing and (p.s.currentStep or 0) >= len(steps):
        if not p.clear_to_advance(forced):
            p.s.message = "all steps done, holding until analysis passes"
            return None
        begin_switch(p, forced)
    return None


def promote(p: Pass) -> Promoted:
    """Finish the current step now (a setWeight step applies its weight)."""
    steps = p.canary_steps()
    step = steps[p.s.currentStep or 0] if (p.s.currentStep or 0) < len(steps) else None
    if step is not None and step.setWeight is not None:
        p.s.stepWeight = step.setWeight
    advance_step(p)
    # Finish this step only: the next one is forced only if it is a setWeight (so it
    # applies now) or the promotion itself; a following analysis step still runs.
    i = p.s.currentStep or 0
    return Promoted(forced=i >= len(steps) or steps[i].setWeight is not None)


def _missing_settings(p: Pass) -> str | None:
    return None if p.canary_steps() else "canary"


def _candidate_size(p: Pass) -> int:
    return p.candidate_replicas(next_weight(p))


def _analysis_without_traffic(p: Pass) -> bool:
    steps = p.canary_steps()
    i = p.s.currentStep or 0
    return i < len(steps) and steps[i].analysis is not None


STEPS = Stage(
    name="Steps",
    progress=progress,
    promote=promote,
    missing_settings=_missing_settings,
    candidate_size=_candidate_size,
    analysis_without_traffic=_analysis_without_traffic,
)
