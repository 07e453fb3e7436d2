"""Prometheus alert rules for Kanaria, with a runbook in every alert's annotations.

The alerts cover what a platform engineer must act on: a rollout that rolled
back, got stuck or cannot reach a verdict, a version that errors, is slow,
sees drifted inputs or disagrees with production in shadow, a model server
that is not ready, and a router or operator that is gone. Thresholds are module
constants so the promtool unit tests (tests/kanaria/monitoring/rules_test.yaml)
and the runbooks quote the same numbers as the rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from kanaria import metric_names as m
from kanaria.monitoring.promql import (
    COMPONENT_LABEL,
    MODEL_KEYS,
    MODEL_SERVER,
    OPERATOR,
    ROUTER,
    VERSION_KEYS,
)

GROUP_NAME: Final = "kanaria.rules"

# Values of the ``phase`` and ``verdict`` labels: kanaria.api's Phase and Verdict
# members (a test keeps them equal); spelled out so this module needs no API import.
PHASE_PROGRESSING: Final = "Progressing"
PHASE_PROMOTING: Final = "Promoting"
PHASE_ROLLED_BACK: Final = "RolledBack"
VERDICT_SUCCESSFUL: Final = "Successful"
VERDICT_INCONCLUSIVE: Final = "Inconclusive"

STUCK_AFTER_SECONDS: Final = 1800
"""A rollout that is Progressing or Promoting with no phase/step change for this long is stuck."""
INCONCLUSIVE_WINDOW: Final = "15m"
INCONCLUSIVE_MIN: Final = 3
"""Inconclusive measurements of one gate in the window, with no successful one, to alert."""
ERROR_RATIO: Final = 0.05
"""Share of 5xx answers per version that is an incident."""
MIN_RPS: Final = 0.1
"""Below this request rate ratios are noise, so the error and latency alerts stay silent."""
LATENCY_P99_SECONDS: Final = 1.0
"""p99 latency through the router per version."""
DRIFT_PSI: Final = 0.25
"""Population stability index above which an input has shifted significantly
(the usual reading: < 0.1 stable, 0.1-0.25 moderate, > 0.25 significant)."""
DISAGREEMENT_RATIO: Final = 0.10
"""Share of shadow answers that differ from the primary's."""
MIN_COMPARISONS: Final = 20
"""Comparisons needed in the window before disagreement is judged."""
AGREEMENT_COLLAPSED: Final = 0.8
"""Reviewer agreement with the model's suggestions below which it has collapsed."""
MIN_REVIEW_LABELS: Final = 20
"""Reviewers' labels needed in the window before agreement is judged."""


@dataclass(frozen=True)
class Alert:
    """One alerting rule and the words a person needs when it fires."""

    name: str
    expr: str
    duration: str
    severity: str
    summary: str
    description: str
    runbook: str

    def rule(self) -> dict[str, Any]:
        """The rule in Prometheus' rule-file shape (also the PrometheusRule spec shape)."""
        return {
            "alert": self.name,
            "expr": self.expr,
            "for": self.duration,
            "labels": {"severity": self.severity, "component": "kanaria"},
            "annotations": {
                "summary": self.summary,
                "description": self.description,
                "runbook": self.runbook,
            },
        }


def _per_version_rate(selector: str, window: str) -> str:
    return f"sum by ({VERSION_KEYS}) (rate({selector}[{window}]))"


