"""Built-in gates as PromQL templates over the names in :mod:`kanaria.metric_names`.

Every template yields one series (an aggregate without ``by``), so a gate gets
one number. Ratios put ``or vector(0)`` on the numerator: with no errors at all
the error series does not exist, and "no 5xx" must read as 0%, not as "no
data". The denominator has no such fallback, so no requests at all stays "no
data" (Inconclusive) instead of a fake 100%.

Traffic: a version that answers clients is measured at the router (what
clients saw); a version that only receives mirrored or preview copies (shadow,
blue-green preview) has no router series, so its success rate, error rate,
latency and request count come from the model server's own infer metrics.

Label matching: ``model`` and ``version`` always; ``namespace`` only when one is
given, since local runs have no namespace label and Prometheus on Kubernetes
adds one.
"""

from __future__ import annotations

from typing import Literal

from kanaria import metric_names as names
from kanaria.api import Builtin, MetricGate

Traffic = Literal["router", "server"]

DEFAULT_QUANTILE = 0.99
"""Quantile of the latencyP99 builtin when the gate sets none."""


def matcher(model: str, version: str, namespace: str | None, **extra: str) -> str:
    """A label matcher body: ``model="m",version="v"[,namespace="ns"]`` plus ``extra``
    (values already written as PromQL matchers, e.g. ``code='=~"5.."'``)."""
    parts = [f'model="{_escape(model)}"', f'version="{_escape(version)}"']
    if namespace:
        parts.append(f'namespace="{_escape(namespace)}"')
    parts.extend(f"{k}{v}" for k, v in extra.items())
    return ",".join(parts)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _increase(metric: str, labels: str, window: str) -> str:
    return f"sum(increase({metric}{{{labels}}}[{window}]))"


def _ratio(metric: str, good: str, total: str, window: str) -> str:
    return f"({_increase(metric, good, window)} or vector(0)) / {_increase(metric, total, window)}"


def builtin_query(
    builtin: Builtin,
    model: str,
    version: str,
    namespace: str | None,
    window: str,
    quantile: float | None = None,
    traffic: Traffic = "router",
    band: tuple[float, float] | None = None,
) -> str:
    """The PromQL of a built-in gate for one version over ``window`` (e.g. "30s")."""
    m = matcher(model, version, namespace)
    if builtin is Builtin.reviewerAgreement:
        bands = _band_matcher(band)
        agree = matcher(model, version, namespace, band=bands, result='="agree"')
        both = matcher(model, version, namespace, band=bands)
        return _ratio(names.REVIEW_AGREEMENT, agree, both, window)
    if builtin is Builtin.automationRate:
        automated = matcher(model, version, namespace, decision='="automated"')
        return _ratio(names.AUTOMATION_DECISIONS, automated, m, window)
    requests, latency, infer = _traffic(traffic)
    if builtin is Builtin.successRate:
        ok = matcher(model, version, namespace, code='!~"5.."', **infer)
        return _ratio(requests, ok, matcher(model, version, namespace, **infer), window)
    if builtin is Builtin.errorRate:
        bad = matcher(model, version, namespace, code='=~"5.."', **infer)
        return _ratio(requests, bad, matcher(model, version, namespace, **infer), window)
    if builtin is Builtin.latencyP99:
        q = quantile if quantile is not None else DEFAULT_QUANTILE
        return f"histogram_quantile({q:g}, sum by (le) (rate({latency}_bucket{{{m}}}[{window}])))"
    if builtin is Builtin.inputDrift:
        return f"max(max_over_time({names.INPUT_DRIFT}{{{m}}}[{window}]))"
    if builtin is Builtin.shadowAgreement:
        agree = matcher(model, version, namespace, result='="agree"')
        both = matcher(model, version, namespace, result='=~"agree|disagree"')
        return _ratio(names.SHADOW_COMPARISONS, agree, both, window)
    correct = matcher(model, version, namespace, result='="correct"')
    labelled = matcher(model, version, namespace, result='=~"correct|incorrect"')
    return _ratio(names.FEEDBACK, correct, labelled, window)


BAND_WIDTH = 0.05
"""Width of the confidence bands of kanaria_review_agreement_total (label: lower edge)."""


def band_labels(band: tuple[float, float] | None) -> list[str]:
    """The band labels ("0.90" is [0.90, 0.95)) of the bands that overlap [low, high)."""
    edges = [i * BAND_WIDTH for i in range(round(1 / BAND_WIDTH))]
    if band is None:
        return [f"{e:.2f}" for e in edges]
    low, high = band  # every band overlapping [low, high)
    return [f"{e:.2f}" for e in edges if e < high - 1e-9 and e + BAND_WIDTH > low + 1e-9]


def _band_matcher(band: tuple[float, float] | None) -> str:
    labels = band_labels(band) or ["none"]
    return '=~"' + "|".join(label.replace(".", "\\\\.") for label in labels) + '"'


