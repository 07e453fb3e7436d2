"""The dispatch tables: each strategy's entry, and each stage's rules, by name.

The engine and the measurement planner look a stage up here instead of comparing
``status.stage`` with names, so a stage's behaviour is defined in its strategy's
module and nowhere else.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from kanaria.api import RolloutStage
from kanaria.rollout.automation import AUTOMATING
from kanaria.rollout.automation import enter as enter_automation
from kanaria.rollout.bluegreen import POST_PROMOTION, PREVIEW
from kanaria.rollout.bluegreen import enter as enter_blue_green
from kanaria.rollout.canary import STEPS
from kanaria.rollout.canary import enter as enter_canary
from kanaria.rollout.pass_state import Pass, Stage, StrategyKind
from kanaria.rollout.promotion import SWITCHING
from kanaria.rollout.shadow import MIRRORING
from kanaria.rollout.shadow import enter as enter_shadow

STAGES: Mapping[RolloutStage, Stage] = {
    stage.name: stage
    for stage in (MIRRORING, PREVIEW, STEPS, AUTOMATING, SWITCHING, POST_PROMOTION)
}
"""Every rollout stage (``kanaria.api.ROLLOUT_STAGES``) and its rules."""

STRATEGIES: Mapping[StrategyKind, Callable[[Pass], None]] = {
    "canary": enter_canary,
    "blueGreen": enter_blue_green,
    "shadow": enter_shadow,
    "automation": enter_automation,
}
"""How each strategy begins its first stage for the current candidate."""


def stage_of(stage: RolloutStage | None) -> Stage | None:
    """The rules of ``stage`` (None outside a rollout)."""
    return STAGES[stage] if stage is not None else None