def _alerts() -> list[Alert]:
    requests = m.ROUTER_REQUESTS
    errors = requests + '{code=~"5.."}'
    shadow_keys = f"{VERSION_KEYS}, baseline"
    gate_keys = f"{MODEL_KEYS}, metric"
    active = f'{m.ROLLOUT_PHASE}{{phase=~"{PHASE_PROGRESSING}|{PHASE_PROMOTING}"}} == 1'
    return [
        Alert(
            name="KanariaRolloutRolledBack",
            expr=f'max by ({MODEL_KEYS}) ({m.ROLLOUT_PHASE}{{phase="{PHASE_ROLLED_BACK}"}}) == 1',
            duration="0m",
            severity="warning",
            summary="Rollout of {{ $labels.model }} in {{ $labels.namespace }} rolled back",
            description=(
                "The candidate version failed its analysis or was aborted; 100% of traffic is "
                "back on the stable version."
            ),
            runbook=(
                "1. `kubectl describe mdep {{ $labels.model }} -n {{ $labels.namespace }}`: "
                "status.measurements and the Events say which gate failed and with what value. "
                "2. Compare the versions on the Kanaria dashboard (success rate, latency, drift). "
                "3. Fix the model or the gate, then `kanaria retry {{ $labels.model }} -n "
                "{{ $labels.namespace }}`, or set spec.model back to the stable version to "
                "clear the alert."
            ),
        ),
        Alert(
            name="KanariaRolloutStuck",
            expr=(
                f"(time() - max by ({MODEL_KEYS}) ({m.ROLLOUT_LAST_TRANSITION})) "
                f"> {STUCK_AFTER_SECONDS} and on ({MODEL_KEYS}) ({active})"
            ),
            duration="5m",
            severity="warning",
            summary="Rollout of {{ $labels.model }} in {{ $labels.namespace }} makes no progress",
            description=(
                f"No phase or step change for more than {STUCK_AFTER_SECONDS // 60} minutes "
                "while the rollout is Progressing or Promoting."
            ),
            runbook=(
                "1. `kanaria status {{ $labels.model }} -n {{ $labels.namespace }}`: which step, "
                "which version is not Ready? 2. `kubectl get pods -n {{ $labels.namespace }} -l "
                "app.kubernetes.io/instance={{ $labels.model }}`: a candidate stuck in Pending or "
                "CrashLoopBackOff never gets traffic. 3. Check the operator logs. "
                "4. `kanaria abort` to return to stable, or fix the cause and let it continue."
            ),
        ),
        Alert(
            name="KanariaAnalysisInconclusive",
            expr=(
                f"sum by ({gate_keys}) (increase({m.ANALYSIS_MEASUREMENTS}"
                f'{{verdict="{VERDICT_INCONCLUSIVE}"}}[{INCONCLUSIVE_WINDOW}])) '
                f">= {INCONCLUSIVE_MIN} unless on ({gate_keys}) "
                f"sum by ({gate_keys}) (increase({m.ANALYSIS_MEASUREMENTS}"
                f'{{verdict="{VERDICT_SUCCESSFUL}"}}[{INCONCLUSIVE_WINDOW}])) > 0'
            ),
            duration="5m",
            severity="warning",
            summary=("Gate {{ $labels.metric }} of {{ $labels.model }} cannot reach a verdict"),
            description=(
                f"At least {INCONCLUSIVE_MIN} inconclusive measurements and no successful one in "
                f"{INCONCLUSIVE_WINDOW}: the rollout holds its weight (it never promotes on "
                "missing data)."
            ),
            runbook=(
                "Inconclusive means no data or fewer requests than spec.analysis.minRequests. "
                "1. Is traffic reaching the candidate (Throughput row)? 2. Is Prometheus scraping "
                'the router and model servers (`up{kanaria_component=~"router|model-server"}`)? '
                "3. Does a custom `query:` gate return a series? Lower minRequests, raise the "
                "weight by hand with `kanaria promote`, or fix the query."
            ),
        ),
        Alert(
            name="KanariaVersionHighErrorRate",
            expr=(
                f"({_per_version_rate(errors, '5m')} "
                f"/ {_per_version_rate(requests, '5m')}) > {ERROR_RATIO} "
                f"and {_per_version_rate(requests, '5m')} > {MIN_RPS}"
            ),
            duration="5m",
            severity="critical",
            summary=(
                "{{ $labels.model }} {{ $labels.version }} answers "
                "{{ $value | humanizePercentage }} of requests with 5xx"
            ),
            description=(
                f"More than {ERROR_RATIO:.0%} server errors through the router for one version "
                "over 5 minutes."
            ),
            runbook=(
                "1. Is it the candidate? The rollout gates should roll it back; `kanaria abort "
                "{{ $labels.model }}` does it now. 2. Is it the stable version? Check the model "
                "server logs and the Software row (memory, in-flight) for overload or crashes. "
                "3. 502/503 from the router mean the model server is unreachable or not Ready."
            ),
        ),
        Alert(
            name="KanariaVersionHighLatency",
            expr=(
                f"histogram_quantile(0.99, sum by ({VERSION_KEYS}, le) "
                f"(rate({m.ROUTER_LATENCY}_bucket[5m]))) > {LATENCY_P99_SECONDS} "
                f"and {_per_version_rate(requests, '5m')} > {MIN_RPS}"
            ),
            duration="10m",
            severity="warning",
            summary=(
                "{{ $labels.model }} {{ $labels.version }} p99 latency is "
                "{{ $value | humanizeDuration }}"
            ),
            description=f"p99 latency through the router above {LATENCY_P99_SECONDS}s.",
            runbook=(
                "1. Compare queue time and inference time on the Latency row: queueing means "
                "too few replicas (raise spec.replicas), inference time means a slower model. "
                "2. Batch size near its maximum with growing queue time: scale out. "
                "3. If only the candidate is slow, abort the rollout."
            ),
        ),
        Alert(
            name="KanariaInputDrift",
            expr=(f"max by ({VERSION_KEYS}, input) ({m.INPUT_DRIFT}) > {DRIFT_PSI}"),
            duration="15m",
            severity="warning",
            summary=(
                "Input {{ $labels.input }} of {{ $labels.model }} {{ $labels.version }} drifted "
                '(PSI {{ $value | printf "%.2f" }})'
            ),
            description=(
                f"Population stability index above {DRIFT_PSI} against the reference profile "
                "shipped with the model: live inputs no longer look like the training data."
            ),
            runbook=(
                "1. Check the Input drift row: one input or all of them? A sudden jump often "
                "means an upstream change (units, encoding, a new default value). 2. Check the "
                "missing-value ratio of that input. 3. If the world changed, retrain with recent "
                "data and roll the new version out; if a producer broke, fix the producer."
            ),
        ),
        Alert(
            name="KanariaShadowDisagreement",
            expr=(
                f"(sum by ({shadow_keys}) (rate({m.SHADOW_COMPARISONS}"
                f'{{result="disagree"}}[10m])) / sum by ({shadow_keys}) '
                f"(rate({m.SHADOW_COMPARISONS}[10m]))) > {DISAGREEMENT_RATIO} "
                f"and sum by ({shadow_keys}) (increase({m.SHADOW_COMPARISONS}[10m])) "
                f">= {MIN_COMPARISONS}"
            ),
            duration="10m",
            severity="warning",
            summary=(
                "Shadow {{ $labels.model }} {{ $labels.version }} disagrees with "
                "{{ $labels.baseline }} on {{ $value | humanizePercentage }} of requests"
            ),
            description=(
                f"More than {DISAGREEMENT_RATIO:.0%} of mirrored answers differ from the answers "
                "production returned."
            ),
            runbook=(
                "The shadow never answers clients, so nothing is broken yet. 1. Decide whether "
                "the difference is expected (a new model is meant to answer differently). "
                "2. If not, keep it from graduating: `kanaria abort {{ $labels.model }}`. "
                "3. Compare the Output class mix of both versions to see where they differ."
            ),
        ),
        Alert(
            name="KanariaReviewQueueDropping",
            expr=(
                f'sum by ({MODEL_KEYS}, sink) (rate({m.REVIEW_CASES}{{outcome="dropped"}}[5m])) > 0'
            ),
            duration="5m",
            severity="warning",
            summary=(
                "Review cases of {{ $labels.model }} are dropped at the {{ $labels.sink }} sink"
            ),
            description=(
                "The sink's buffer is full: review cases are dropped (clients are not slowed, "
                "but reviewers never see these cases and their labels never come back)."
            ),
            runbook=(
                "1. Is the sink up? The router log names each failed delivery; "
                "kanaria_review_delivery_retries_total rising means it answers with errors. "
                "2. Is it slower than the review rate? Raise spec.automation.review.bufferSize "
                "for bursts, or lower the review rate (a lower threshold automates more). "
                "3. Cases already dropped are lost: those answers were still returned to "
                "clients marked review."
            ),
        ),
        Alert(
            name="KanariaReviewerAgreementCollapsed",
            expr=(
                f"((sum by ({VERSION_KEYS}) (increase({m.REVIEW_AGREEMENT}"
                f'{{result="agree"}}[30m])) or 0 * sum by ({VERSION_KEYS}) '
                f"(increase({m.REVIEW_AGREEMENT}[30m]))) / sum by ({VERSION_KEYS}) "
                f"(increase({m.REVIEW_AGREEMENT}[30m]))) < {AGREEMENT_COLLAPSED} "
                f"and sum by ({VERSION_KEYS}) (increase({m.REVIEW_AGREEMENT}[30m])) "
                f">= {MIN_REVIEW_LABELS}"
            ),
            duration="10m",
            severity="critical",
            summary=(
                "Reviewers agree with {{ $labels.model }} {{ $labels.version }} on only "
                "{{ $value | humanizePercentage }} of review cases"
            ),
            description=(
                f"Below {AGREEMENT_COLLAPSED:.0%} agreement between reviewers and the model's "
                "suggestions: the answers it decides on its own (above the threshold) are "
                "likely as wrong."
            ),
            runbook=(
                "1. Dashboard, Degree of automation: which confidence bands disagree? "
                "2. Send everything to review at once: set spec.automation.mode: assist (the "
                "routes change with no restart), or `kanaria abort {{ $labels.model }}` during "
                "an automation ramp. 3. Look for drift (Input drift row) and retrain."
            ),
        ),
        Alert(
            name="KanariaModelServerNotReady",
            expr=(
                f"(min by ({VERSION_KEYS}, instance) ({m.SERVER_READY}) == 0) "
                f'or (up{{{COMPONENT_LABEL}="{MODEL_SERVER}"}} == 0)'
            ),
            duration="5m",
            severity="warning",
            summary="A model server of {{ $labels.model }} {{ $labels.version }} is not ready",
            description=(
                "The server did not load or warm up its model, or Prometheus cannot scrape it "
                "({{ $labels.instance }})."
            ),
            runbook=(
                "1. `kubectl logs` of the pod: a wrong model URI, a sha256 mismatch or an "
                "invalid ONNX file stop the load with a clear message. 2. Out of memory: raise "
                "the model server's memory limit. 3. A not-ready candidate gets no traffic and "
                "holds the rollout."
            ),
        ),
        Alert(
            name="KanariaRouterDown",
            expr=f'up{{{COMPONENT_LABEL}="{ROUTER}"}} == 0',
            duration="5m",
            severity="critical",
            summary="Kanaria router {{ $labels.instance }} is down",
            description="Prometheus cannot scrape a router: clients of its models get no answers.",
            runbook=(
                "1. `kubectl get pods -l app.kubernetes.io/component=router -A`. 2. Its logs: a "
                "rejected routes document is reported there and keeps the last good routes. "
                "3. Check the router Service and its endpoints."
            ),
        ),
        Alert(
            name="KanariaRouterConfigRejected",
            expr=(
                f"sum by (namespace, instance) (increase({m.ROUTER_CONFIG_RELOADS}"
                f'{{result="rejected"}}[10m])) > 0'
            ),
            duration="0m",
            severity="warning",
            summary="Router {{ $labels.instance }} rejected a routes document",
            description=(
                "A new routes document failed validation; the router keeps serving the last "
                "good one, so weight changes are not applied."
            ),
            runbook=(
                "1. The router log names the invalid field. 2. If the operator wrote it, check "
                "the operator version matches the router version (image tags in the chart "
                "values). 3. If edited by hand, fix the ConfigMap key routes.yaml."
            ),
        ),
        Alert(
            name="KanariaOperatorDown",
            expr=f'absent(up{{{COMPONENT_LABEL}="{OPERATOR}"}} == 1)',
            duration="5m",
            severity="critical",
            summary="The Kanaria operator is down",
            description=(
                "No operator answers Prometheus: rollouts neither progress nor roll back "
                "(traffic keeps its current split)."
            ),
            runbook=(
                "1. `kubectl -n kanaria-system get deploy,pods -l "
                "app.kubernetes.io/name=kanaria-operator`. 2. `kubectl -n kanaria-system logs "
                "deploy/kanaria-operator`: RBAC errors mean the ClusterRole is out of date (helm "
                "upgrade). 3. Its state lives in each ModelDeployment's status, so a restart "
                "continues where it stopped."
            ),
        ),
    ]


ALERTS: Final = tuple(_alerts())


def rule_groups() -> dict[str, Any]:
    """The rules as a Prometheus rule file (``groups:``), which is also a PrometheusRule spec."""
    return {"groups": [{"name": GROUP_NAME, "rules": [alert.rule() for alert in ALERTS]}]}
