"""Full promotion, the stage every strategy can end in (Switching).

A canary after its last step, a shadow promoted by hand without graduating, and a
``promote --full`` all scale the candidate to full size and then move all traffic;
blue-green switches traffic first and completes here after its post-promotion wait.
"""

from __future__ import annotations

from kanaria.api import Phase, Verdict
from kanaria.rollout.pass_state import GraduateKind, Pass, Promoted, Stage


def begin_switch(p: Pass, forced: bool) -> None:
    """Full promotion: scale the candidate to full size, then move all traffic."""
    cand = p.s.candidate
    assert cand is not None
    p.s.stage = "Switching"
    p.s.phase = Phase.Promoting
    p.s.mirror = None
    p.s.message = f"promoting {cand.version}: scaling to {p.spec.replicas} replicas"
    p.set_versions(p.spec.replicas)
    progress_switch(p, forced)


def progress_switch(p: Pass, forced: bool) -> None:
    cand = p.s.candidate
    assert cand is not None
    if not p.ready_at(cand.version, p.spec.replicas):
        p.s.message = f"promoting {cand.version}: waiting for {p.spec.replicas} ready replicas"
        return
    if not forced and p.has_gates and p.s.lastRoundVerdict not in (None, Verdict.Successful):
        p.s.message = f"promoting {cand.version}: holding until analysis passes"
        return
    complete_promotion(p)


def complete_promotion(p: Pass) -> None:
    cand = p.s.candidate
    assert cand is not None
    old = p.s.stable.version if p.s.stable else "?"
    p.s.stable = cand
    p.end_rollout(Phase.Healthy, f"{cand.version} promoted: stable at 100%")
    p.s.currentStep = None
    p.event("Promoted", f"{cand.version} is stable at 100%; {old} stopped")


def _progress(p: Pass, forced: bool) -> GraduateKind | None:
    # Only while Promoting: a Switching stage in another phase waits for a person.
    if p.s.phase is Phase.Promoting:
        progress_switch(p, forced)
    return None


def _promote(p: Pass) -> Promoted:
    # Nothing to finish early: the force lets it complete once the candidate is ready.
    return Promoted(forced=True)


SWITCHING = Stage(name="Switching", progress=_progress, promote=_promote, promoting=True)
