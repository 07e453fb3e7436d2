"""Blue-green: the candidate comes up at full size with 0% traffic, switches at once.

Two stages. Preview: the candidate is checked (preview header, mirrored copies,
pre-promotion analysis) and waits for a promote unless ``autoPromote``. After the
switch, PostPromotion: all traffic is on the candidate while the old version stays
warm for ``scaleDownDelay`` with post-promotion analysis, so rollback is one switch.
"""

from __future__ import annotations

from kanaria.api import Phase
from kanaria.durations import parse_duration
from kanaria.rollout.pass_state import GraduateKind, Pass, Promoted, Stage
from kanaria.rollout.promotion import complete_promotion


def enter(p: Pass) -> None:
    """Begin the preview: the candidate at full size, no traffic yet."""
    p.s.stage = "Preview"
    p.s.message = "blue-green: bringing the candidate up at full size, 0% traffic"
    p.set_versions(p.spec.replicas)


def progress_preview(p: Pass, forced: bool) -> GraduateKind | None:
    bg = p.blue_green()
    cand = p.s.candidate
    assert cand is not None
    assert bg is not None  # the engine checked Stage.missing_settings
    if not p.ready_at(cand.version, p.spec.replicas):
        p.s.message = f"blue-green: waiting for {cand.version} at full size"
        return None
    pre = bg.prePromotionAnalysis
    if pre is not None and not p.rounds_passed(pre.rounds, forced):
        p.s.message = (
            f"blue-green: pre-promotion analysis {p.s.successfulRounds}/{pre.rounds} rounds"
        )
        return None
    if not p.clear_to_advance(forced):
        p.s.message = "blue-green: holding until analysis passes"
        return None
    if not bg.autoPromote and not forced:
        p.pause("AwaitingPromotion", f"blue-green: {cand.version} ready, waiting for promote")
        return None
    switch(p)
    return None


def switch(p: Pass) -> None:
    """All traffic to the candidate in one step; the old version stays warm."""
    cand = p.s.candidate
    assert cand is not None
    p.s.stage = "PostPromotion"
    p.s.phase = Phase.Promoting
    p.s.stepWeight = 100
    p.s.mirror = None
    p.s.switchedAt = p.now
    p.set_stage_start()
    p.s.message = f"blue-green: switched to {cand.version}, old version kept warm"
    p.event("Switched", f"100% of traffic on {cand.version}")


def progress_post_promotion(p: Pass, forced: bool) -> GraduateKind | None:
    bg = p.blue_green()
    assert bg is not None  # the engine checked Stage.missing_settings
    wait = p.left(parse_duration(bg.scaleDownDelay), p.s.switchedAt)
    post = bg.postPromotionAnalysis
    if post is not None and not p.rounds_passed(post.rounds, forced):
        p.s.message = (
            f"blue-green: post-promotion analysis {p.s.successfulRounds}/{post.rounds} rounds"
        )
        return None
    if wait > 0:
        p.s.message = f"blue-green: old version kept warm for {wait:.0f}s more"
        return None
    if not p.clear_to_advance(forced):
        p.s.message = "blue-green: holding the old version until analysis passes"
        return None
    complete_promotion(p)
    return None


def _promote_preview(p: Pass) -> Promoted:
    switch(p)
    return Promoted(forced=False)  # the switch spent it


def _promote_post_promotion(p: Pass) -> Promoted:
    complete_promotion(p)
    return Promoted(forced=True)


def _missing_settings(p: Pass) -> str | None:
    return None if p.blue_green() is not None else "blueGreen"


def _mirror_percent(p: Pass) -> float:
    bg = p.blue_green()
    return bg.mirrorPercent if bg is not None else 0.0


def _pre_promotion_analysis(p: Pass) -> bool:
    bg = p.blue_green()
    return bg is not None and bg.prePromotionAnalysis is not None


PREVIEW = Stage(
    name="Preview",
    progress=progress_preview,
    promote=_promote_preview,
    traffic="server",
    missing_settings=_missing_settings,
    mirror_percent=_mirror_percent,
    analysis_without_traffic=_pre_promotion_analysis,
)
POST_PROMOTION = Stage(
    name="PostPromotion",
    progress=progress_post_promotion,
    promote=_promote_post_promotion,
    promoting=True,
    missing_settings=_missing_settings,
)
