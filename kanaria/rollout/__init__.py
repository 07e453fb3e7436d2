"""The rollout engine: a pure state machine shared by the operator and ``kanaria up``.

The control loop around it is written once, in :mod:`kanaria.loop` (``run_pass``)::

    requests = plan_measurements(spec, status, now)
    measurements = [actuator.measure(r, now) for r in requests]
    decision = decide(spec, status, Observations(...), now)
    # effects planned from decision.status against what runs (kanaria.loop.effects),
    # then the status written once, the events posted, retraining requested;
    # the next pass at decision.nextPassAt, or sooner when readiness changes
"""

from kanaria.rollout.engine import decide
from kanaria.rollout.gates import applicable_gates, gate_stages, mirrored_stages
from kanaria.rollout.pass_state import ACTIVE_PHASES, MAX_MEASUREMENTS, worst
from kanaria.rollout.plan import plan_measurements
from kanaria.rollout.retrain import RETRAINING_METRIC, retraining_gate
from kanaria.rollout.types import (
    COMMAND_VERBS,
    Action,
    Command,
    CommandVerb,
    Decision,
    Event,
    MeasurementRequest,
    Observations,
    Retrain,
    VersionObservation,
)

__all__ = [
    "ACTIVE_PHASES",
    "COMMAND_VERBS",
    "MAX_MEASUREMENTS",
    "RETRAINING_METRIC",
    "Action",
    "Command",
    "CommandVerb",
    "Decision",
    "Event",
    "MeasurementRequest",
    "Observations",
    "Retrain",
    "VersionObservation",
    "applicable_gates",
    "decide",
    "gate_stages",
    "mirrored_stages",
    "plan_measurements",
    "retraining_gate",
    "worst",
]
