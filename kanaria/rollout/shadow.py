"""Shadow: the candidate gets mirrored copies of requests, never answers clients.

One stage, Mirroring. Once its duration is over and its analysis passed, the shadow
graduates (``graduateTo``): it ends with the stable unchanged (``none``), or the
engine continues the same rollout as a canary or blue-green in the same pass.
"""

from __future__ import annotations

from kanaria.api import Phase
from kanaria.durations import parse_duration
from kanaria.rollout.pass_state import GraduateKind, Pass, Promoted, Stage
from kanaria.rollout.promotion import begin_switch


def enter(p: Pass) -> None:
    """Begin mirroring to the candidate, sized for its share of mirrored traffic."""
    shadow = p.spec.strategy.shadow
    assert shadow is not None
    p.s.stage = "Mirroring"
    p.s.message = f"shadow: mirroring {shadow.mirrorPercent:g}% of requests"
    p.set_versions(p.candidate_replicas(shadow.mirrorPercent))


def progress(p: Pass, forced: bool) -> GraduateKind | None:
    shadow = p.spec.strategy.shadow
    assert shadow is not None
    if shadow.duration is not None:
        left = p.left(parse_duration(shadow.duration), p.s.stepStartedAt)
        if left > 0:
            p.s.message = f"shadow: mirroring, {left:.0f}s left"
            return None
    if not p.rounds_passed(shadow.analysis.rounds, forced) or not p.clear_to_advance(forced):
        p.s.message = f"shadow: analysis {p.s.successfulRounds}/{shadow.analysis.rounds} rounds"
        return None
    return graduate(p, forced)


def graduate(p: Pass, forced: bool) -> GraduateKind | None:
    """The shadow passed (or was promoted): stop mirroring and end it, promote it fully
    (``graduateTo: none`` promoted by hand), or return the strategy it continues as.

    The engine enters that strategy itself (it owns the table of strategies, which
    includes this one); a graduation spends the force of a manual promote.
    """
    shadow = p.spec.strategy.shadow
    assert shadow is not None
    cand = p.s.candidate
    assert cand is not None
    p.s.mirror = None
    if shadow.graduateTo == "none":
        if forced:
            begin_switch(p, forced)
            return None
        stable = p.s.stable.version if p.s.stable else "?"
        p.end_rollout(Phase.Healthy, f"shadow of {cand.version} passed; {stable} stays stable")
        p.event("ShadowCompleted", f"{cand.version} passed the shadow run and was stopped")
        return None
    p.event("Graduated", f"shadow of {cand.version} passed: continuing as {shadow.graduateTo}")
    return shadow.graduateTo


def _promote(p: Pass) -> Promoted:
    continue_as = graduate(p, forced=True)
    return Promoted(forced=continue_as is None, continue_as=continue_as)


def _missing_settings(p: Pass) -> str | None:
    return None if p.spec.strategy.shadow is not None else "shadow"


def _candidate_size(p: Pass) -> int:
    shadow = p.spec.strategy.shadow
    return p.candidate_replicas(shadow.mirrorPercent) if shadow is not None else p.spec.replicas


def _mirror_percent(p: Pass) -> float:
    shadow = p.spec.strategy.shadow
    return shadow.mirrorPercent if shadow is not None else 0.0


MIRRORING = Stage(
    name="Mirroring",
    progress=progress,
    promote=_promote,
    traffic="server",
    missing_settings=_missing_settings,
    candidate_size=_candidate_size,
    mirror_percent=_mirror_percent,
)
