"""Small PromQL helpers: the label vocabulary shared by every query, and a
metric-name extractor used to prove that no query names a metric nothing exports.

The extractor is deliberately lexical (strings, label matchers, ranges and
grouping clauses are removed, then the remaining bare identifiers that are not
function calls or keywords are metric names). It is enough for the queries this
package writes and it keeps the core free of a PromQL parser dependency; the
acceptance test still sends every query to a real Prometheus, which is the
authority on whether it parses.
"""

from __future__ import annotations

import ast
import inspect
import re
from typing import Final

from kanaria import metric_names

COMPONENT_LABEL: Final = "kanaria_component"
"""Target label every Kanaria scrape carries (set by the PodMonitors' relabelings,
or by a static scrape config): ``router``, ``model-server`` or ``operator``."""

ROUTER: Final = "router"
MODEL_SERVER: Final = "model-server"
OPERATOR: Final = "operator"
COMPONENTS: Final = (ROUTER, MODEL_SERVER, OPERATOR)

VERSION_KEYS: Final = "namespace, model, version"
"""Grouping of per-version data-plane series. ``namespace`` is a target label on a
cluster and simply absent locally, where grouping by it is harmless."""

MODEL_KEYS: Final = "namespace, model"

STANDARD_METRICS: Final = frozenset(
    {
        "up",  # synthesized by Prometheus for every scrape target
        "process_cpu_seconds_total",  # prometheus_client's process collector (Linux)
        "process_resident_memory_bytes",  # same collector
    }
)
"""Series that every component exports without naming them in metric_names."""

HISTOGRAM_SUFFIXES: Final = ("_bucket", "_sum", "_count")

_KEYWORDS: Final = frozenset(
    {
        "and",
        "or",
        "unless",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "offset",
        "inf",
        "nan",
    }
)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE
)
_IDENT = re.compile(r"(?<![\w.$])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?")


def metric_names_in(expr: str) -> set[str]:
    """Names of the metrics a PromQL expression selects."""
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    names: set[str] = set()
    for match in _IDENT.finditer(text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in _KEYWORDS:
            continue
        names.add(name)
    return names


def metric_kinds() -> dict[str, str]:
    """Each exported name with its kind (``Counter``, ``Gauge``, ``Histogram``).

    The kind is the first word of the attribute docstring in metric_names.py,
    which is how that module documents it; reading the source keeps one place of
    truth instead of a second table here.
    """
    tree = ast.parse(inspect.getsource(metric_names))
    kinds: dict[str, str] = {}
    body = tree.body
    for node, following in zip(body, [*body[1:], None], strict=True):
        if not (isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)):
            continue
        value = node.value.value
        if not isinstance(value, str) or not value.startswith(metric_names.PREFIX):
            continue
        if value == metric_names.PREFIX:
            continue
        doc = ""
        if isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant):
            doc = str(following.value.value)
        kinds[value] = doc.split(" ", 1)[0] if doc else "Unknown"
    return kinds


def exported_metric_names() -> frozenset[str]:
    """Every series name Kanaria exports; histograms expand to their three series."""
    names: set[str] = set(STANDARD_METRICS)
    for name, kind in metric_kinds().items():
        names.add(name)
        if kind == "Histogram":
            names.update(name + suffix for suffix in HISTOGRAM_SUFFIXES)
    return frozenset(names)


def unknown_metrics(expr: str) -> set[str]:
    """Metric names in ``expr`` that nothing exports (empty when the query is sound)."""
    return metric_names_in(expr) - exported_metric_names()
