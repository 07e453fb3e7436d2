"""``kanaria report NAME -o rollout.png``: a picture of a local rollout.

People would rather look than read: the top panel shows each version's share
of traffic (and mirrored share, dashed) over time, the panels below show each
gate's measured values coloured by verdict with the gate's bounds, and phase
changes are marked on every panel. A compare gate's panel shows what it decided
on instead: the compared quantity (candidate minus or over the stable), its
confidence-sequence interval as a band, and the limit the band is held against,
so the picture says why it waited, promoted or rolled back. The data is the history ``kanaria up``
appends to its state directory on every pass.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from kanaria.local.statedir import HistoryPoint, StateDir, StateError, state_root

VERDICT_COLOURS = {
    "Successful": "tab:green",
    "Failed": "tab:red",
    "Inconclusive": "tab:orange",
    "Error": "tab:purple",
}
PHASE_COLOURS = {
    "Progressing": "tab:blue",
    "Promoting": "tab:cyan",
    "Paused": "tab:orange",
    "RolledBack": "tab:red",
    "Healthy": "tab:green",
    "Degraded": "tab:gray",
}


@dataclass(frozen=True)
class ComparisonPoint:
    """One look of a compare gate, as drawn: when, the compared quantity, its interval,
    the limit, and the verdict."""

    x: float
    estimate: float | None
    lower: float | None
    upper: float | None
    limit: float
    verdict: str
    two_sided: bool = False
    """Output shares: a change beyond -limit fails too, so both are drawn."""


def _finite(x: Any) -> float | None:
    """A number to draw, or None (missing, or an open end of a ratio's interval)."""
    if isinstance(x, int | float) and math.isfinite(x):
        return float(x)
    return None


def comparisons(
    history: list[HistoryPoint], t0: float
) -> dict[tuple[str, str], list[ComparisonPoint]]:
    """The compare gates' looks by (metric, version), from the evidence ``kanaria up``
    keeps with each measurement (older histories without it give none)."""
    out: dict[tuple[str, str], list[ComparisonPoint]] = defaultdict(list)
    for p in history:
        for m in p.measurements:
            c = m.get("comparison")
            if not isinstance(c, dict) or _finite(c.get("limit")) is None:
                continue
            out[(str(m.get("metric")), str(m.get("version")))].append(
                ComparisonPoint(
                    x=p.t - t0,
                    estimate=_finite(c.get("estimate")),
                    lower=_finite(c.get("lower")),
                    upper=_finite(c.get("upper")),
                    limit=float(c["limit"]),
                    verdict=str(m.get("verdict")),
                    two_sided=c.get("test") == "shares",
                )
            )
    return dict(out)


def draw_comparison(ax: Any, points: list[ComparisonPoint], colour: Any, version: str) -> None:
    """The estimate (points coloured by verdict), its interval as a band, and the limit:
    Failed once the band lies above the limit, Successful once it lies at or below."""
    band = [p for p in points if p.lower is not None and p.upper is not None]
    if band:
        ax.fill_between(
            [p.x for p in band],
            [p.lower for p in band],
            [p.upper for p in band],
            color=colour,
            alpha=0.2,
            linewidth=0,
            label=f"{version} interval",
        )
    known = [p for p in points if p.estimate is not None]
    if known:
        ax.plot([p.x for p in known], [p.estimate for p in known], color=colour, linewidth=1.2)
    for verdict, dot in VERDICT_COLOURS.items():
        pts = [p for p in known if p.verdict == verdict]
        if pts:
            ax.scatter(
                [p.x for p in pts],
                [p.estimate for p in pts],
                color=dot,
                edgecolors=[colour],
                s=22,
                zorder=2,
                label=verdict,
            )
    limits = {p.limit for p in points} | {-p.limit for p in points if p.two_sided}
    for limit in sorted(limits):
        ax.axhline(limit, color="k", linestyle="--", linewidth=1, label=f"limit {limit:g}")


def fit_comparisons(ax: Any, drawn: list[list[ComparisonPoint]]) -> None:
    """Bound a compare panel's view to what every version's recent looks span (their
    estimates and intervals) and the limits: early intervals are as wide as the whole
    range and would flatten the band where the decision is made."""
    ends: list[float] = []
    for points in drawn:
        for p in points[-max(3, len(points) // 3) :]:
            ends += [v for v in (p.lower, p.upper, p.estimate) if v is not None]
        ends += [p.limit for p in points] + [-p.limit for p in points if p.two_sided]
    if ends:
        top, bottom = max(ends), min(ends)
        pad = (top - bottom) * 0.15 or 0.01
        ax.set_ylim(bottom - pad, top + pad)


class ReportError(Exception):
    """Nothing to plot, or the output cannot be written."""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME", help="the ModelDeployment's name")
    parser.add_argument(
        "-o", "--output", default="rollout.png", help="PNG file to write (default rollout.png)"
    )
    parser.add_argument(
        "--state-dir", default=None, help="state root (default: $KANARIA_STATE_DIR or ./.kanaria)"
    )


def run(args: argparse.Namespace) -> int:
    try:
        state_dir = StateDir.for_model(state_root(args.state_dir), args.name)
        state = state_dir.load()
        path = render(state_dir.read_history(), Path(args.output), args.name, state.spec)
    except (StateError, ReportError) as exc:
        print(f"kanaria report: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {path}")
    return 0


def _gates(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    metrics = spec.get("spec", {}).get("analysis", {}).get("metrics", [])
    return {m["name"]: m for m in metrics if isinstance(m, dict) and "name" in m}


def _phase_changes(history: list[HistoryPoint], steps: bool = True) -> list[tuple[float, str]]:
    """(time, label) where phase, candidate or (with ``steps``) the step changed."""
    marks: list[tuple[float, str]] = []
    last: tuple[str, int | None, str | None] | None = None
    for p in history:
        key = (p.phase, p.step if steps else None, p.candidate)
        if key != last:
            label = p.phase
            if p.candidate and p.phase != "Healthy":
                label += f" {p.candidate}"
            if steps and p.phase in ("Progressing", "Paused") and p.step is not None:
                label += f" #{p.step + 1}"
            marks.append((p.t, label))
            last = key
    return marks


KEY_EVENTS = {
    "RolloutStarted": "tab:blue",
    "Promoted": "tab:green",
    "RolledBack": "tab:red",
    "Graduated": "tab:cyan",
    "Paused": "tab:orange",
}
"""Engine events worth a label on the traffic panel, and their colours."""


def _phase_band(ax: Any, history: list[HistoryPoint], t0: float, end: float) -> None:
    """A strip of coloured spans, one per phase and candidate, labelled where there is room
    (steps show as vertical lines on the panels below)."""
    marks = _phase_changes(history, steps=False)
    for i, (start_abs, label) in enumerate(marks):
        start = start_abs - t0
        stop = marks[i + 1][0] - t0 if i + 1 < len(marks) else end
        colour = PHASE_COLOURS.get(label.split()[0], "0.7")
        ax.axvspan(start, stop, color=colour, alpha=0.35, linewidth=0)
        # Roughly 0.9% of the axis per character at this size: label only where it fits.
        if stop - start > end * 0.009 * (len(label) + 2):
            ax.text((start + stop) / 2, 0.5, label, ha="center", va="center", fontsize=7)
    ax.set_yticks([])
    ax.set_ylabel("phase", fontsize=9)


def _thresholds(
    ax: Any, history: list[HistoryPoint], xs: list[float], colours: dict[str, Any]
) -> None:
    """An automation ramp's confidence threshold per version, dotted on a right-hand axis
    (1: assist, every answer reviewed; 0: full). Automation rate is an automationRate
    gate's row, when the spec has one."""
    ramped = sorted({v for p in history for v in p.threshold})
    if not ramped:
        return
    twin = ax.twinx()
    for v in ramped:
        twin.step(
            xs,
            [p.threshold.get(v, float("nan")) for p in history],
            where="post",
            color=colours.get(v, "0.3"),
            linestyle=":",
            linewidth=2,
            label=f"{v} threshold",
        )
    twin.set_ylim(-0.05, 1.05)
    twin.set_ylabel("confidence threshold", fontsize=9)
    twin.legend(loc="lower left", fontsize=8)


def render(history: list[HistoryPoint], output: Path, name: str, spec: dict[str, Any]) -> Path:
    """Draw the report to ``output`` (PNG) and return the path."""
    if len(history) < 2:
        raise ReportError(
            f"only {len(history)} history point(s) for {name}: run `kanaria up` for a while first"
        )
    import matplotlib  # noqa: PLC0415 (heavy, and needs the Agg backend set first)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    t0 = history[0].t
    xs = [p.t - t0 for p in history]
    versions = sorted({v for p in history for v in (*p.weights, *p.mirror)})
    series: dict[tuple[str, str], list[tuple[float, float | None, str]]] = defaultdict(list)
    for p in history:
        for m in p.measurements:
            value = m.get("value")
            series[(str(m.get("metric")), str(m.get("version")))].append(
                (p.t - t0, float(value) if value is not None else None, str(m.get("verdict")))
            )
    compared = comparisons(history, t0)
    metrics = sorted({metric for metric, _ in series})
    gates = _gates(spec)
    rows = 2 + len(metrics)
    fig, axes = plt.subplots(
        rows,
        1,
        figsize=(12, 4.0 + 2.2 * len(metrics)),
        sharex=True,
        squeeze=False,
        gridspec_kw={"height_ratios": [0.45, 2.4, *([1.7] * len(metrics))]},
    )
    started = datetime.fromtimestamp(t0).strftime("%Y-%m-%d %H:%M:%S")
    fig.suptitle(f"{name}: rollout history from {started}", fontsize=12)
    _phase_band(axes[0][0], history, t0, xs[-1])
    ax = axes[1][0]
    cmap = plt.get_cmap("tab10")
    version_colour = {v: cmap(i % 10) for i, v in enumerate(versions)}
    for v in versions:
        line_colour = version_colour[v]
        ax.step(
            xs,
            [p.weights.get(v, 0.0) for p in history],
            where="post",
            label=v,
            color=line_colour,
            linewidth=2,
        )
        if any(v in p.mirror for p in history):
            ax.step(
                xs,
                [p.mirror.get(v, 0.0) for p in history],
                where="post",
                color=line_colour,
                linestyle="--",
                label=f"{v} (mirrored)",
            )
    ax.set_ylabel("traffic %")
    ax.set_ylim(-5, 105)
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    _thresholds(ax, history, xs, version_colour)
    for row, metric in enumerate(metrics, start=2):
        ax_m = axes[row][0]
        gate = gates.get(metric, {})
        drawn = {v for (m_name, v) in compared if m_name == metric}
        for version in sorted(drawn):
            draw_comparison(
                ax_m, compared[(metric, version)], version_colour.get(version, "0.6"), version
            )
        if drawn:
            fit_comparisons(ax_m, [compared[(metric, v)] for v in sorted(drawn)])
        for (m_name, version), points in sorted(series.items()):
            if m_name != metric or version in drawn:
                continue
            known = [(x, y, verdict) for x, y, verdict in points if y is not None]
            if known:
                ax_m.plot(
                    [x for x, _, _ in known],
                    [y for _, y, _ in known],
                    color=version_colour.get(version, "0.6"),
                    linewidth=1.2,
                    zorder=1,
                    label=version,
                )
            for verdict, colour in VERDICT_COLOURS.items():
                pts = [(x, y) for x, y, vd in known if vd == verdict]
                if pts:
                    ax_m.scatter(
                        [x for x, _ in pts],
                        [y for _, y in pts],
                        color=colour,
                        edgecolors=[version_colour.get(version, "0.6")],
                        s=22,
                        zorder=2,
                        label=verdict,
                    )
            missing = [x for x, y, _ in points if y is None]
            if missing:
                ax_m.scatter(
                    missing,
                    [0.0] * len(missing),
                    marker="x",
                    color="tab:orange",
                    s=18,
                    label="no data",
                )
        for bound, style in (("min", ":"), ("max", "--")):
            if gate.get(bound) is not None:
                ax_m.axhline(
                    float(gate[bound]),
                    color="k",
                    linestyle=style,
                    linewidth=1,
                    label=f"{bound} {gate[bound]:g}",
                )
        unit = " (s)" if gate.get("builtin") == "latencyP99" and not drawn else ""
        against = " vs stable" if drawn else ""
        ax_m.set_ylabel(f"{metric}{unit}{against}", fontsize=9)
        handles, labels = ax_m.get_legend_handles_labels()
        unique = dict(zip(labels, handles, strict=False))
        ax_m.legend(
            unique.values(), unique.keys(), loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7
        )
    for x_abs, _label in _phase_changes(history)[1:]:
        for row in range(1, rows):
            axes[row][0].axvline(x_abs - t0, color="0.5", alpha=0.3, linewidth=1)
    for p in history:
        for event in p.events:
            reason = event.split(":", 1)[0]
            if reason in KEY_EVENTS:
                ax.annotate(
                    reason,
                    (p.t - t0, 50),
                    rotation=90,
                    fontsize=7,
                    color=KEY_EVENTS[reason],
                    ha="right",
                    va="center",
                )
    axes[-1][0].set_xlabel("seconds since start")
    fig.tight_layout()
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(output, dpi=110)
    except OSError as exc:
        raise ReportError(f"cannot write {output}: {exc}") from exc
    finally:
        plt.close(fig)
    return output
