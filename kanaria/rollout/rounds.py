"""One analysis round: per-gate counters, and the limits that roll back or pause.

The same for every strategy, and applied before the strategy moves, so a failing
round stops a rollout before it could take the next step.
"""

from __future__ import annotations

from kanaria.api import GateCounters, Phase, Verdict
from kanaria.rollout.automation import threshold_fallback
from kanaria.rollout.gates import applicable_gates, collecting
from kanaria.rollout.pass_state import Pass, worst


def record_round(p: Pass) -> None:
    """Count this pass's measurements of the candidate (the gates that apply in the
    stage they were planned for). Failed > failureLimit or Errors in a row >
    consecutiveErrorLimit roll back; Inconclusive in a row > inconclusiveLimit pauses
    (a compare gate still collecting its planned sample does not count: see
    ``kanaria.rollout.gates.collecting``)."""
    cand = p.s.candidate
    if not p.obs.measurements or not p.active or cand is None:
        return
    names = {m.name for m in applicable_gates(p.spec, p.round_stage)}
    round_ = [m for m in p.obs.measurements if m.version == cand.version and m.metric in names]
    if not round_:
        return
    if threshold_fallback(p, round_):  # an automation gate failed: threshold back, no rollback
        return
    limits = p.spec.analysis
    for m in round_:
        c = p.s.gates.setdefault(m.metric, GateCounters())
        if m.verdict is Verdict.Failed:
            c.failed += 1
        c.consecutiveErrors = c.consecutiveErrors + 1 if m.verdict is Verdict.Error else 0
        c.consecutiveInconclusive = (
            c.consecutiveInconclusive + 1
            if m.verdict is Verdict.Inconclusive and not collecting(m)
            else 0
        )
    p.keep(round_)
    verdict = worst([m.verdict for m in round_])
    p.s.lastAnalysisAt = p.now
    p.s.lastRoundVerdict = verdict
    p.s.successfulRounds = p.s.successfulRounds + 1 if verdict is Verdict.Successful else 0
    by_name = {m.metric: m for m in round_}
    for name, c in sorted(p.s.gates.items()):
        got = by_name.get(name)
        if got is None:
            continue
        if c.failed > limits.failureLimit:
            p.rollback(
                "AnalysisFailed",
                f"gate {name} failed {c.failed}x (failureLimit {limits.failureLimit}): "
                f"{got.reason}",
            )
            return
        if c.consecutiveErrors > limits.consecutiveErrorLimit:
            p.rollback(
                "AnalysisError",
                f"gate {name} errored {c.consecutiveErrors}x in a row "
                f"(consecutiveErrorLimit {limits.consecutiveErrorLimit}): {got.reason}",
            )
            return
    for name, c in sorted(p.s.gates.items()):
        got = by_name.get(name)
        if (
            got is not None
            and c.consecutiveInconclusive > limits.inconclusiveLimit
            and p.s.phase is not Phase.Paused
        ):
            p.pause(
                "InconclusiveAnalysis",
                f"gate {name} inconclusive {c.consecutiveInconclusive}x in a row "
                f"(inconclusiveLimit {limits.inconclusiveLimit}): {got.reason}; "
                "`kanaria resume` keeps waiting for data, `promote` moves on, "
                "`abort` rolls back",
            )
            return