def _traffic(traffic: Traffic) -> tuple[str, str, dict[str, str]]:
    """Request counter, latency histogram and extra matchers for where traffic is counted."""
    if traffic == "server":
        return names.SERVER_REQUESTS, names.SERVER_LATENCY, {"endpoint": '="infer"'}
    return names.ROUTER_REQUESTS, names.ROUTER_LATENCY, {}


def count_query(
    builtin: Builtin | None,
    model: str,
    version: str,
    namespace: str | None,
    window: str,
    traffic: Traffic = "router",
    band: tuple[float, float] | None = None,
) -> str:
    """How many observations a gate's value rests on (for ``minRequests``): router
    requests for traffic gates and custom queries, infer requests seen by the model
    server for drift (mirrored traffic counts), comparisons for shadow agreement,
    labelled predictions for accuracy."""
    if builtin is Builtin.inputDrift:
        m = matcher(model, version, namespace, endpoint='="infer"')
        return _increase(names.SERVER_REQUESTS, m, window)
    if builtin is Builtin.shadowAgreement:
        m = matcher(model, version, namespace, result='=~"agree|disagree"')
        return _increase(names.SHADOW_COMPARISONS, m, window)
    if builtin is Builtin.accuracy:
        m = matcher(model, version, namespace, result='=~"correct|incorrect"')
        return _increase(names.FEEDBACK, m, window)
    if builtin is Builtin.reviewerAgreement:
        m = matcher(model, version, namespace, band=_band_matcher(band))
        return _increase(names.REVIEW_AGREEMENT, m, window)
    if builtin is Builtin.automationRate:
        return _increase(names.AUTOMATION_DECISIONS, matcher(model, version, namespace), window)
    requests, _, infer = _traffic(traffic)
    return _increase(requests, matcher(model, version, namespace, **infer), window)


def mirror_query(model: str, version: str, namespace: str | None, window: str, outcome: str) -> str:
    """Copies mirrored to shadow ``version`` over ``window`` that ended with ``outcome``
    (sent: the shadow answered; dropped: the router could not hand it over; failed)."""
    m = matcher(model, version, namespace, outcome=f'="{_escape(outcome)}"')
    return _increase(names.ROUTER_MIRROR, m, window)


def render_custom(query: str, model: str, version: str, namespace: str | None, window: str) -> str:
    """Fill ``{{model}}``, ``{{version}}``, ``{{namespace}}`` (empty when none) and
    ``{{interval}}`` in a custom query."""
    return (
        query.replace("{{model}}", _escape(model))
        .replace("{{version}}", _escape(version))
        .replace("{{namespace}}", _escape(namespace or ""))
        .replace("{{interval}}", window)
    )


def gate_query(
    gate: MetricGate,
    model: str,
    version: str,
    namespace: str | None,
    window: str,
    traffic: Traffic = "router",
    band: tuple[float, float] | None = None,
) -> str:
    """The resolved PromQL of any gate."""
    if gate.builtin is not None:
        return builtin_query(
            gate.builtin, model, version, namespace, window, gate.quantile, traffic, band
        )
    assert gate.query is not None  # guaranteed by MetricGate's validator
    return render_custom(gate.query, model, version, namespace, window)


def compare_queries(
    builtin: Builtin,
    model: str,
    version: str,
    namespace: str | None,
    window: str,
    traffic: Traffic = "router",
) -> dict[str, str]:
    """The counts a compare gate needs for one version over ``window`` (the time since
    the step began): ``total`` and ``failed`` observations for a failing share
    (successRate, errorRate: requests and 5xx where ``traffic`` counts them; accuracy:
    labelled and incorrect predictions), ``buckets`` (a vector by ``le``) for latency,
    ``classes`` (a vector by ``output`` and ``class``) for output shares. Cumulative
    counts, not rates: a sequential test adds up everything since its window began."""
    if builtin is Builtin.accuracy:
        labelled = matcher(model, version, namespace, result='=~"correct|incorrect"')
        wrong = matcher(model, version, namespace, result='="incorrect"')
        return {
            "total": _increase(names.FEEDBACK, labelled, window),
            "failed": f"{_increase(names.FEEDBACK, wrong, window)} or vector(0)",
        }
    requests, latency, infer = _traffic(traffic)
    if builtin in (Builtin.latencyP99, Builtin.latencyDistribution):
        m = matcher(model, version, namespace)
        return {"buckets": f"sum by (le) (increase({latency}_bucket{{{m}}}[{window}]))"}
    if builtin is Builtin.outputDistribution:
        m = matcher(model, version, namespace)
        return {
            "classes": f"sum by (output, class) (increase({names.OUTPUT_CLASSES}{{{m}}}[{window}]))"
        }
    bad = matcher(model, version, namespace, code='=~"5.."', **infer)
    return {
        "total": _increase(requests, matcher(model, version, namespace, **infer), window),
        "failed": f"{_increase(requests, bad, window)} or vector(0)",
    }
