"""When the engine next needs a pass (pure, like ``decide``).

A control loop that polls on a fixed tick either wastes passes or acts late: a 45 s
pause checked every 60 s lasts up to 105 s. The engine knows every moment at which a
rule can change its mind with nothing else changing, so it says when: the next
analysis round, the next retraining check, and the end of any pause or delay a
strategy is waiting out (``Pass.left``). Everything else (a spec, a command, a version
becoming Ready) is a change the loop is woken by.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from kanaria.api import ModelDeploymentSpec, ModelDeploymentStatus, Phase
from kanaria.rollout.gates import applicable_gates
from kanaria.rollout.pass_state import ACTIVE_PHASES


def next_pass_at(
    spec: ModelDeploymentSpec,
    status: ModelDeploymentStatus,
    timers: list[datetime],
) -> datetime | None:
    """The earliest moment a rule can next act on its own, or None if none can."""
    interval = timedelta(seconds=spec.analysis.interval_seconds)
    moments = list(timers)
    if (
        status.phase in ACTIVE_PHASES
        and status.candidate is not None
        and applicable_gates(spec, status.stage)
    ):
        last = status.lastAnalysisAt or status.analysisStartedAt
        if last is not None:
            moments.append(last + interval)
    watching = spec.retraining is not None and status.stable is not None
    if watching and status.phase is not Phase.Pending and status.lastRetrainCheckAt is not None:
        moments.append(status.lastRetrainCheckAt + interval)
    return min(moments) if moments else None
