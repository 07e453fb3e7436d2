"""The Kanaria Grafana dashboard, built with grafana-foundation-sdk.

The panels are plain data first (:data:`ROWS`: title, unit, PromQL, whether the
panel is per version), then turned into a dashboard by :func:`build`. Keeping
the data separate lets the tests walk every query without knowing the SDK, and
lets the acceptance test require data from exactly the per-version panels.

Every query filters on the ``$namespace`` and ``$model`` variables and uses
``$__rate_interval`` so Grafana picks a window that fits the scrape interval.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from grafana_foundation_sdk.builders import dashboard as gd
from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.builders.common import StackingConfig, VizLegendOptions
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import (
    BigValueGraphMode,
    BigValueTextMode,
    LegendDisplayMode,
    LegendPlacement,
    StackingMode,
)
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync,
    DataSourceRef,
    VariableHide,
    VariableRefresh,
)

from kanaria import metric_names as m
from kanaria.monitoring.promql import COMPONENT_LABEL, MODEL_KEYS, VERSION_KEYS

UID: Final = "kanaria-rollouts"
TITLE: Final = "Kanaria: model rollouts"
SEL: Final = 'namespace=~"$namespace", model=~"$model"'
"""Label matchers every model-scoped query carries."""
RI: Final = "$__rate_interval"
VARIABLE_VALUES: Final = {
    "$namespace": ".*",
    "$model": ".*",
    "$__rate_interval": "1m",
    "$__interval": "15s",
}
"""What the dashboard variables stand for when a query runs outside Grafana (tests)."""


@dataclass(frozen=True)
class Query:
    """One PromQL target and its legend."""

    expr: str
    legend: str


@dataclass(frozen=True)
class PanelSpec:
    """A panel as data: what it shows and how."""

    title: str
    description: str
    queries: tuple[Query, ...]
    unit: str = "short"
    kind: Literal["timeseries", "stat"] = "timeseries"
    per_version: bool = False
    """True when the panel shows one series per model version (its queries keep ``version``)."""
    stacked: bool = False
    max_value: float | None = None


@dataclass(frozen=True)
class RowSpec:
    title: str
    panels: tuple[PanelSpec, ...] = field(default_factory=tuple)


def _rate(metric: str, extra: str = "") -> str:
    matchers = f"{SEL}, {extra}" if extra else SEL
    return f"rate({metric}{{{matchers}}}[{RI}])"


def _sum_rate(by: str, metric: str, extra: str = "") -> str:
    return f"sum by ({by}) ({_rate(metric, extra)})"


def _quantile(q: float, histogram: str, by: str = VERSION_KEYS) -> str:
    return f"histogram_quantile({q}, sum by ({by}, le) ({_rate(histogram + '_bucket')}))"


V = "{{model}} {{version}}"


def _rows() -> tuple[RowSpec, ...]:
    req = m.ROUTER_REQUESTS
    ok = 'code!~"5.."'
    agree = 'result="agree"'
    sent = 'outcome="sent"'
    correct = 'result="correct"'
    labelled = 'result=~"correct|incorrect"'
    shadow_keys = f"{VERSION_KEYS}, baseline"
    automated = 'decision="automated"'
    return (
        RowSpec(
            "Rollouts",
            (
                PanelSpec(
                    "Phase",
                    "Current phase of each ModelDeployment, as decided by the rollout engine.",
                    (
                        Query(
                            f"max by ({MODEL_KEYS}, phase) ({m.ROLLOUT_PHASE}{{{SEL}}}) == 1",
                            "{{model}}: {{phase}}",
                        ),
                    ),
                    kind="stat",
                ),
                PanelSpec(
                    "Traffic weight by version",
                    "Weight the engine decided (by role) and the weight each router applies.",
                    (
                        Query(
                            f"max by ({VERSION_KEYS}, role) ({m.ROLLOUT_WEIGHT}{{{SEL}}})",
                            V + " {{role}} (decided)",
                        ),
                        Query(
                            f"max by ({VERSION_KEYS}) ({m.ROUTER_WEIGHT}{{{SEL}}})",
                            V + " (router)",
                        ),
                    ),
                    unit="percent",
                    per_version=True,
                    max_value=100,
                ),
                PanelSpec(
                    "Canary step",
                    "Index of the current canary step (spec.strategy.canary.steps).",
                    (Query(f"max by ({MODEL_KEYS}) ({m.ROLLOUT_STEP}{{{SEL}}})", "{{model}}"),),
                ),
                PanelSpec(
                    "Analysis measurements by verdict",
                    "Gate measurements: Failed ones count towards the failure limit, "
                    "Inconclusive ones hold the weight.",
                    (
                        Query(
                            f"sum by ({MODEL_KEYS}, metric, verdict) "
                            f"(increase({m.ANALYSIS_MEASUREMENTS}{{{SEL}}}[{RI}]))",
                            "{{model}} {{metric}} {{verdict}}",
                        ),
                    ),
                    stacked=True,
                ),
                PanelSpec(
                    "Compare gates: candidate vs stable",
                    "Each compare gate's last look at the candidate: the compared quantity "
                    "(estimate: candidate minus or over the stable), its confidence-sequence "
                    "interval (lower, upper) and the limit. The gate fails once lower is "
                    "above the limit and passes once upper is at or below it; in between "
                    "it waits for data. Output shares are two-sided: a class share that "
                    "falls by more than the limit fails too.",
                    (
                        Query(
                            f"max by ({VERSION_KEYS}, metric, quantity) "
                            f"({m.ANALYSIS_COMPARISON}{{{SEL}}})",
                            V + " {{metric}} {{quantity}}",
                        ),
                    ),
                    per_version=True,
                ),
                PanelSpec(
                    "Rollout events",
                    "Engine events (Promoted, RolledBack, ...).",
                    (
                        Query(
                            f"sum by ({MODEL_KEYS}, event) "
                            f"(increase({m.ROLLOUT_TRANSITIONS}{{{SEL}}}[{RI}]))",
                            "{{model}} {{event}}",
                        ),
                    ),
                ),
                PanelSpec(
                    "Time since last transition",
                    "Seconds since the phase or step last changed (the stuck alert reads this).",
                    (
                        Query(
                            f"time() - max by ({MODEL_KEYS}) "
                            f"({m.ROLLOUT_LAST_TRANSITION}{{{SEL}}})",
                            "{{model}}",
                        ),
                    ),
                    unit="s",
                ),
                PanelSpec(
                    "Decision loop duration p99",
                    "Time to gather observations, decide and apply one pass of the engine.",
                    (
                        Query(
                            f"histogram_quantile(0.99, sum by (le) "
                            f"(rate({m.DECISION_LATENCY}_bucket[{RI}])))",
                            "p99",
                        ),
                    ),
                    unit="s",
                ),
            ),
        ),
        RowSpec(
            "Success rate",
            (
                PanelSpec(
                    "Success rate by version",
                    "Share of requests through the router not answered with a 5xx.",
                    (
                        Query(
                            f"{_sum_rate(VERSION_KEYS, req, ok)}"
                            f" / ({_sum_rate(VERSION_KEYS, req)} > 0)",
                            V,
                        ),
                    ),
                    unit="percentunit",
                    per_version=True,
                    max_value=1,
                ),
                PanelSpec(
                    "Model server responses by endpoint and code",
                    "Requests answered inside the model servers (infer, feedback, health).",
                    (
                        Query(
                            _sum_rate(f"{VERSION_KEYS}, endpoint, code", m.SERVER_REQUESTS),
                            V + " {{endpoint}} {{code}}",
                        ),
                    ),
                    unit="reqps",
                    per_version=True,
                ),
            ),
        ),
        RowSpec(
            "Latency",
            (
                PanelSpec(
                    "Latency through the router p50 / p99",
                    "Client-observed latency per version.",
                    (
                        Query(_quantile(0.5, m.ROUTER_LATENCY), V + " p50"),
                        Query(_quantile(0.99, m.ROUTER_LATENCY), V + " p99"),
                    ),
                    unit="s",
                    per_version=True,
                ),
                PanelSpec(
                    "Inside the model server p99: total, queue, inference",
                    "Queue time growing means too few replicas; inference time means the model.",
                    (
                        Query(_quantile(0.99, m.SERVER_LATENCY), V + " total"),
                        Query(_quantile(0.99, m.SERVER_QUEUE), V + " queue"),
                        Query(_quantile(0.99, m.SERVER_INFERENCE), V + " inference (batch)"),
                    ),
                    unit="s",
                    per_version=True,
                ),
            ),
        ),
        RowSpec(
            "Throughput",
            (
                PanelSpec(
                    "Requests per second by version",
                    "Requests the router sent to each version.",
                    (Query(_sum_rate(VERSION_KEYS, req), V),),
                    unit="reqps",
                    per_version=True,
                    stacked=True,
                ),
                PanelSpec(
                    "Requests per second by status code",
                    "Router answers per version and HTTP status code.",
                    (Query(_sum_rate(f"{VERSION_KEYS}, code", req), V + " {{code}}"),),
                    unit="reqps",
                    per_version=True,
                ),
                PanelSpec(
                    "Mirrored copies by outcome",
                    "Copies of live requests sent to a shadow: sent, dropped (queue full), failed.",
                    (
                        Query(
                            _sum_rate(f"{VERSION_KEYS}, outcome", m.ROUTER_MIRROR),
                            V + " {{outcome}}",
                        ),
                    ),
                    unit="reqps",
                    per_version=True,
                ),
                PanelSpec(
                    "Mirrored copies the shadow answered (0 = starved)",
                    "Share of the copies made for a shadow that it answered. At 0 while copies "
                    "are made, the shadow is starved: the router drops its copies (the mirror "
                    "worker gets no CPU, or the shadow does not answer), so a shadow stage gets "
                    "no evidence; see KANARIA_MIRROR_PRIORITY.",
                    (
                        Query(
                            f"{_sum_rate(VERSION_KEYS, m.ROUTER_MIRROR, sent)}"
                            f" / ({_sum_rate(VERSION_KEYS, m.ROUTER_MIRROR)} > 0)",
                            V,
                        ),
                    ),
                    unit="percentunit",
                    per_version=True,
                    max_value=1,
                ),
            ),
        ),
        RowSpec(
            "Shadow agreement",
            (
                PanelSpec(
                    "Shadow agreement with the answering version",
                    "Share of mirrored answers equal to what the client got.",
                    (
                        Query(
                            f"{_sum_rate(shadow_keys, m.SHADOW_COMPARISONS, agree)}"
                            f" / ({_sum_rate(shadow_keys, m.SHADOW_COMPARISONS)} > 0)",
                            V + " vs {{baseline}}",
                        ),
                    ),
                    unit="percentunit",
                    per_version=True,
                    max_value=1,
                ),
                PanelSpec(
                    "Shadow comparisons per second",
                    "Comparisons by result.",
                    (
                        Query(
                            _sum_rate(f"{VERSION_KEYS}, result", m.SHADOW_COMPARISONS),
                            V + " {{result}}",
                        ),
                    ),
                    unit="reqps",
                    per_version=True,
                ),
            ),
        ),
        RowSpec(
            "Input drift",
            (
                PanelSpec(
                    "Input drift (PSI) by input",
                    "Population stability index against the model's reference profile: "
                    "< 0.1 stable, 0.1-0.25 moderate, > 0.25 significant.",
                    (
                        Query(
                            f"max by ({VERSION_KEYS}, input) ({m.INPUT_DRIFT}{{{SEL}}})",
                            V + " {{input}}",
                        ),
                    ),
                    per_version=True,
                ),
                PanelSpec(
                    "Missing input values",
                    "Share of scalar input values that were NaN.",
                    (
                        Query(
                            f"{_sum_rate(f'{VERSION_KEYS}, input', m.INPUT_MISSING)}"
                            f" / ({_sum_rate(f'{VERSION_KEYS}, input', m.INPUT_VALUES)} > 0)",
                            V + " {{input}}",
                        ),
                    ),
                    unit="percentunit",
                    per_version=True,
                ),
            ),
        ),
        RowSpec(
            "Output class mix",
            (
                PanelSpec(
                    "Predicted class share by version",
                    "Argmax class mix: a candidate whose mix moves away from stable's is suspect.",
                    (
                        Query(
                            f"{_sum_rate(f'{VERSION_KEYS}, output, class', m.OUTPUT_CLASSES)}"
                            f" / on ({VERSION_KEYS}, output) group_left() "
                            f"({_sum_rate(f'{VERSION_KEYS}, output', m.OUTPUT_CLASSES)} > 0)",
                            V + " class {{class}}",
                        ),
                    ),
                    unit="percentunit",
                    per_version=True,
                    stacked=True,
                    max_value=1,
                ),
                PanelSpec(
                    "Prediction confidence p50",
                    "Median of the top class probability.",
                    (Query(_quantile(0.5, m.OUTPUT_CONFIDENCE, f"{VERSION_KEYS}, output"), V),),
                    unit="percentunit",
                    per_version=True,
                    max_value=1,
                ),
                PanelSpec(
                    "Null outputs per second",
                    "Rows whose output held NaN or inf.",
                    (Query(_sum_rate(f"{VERSION_KEYS}, output", m.OUTPUT_NULLS), V),),
                    unit="reqps",
                    per_version=True,
                ),
            ),
        ),
        RowSpec(
            "Accuracy from feedback",
            (
                PanelSpec(
                    "Accuracy by version",
                    "Correct / (correct + incorrect) over delayed labels posted to /feedback.",
                    (
                        Query(
                            f"{_sum_rate(VERSION_KEYS, m.FEEDBACK, correct)}"
                            f" / ({_sum_rate(VERSION_KEYS, m.FEEDBACK, labelled)} > 0)",
                            V,
                        ),
                    ),
                    unit="percentunit",
                    per_version=True,
                    max_value=1,
                ),
                PanelSpec(
                    "Feedback received",
                    "Labels per second by result (unknown: no prediction found for the id).",
                    (Query(_sum_rate(f"{VERSION_KEYS}, result", m.FEEDBACK), V + " {{result}}"),),
                    unit="reqps",
                    per_version=True,
                ),
            ),
        ),
        RowSpec(
            "Degree of automation",
            (
                PanelSpec(
                    "Confidence threshold by version",
                    "Answers at or above it are automated (partial); 1 is assist (everything "
                    "reviewed), 0 is full. An automation ramp steps it down, and moves it back "
                    "when reviewers disagree.",
                    (Query(f"max by ({VERSION_KEYS}) ({m.AUTOMATION_THRESHOLD}{{{SEL}}})", V),),
                    per_version=True,
                    max_value=1,
                ),
                PanelSpec(
                    "Automation rate",
                    "Share of answers the model decided (the rest went to review), and the "
                    "share of those automated answers reviewers still spot-check "
                    "(spec.automation.spotCheck).",
                    (
                        Query(
                            f"{_sum_rate(VERSION_KEYS, m.AUTOMATION_DECISIONS, automated)}"
                            f" / ({_sum_rate(VERSION_KEYS, m.AUTOMATION_DECISIONS)} > 0)",
                            V,
                        ),
                        Query(
                            f"{_sum_rate(VERSION_KEYS, m.SPOT_CHECKS)}"
                            f" / ({_sum_rate(VERSION_KEYS, m.AUTOMATION_DECISIONS, automated)}"
                            " > 0)",
                            V + " spot-checked",
                        ),
                    ),
                    unit="percentunit",
                    per_version=True,
                    max_value=1,
                ),
                PanelSpec(
                    "Reviewer agreement by confidence band",
                    "Reviewers' labels agreeing with the model's suggestion on review cases, "
                    "per 0.05 confidence band (the ramp's reviewerAgreement gate reads these).",
                    (
                        Query(
                            f"{_sum_rate(VERSION_KEYS + ', band', m.REVIEW_AGREEMENT, agree)}"
                            f" / ({_sum_rate(VERSION_KEYS + ', band', m.REVIEW_AGREEMENT)} > 0)",
                            V + " band {{band}}",
                        ),
                    ),
                    unit="percentunit",
                    per_version=True,
                    max_value=1,
                ),
                PanelSpec(
                    "Review queue depth and drops",
                    "Review cases waiting in each sink's buffer, and cases per second dropped "
                    "because it was full (a client never waits for a sink).",
                    (
                        Query(
                            f"max by ({MODEL_KEYS}, sink) ({m.REVIEW_QUEUE_DEPTH}{{{SEL}}})",
                            "{{model}} {{sink}} depth",
                        ),
                        Query(
                            _sum_rate(f"{MODEL_KEYS}, sink", m.REVIEW_CASES, 'outcome="dropped"'),
                            "{{model}} {{sink}} dropped/s",
                        ),
                    ),
                ),
            ),
        ),
        RowSpec(
            "Software",
            (
                PanelSpec(
                    "CPU by process",
                    "CPU cores used by each Kanaria process (a router's mirror worker, which "
                    "sends shadow copies at low priority, is its own series).",
                    (
                        Query(
                            f"sum by ({COMPONENT_LABEL}, namespace, instance) "
                            f'(rate(process_cpu_seconds_total{{{COMPONENT_LABEL}!=""}}[{RI}]))',
                            "{{" + COMPONENT_LABEL + "}} {{instance}}",
                        ),
                        Query(
                            f"sum by (namespace, instance) "
                            f"(rate({m.ROUTER_MIRROR_WORKER_CPU}[{RI}]))",
                            "router mirror worker {{instance}}",
                        ),
                    ),
                    unit="cores",
                ),
                PanelSpec(
                    "Resident memory by process",
                    "Memory each Kanaria process holds.",
                    (
                        Query(
                            f"max by ({COMPONENT_LABEL}, namespace, instance) "
                            f'(process_resident_memory_bytes{{{COMPONENT_LABEL}!=""}})',
                            "{{" + COMPONENT_LABEL + "}} {{instance}}",
                        ),
                        Query(
                            f"max by (namespace, instance) ({m.ROUTER_MIRROR_WORKER_MEMORY})",
                            "router mirror worker {{instance}}",
                        ),
                    ),
                    unit="bytes",
                ),
                PanelSpec(
                    "In-flight infer requests",
                    "Requests being handled by the model servers right now.",
                    (
                        Query(
                            f"sum by ({VERSION_KEYS}) ({m.SERVER_INFLIGHT}{{{SEL}}})",
                            V,
                        ),
                    ),
                    per_version=True,
                ),
                PanelSpec(
                    "Batch size: mean and p99",
                    "Rows per executed batch (dynamic batching).",
                    (
                        Query(
                            f"{_sum_rate(VERSION_KEYS, m.SERVER_BATCH_SIZE + '_sum')}"
                            f" / ({_sum_rate(VERSION_KEYS, m.SERVER_BATCH_SIZE + '_count')} > 0)",
                            V + " mean",
                        ),
                        Query(_quantile(0.99, m.SERVER_BATCH_SIZE), V + " p99"),
                    ),
                    per_version=True,
                ),
                PanelSpec(
                    "Model servers ready",
                    "1 once a server loaded and warmed up its model.",
                    (Query(f"min by ({VERSION_KEYS}) ({m.SERVER_READY}{{{SEL}}})", V),),
                    per_version=True,
                    max_value=1,
                ),
                PanelSpec(
                    "Scrape targets up",
                    "Whether Prometheus reaches each Kanaria process.",
                    (
                        Query(
                            f"max by ({COMPONENT_LABEL}, namespace, instance) "
                            f'(up{{{COMPONENT_LABEL}!=""}})',
                            "{{" + COMPONENT_LABEL + "}} {{instance}}",
                        ),
                    ),
                    max_value=1,
                ),
            ),
        ),
    )


ROWS: Final = _rows()

ANNOTATIONS: Final = (
    Query(
        f"sum by ({MODEL_KEYS}, event) (increase({m.ROLLOUT_TRANSITIONS}{{{SEL}}}[1m])) > 0",
        "{{model}} {{event}}",
    ),
)
"""Rollout events (Promoted, RolledBack, ...) drawn as annotations on every time series."""


def all_queries() -> list[tuple[PanelSpec, Query]]:
    """Every (panel, query) pair of the dashboard, in order."""
    return [(panel, query) for row in ROWS for panel in row.panels for query in panel.queries]


def all_exprs() -> list[str]:
    """Every PromQL expression in the dashboard: panel targets and annotations."""
    return [q.expr for _, q in all_queries()] + [a.expr for a in ANNOTATIONS]


def resolve(expr: str) -> str:
    """A dashboard query with its variables replaced, ready for the Prometheus API."""
    for name, value in VARIABLE_VALUES.items():
        expr = expr.replace(name, value)
    return expr


def build() -> dict[str, Any]:
    """The dashboard as the JSON object Grafana imports."""
    datasource = DataSourceRef(type_val="prometheus", uid="${datasource}")
    board = (
        gd.Dashboard(TITLE)
        .uid(UID)
        .description(
            "Progressive delivery of ONNX models: rollout state, and per-version success "
            "rate, latency, throughput, shadow agreement, drift, outputs, accuracy and software."
        )
        .tags(["kanaria", "mlops", "rollouts"])
        .editable()
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .time("now-1h", "now")
        .refresh("30s")
        .annotation(
            gd.AnnotationQuery()
            .name("Rollout events")
            .datasource(datasource)
            .enable(True)
            .icon_color("orange")
            .expr(ANNOTATIONS[0].expr)
        )
        .with_variable(gd.DatasourceVariable("datasource").label("Data source").type("prometheus"))
        .with_variable(
            gd.QueryVariable("namespace")
            .label("Namespace")
            .datasource(datasource)
            .query(f"label_values({m.SERVER_READY}, namespace)")
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
            .include_all(True)
            .all_value(".*")
            .multi(True)
        )
        .with_variable(
            gd.QueryVariable("model")
            .label("Model")
            .datasource(datasource)
            .query(f'label_values({m.SERVER_READY}{{namespace=~"$namespace"}}, model)')
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
            .include_all(True)
            .all_value(".*")
            .multi(True)
            .hide(VariableHide.DONT_HIDE)
        )
    )
    panel_id = 0
    for row in ROWS:
        panel_id += 1
        board = board.with_row(gd.Row(row.title).id(panel_id))
        for spec in row.panels:
            panel_id += 1
            panel: Any
            if spec.kind == "stat":
                panel = (
                    stat.Panel().graph_mode(BigValueGraphMode.NONE).text_mode(BigValueTextMode.NAME)
                )
            else:
                panel = (
                    timeseries.Panel()
                    .legend(
                        VizLegendOptions()
                        .display_mode(LegendDisplayMode.LIST)
                        .placement(LegendPlacement.BOTTOM)
                        .show_legend(True)
                    )
                    .fill_opacity(10)
                )
                if spec.stacked:
                    panel = panel.stacking(StackingConfig().mode(StackingMode.NORMAL))
            panel = (
                panel.id(panel_id)
                .title(spec.title)
                .description(spec.description)
                .datasource(datasource)
                .unit(spec.unit)
                .span(8)
                .height(8)
            )
            if spec.max_value is not None:
                panel = panel.min(0).max(spec.max_value)
            for index, query in enumerate(spec.queries):
                target = (
                    prometheus.Dataquery()
                    .expr(query.expr)
                    .legend_format(query.legend)
                    .ref_id(chr(ord("A") + index))
                    .datasource(datasource)
                )
                if spec.kind == "stat":
                    target = target.instant()
                panel = panel.with_target(target)
            board = board.with_panel(panel)
    encoded: dict[str, Any] = json.loads(json.dumps(board.build(), cls=JSONEncoder, sort_keys=True))
    return encoded
