"""A small driver for the pure engine in tests: it plays the actuator's part
(readiness, measurements, commands, time) without any I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from kanaria.api import Measurement, ModelDeploymentSpec, ModelDeploymentStatus, Verdict
from kanaria.rollout import (
    Command,
    CommandVerb,
    Decision,
    MeasurementRequest,
    Observations,
    VersionObservation,
    decide,
    plan_measurements,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def make_spec(
    strategy: dict[str, Any],
    metrics: list[dict[str, Any]] | None = None,
    version: str = "v1",
    **analysis: Any,
) -> ModelDeploymentSpec:
    return ModelDeploymentSpec.model_validate(
        {
            "model": {"version": version, "uri": f"file:///models/{version}.onnx"},
            "replicas": 2,
            "strategy": strategy,
            "analysis": {"interval": "30s", "metrics": metrics or [], **analysis},
        }
    )


SUCCESS_GATE = {"name": "success", "builtin": "successRate", "min": 0.99}


class Sim:
    """Holds spec, status and a clock; each ``tick`` is one engine pass."""

    def __init__(self, spec: ModelDeploymentSpec) -> None:
        self.spec = spec
        self.status: ModelDeploymentStatus | None = None
        self.now = T0
        self.unready: set[str] = set()
        self.nonce = 0
        self.decisions: list[Decision] = []

    def with_version(self, version: str) -> Sim:
        model = self.spec.model.model_copy(
            update={"version": version, "uri": f"file:///models/{version}.onnx"}
        )
        self.spec = self.spec.model_copy(update={"model": model})
        return self

    def requests(self) -> list[MeasurementRequest]:
        return plan_measurements(self.spec, self.status, self.now)

    def tick(
        self,
        seconds: float = 0,
        verdict: Verdict | None = None,
        command: CommandVerb | None = None,
        retrain_verdict: Verdict | None = None,
        retrain_value: float | None = None,
    ) -> Decision:
        """Advance the clock, measure what the engine asked for with ``verdict``, decide."""
        self.now += timedelta(seconds=seconds)
        measurements: list[Measurement] = []
        retraining: Measurement | None = None
        for r in self.requests():
            if r.purpose == "analysis" and verdict is not None:
                measurements.append(
                    Measurement(
                        metric=r.gate.name,
                        version=r.version,
                        query="q",
                        value=1.0 if verdict is Verdict.Successful else 0.5,
                        verdict=verdict,
                        reason=f"test {verdict}",
                        time=self.now,
                    )
                )
            elif r.purpose == "retraining" and retrain_verdict is not None:
                retraining = Measurement(
                    metric=r.gate.name,
                    version=r.version,
                    value=retrain_value,
                    verdict=retrain_verdict,
                    time=self.now,
                )
        cmd = None
        if command is not None:
            self.nonce += 1
            cmd = Command(verb=command, nonce=f"n{self.nonce}")
        versions = {}
        if self.status is not None:
            versions = {
                v.version: VersionObservation(ready=v.version not in self.unready)
                for v in self.status.versions
            }
        obs = Observations(
            versions=versions, measurements=measurements, retraining=retraining, command=cmd
        )
        d = decide(self.spec, self.status, obs, self.now)
        self.status = d.status
        self.decisions.append(d)
        return d

    @property
    def s(self) -> ModelDeploymentStatus:
        assert self.status is not None
        return self.status

    def reasons(self) -> list[str]:
        return [e.reason for d in self.decisions for e in d.events]
