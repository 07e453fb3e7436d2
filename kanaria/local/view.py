"""The text view of a rollout that ``kanaria status`` prints (pure: data in, text out).

It reads a spec and a status (from a state directory or a cluster object) and
shows what a person needs at a glance: which versions serve which share, where
the rollout is, and the latest measurement per gate with its verdict, so "why
did it stop?" is answered on the screen.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kanaria.api import Comparison, ModelDeploymentSpec, ModelDeploymentStatus, VersionEvidence
from kanaria.rollout.gates import applicable_gates

BAR_WIDTH = 24


def bar(fraction: float, width: int = BAR_WIDTH) -> str:
    """``[#######.........]`` for a fraction in 0..1."""
    fraction = min(max(fraction, 0.0), 1.0)
    filled = round(fraction * width)
    return "[" + "#" * filled + "." * (width - filled) + "]"


def progress(spec: ModelDeploymentSpec, status: ModelDeploymentStatus) -> tuple[float, str]:
    """How far the rollout is (0..1) and a short label."""
    if status.candidate is None or status.strategy is None:
        return 1.0, "no rollout"
    if status.phase == "RolledBack":
        return 0.0, "rolled back"
    kind = status.strategy
    if kind == "canary":
        canary = spec.strategy.canary or (
            spec.strategy.shadow.canary if spec.strategy.shadow else None
        )
        total = len(canary.steps) if canary else 0
        step = status.currentStep or 0
        if total == 0:
            return 0.0, "canary"
        return step / total, f"canary: {min(step, total)}/{total} steps done"
    if kind == "blueGreen":
        order = ["Preview", "Switching", "PostPromotion"]
        stage = status.stage or "Preview"
        done = order.index(stage) if stage in order else 0
        return done / len(order), f"blue-green {stage.lower()}"
    if kind == "automation":
        ramp = spec.strategy.automation_ramp
        total = len(ramp.steps) if ramp else 0
        step = status.currentStep or 0
        if total == 0 or status.stage != "Automating":
            return (1.0 if status.stage == "Switching" else 0.0), "automation ramp"
        return step / total, f"automation ramp: {min(step, total)}/{total} steps done"
    shadow = spec.strategy.shadow
    needed = shadow.analysis.rounds if shadow else 1
    return min(status.successfulRounds / needed, 1.0), (
        f"shadow {status.successfulRounds}/{needed} rounds passed"
    )


def degree(spec: ModelDeploymentSpec, status: ModelDeploymentStatus) -> str:
    """The degree of automation in force, in words ("" without spec.automation): the
    ramp's (status.automation) or the spec's, with the band the ramp judges next."""
    conf = spec.automation
    if conf is None:
        return ""
    auto = status.automation
    if auto is None or conf.mode == "assist":
        mode, threshold, version = conf.mode, conf.threshold, ""
    else:
        mode, threshold, version = auto.mode, auto.threshold, f" on {auto.version}"
    text = f"{mode}{version}" + (f" at confidence >= {threshold:g}" if mode == "partial" else "")
    if mode == "assist":
        text += " (every answer reviewed)"
    elif conf.spotCheck > 0:
        text += f", {conf.spotCheck:.0%} of automated answers spot-checked"
    if auto is not None and status.stage == "Automating":
        if auto.nextThreshold is not None:
            text += f"; next step {auto.nextThreshold:g}"
        if auto.safeThreshold is not None:
            text += f"; last safe {auto.safeThreshold:g}"
        if auto.fallbacks:
            text += f"; moved back {auto.fallbacks}x"
    if conf.review is not None:
        sinks = [n for n in ("webhook", "labelStudio") if getattr(conf.review, n) is not None]
        text += f"; review to {', '.join(sinks)}"
    return text


def _age(when: datetime | None, now: datetime) -> str:
    if when is None:
        return ""
    seconds = max(0, int((now - when).total_seconds()))
    return f"{seconds}s ago" if seconds < 120 else f"{seconds // 60}m ago"


def _value(metric: str, value: float | None, gates: dict[str, dict[str, Any]]) -> str:
    if value is None:
        return "-"
    gate = gates.get(metric, {})
    compare = gate.get("compare")
    if compare:
        ratio = gate.get("builtin") == "latencyP99" or compare.get("relative")
        return f"{value:.3g}x" if ratio else f"{value:+.4f}"
    if gate.get("builtin") == "latencyP99":
        return f"{value * 1000:.1f}ms"
    return f"{value:.4g}"


def _bounds(gate: dict[str, Any]) -> str:
    compare = gate.get("compare")
    if compare:
        margin = compare.get("margin", 0)
        if gate.get("builtin") == "latencyP99" or compare.get("relative"):
            return f"vs {compare.get('against', 'stable')} <= {1 + margin:g}x"
        return f"vs {compare.get('against', 'stable')} +{margin:g}"
    parts = []
    if gate.get("min") is not None:
        parts.append(f">= {gate['min']:g}")
    if gate.get("max") is not None:
        parts.append(f"<= {gate['max']:g}")
    return " and ".join(parts)


def _share(x: float | None) -> str:
    return "-" if x is None else f"{x:.3%}" if x < 0.1 else f"{x:.2%}"


def evidence(c: Comparison) -> str:
    """One line of a compare gate's evidence: both versions' estimates and counts, the
    compared quantity with its interval against the limit, the statistic against the
    boundary it must cross, the confidence and the planned sample size."""
    ratio = c.test in ("ratio", "quantileRatio")

    def q(x: float | None) -> str:
        if x is None:
            return "-"
        return f"{x:.3g}x" if ratio else f"{x:+.4f}"

    def side(v: VersionEvidence) -> str:
        if c.test == "quantileRatio":
            own = "-" if v.estimate is None else f"{v.estimate * 1000:.1f}ms"
        elif c.test == "rank":
            own = ""
        else:
            own = _share(v.estimate)
        return f"{v.version} {own} of {v.requests:,.0f}".replace("  ", " ")

    z = (
        f"z {c.statistic:+.2f} (a verdict needs |z| >= {c.boundary:.2f})"
        if c.statistic is not None and c.boundary is not None and c.test != "quantileRatio"
        else ""
    )
    planned = f"~{c.minSampleSize:,} planned" if c.minSampleSize is not None else "no plan"
    parts = [
        f"{side(c.candidate)} vs {side(c.stable)}",
        f"{c.test} {q(c.estimate)} [{q(c.lower)}, {q(c.upper)}] limit {q(c.limit)}",
        z,
        f"{c.confidence * 100:.4g}% CS",
        planned,
        c.note,
    ]
    return " | ".join(p for p in parts if p)


def render(
    name: str,
    spec: ModelDeploymentSpec,
    status: ModelDeploymentStatus,
    where: str = "",
    endpoints: dict[str, str] | None = None,
    now: datetime | None = None,
    problems: list[str] | None = None,
) -> str:
    """The whole view as lines of plain text.

    ``problems`` are what the control loop found wrong beyond the engine's view (the
    metric source sees nothing, a shadow starved of copies); they are shown first,
    so that "no evidence" never reads as "waiting"."""
    now = now or datetime.now(UTC)
    endpoints = endpoints or {}
    gates = {g.name: g.model_dump(mode="json") for g in spec.analysis.metrics}
    fraction, label = progress(spec, status)
    lines = [f"{name}  {status.phase}  {label}" + (f"   ({where})" if where else "")]
    if status.message:
        lines.append(f"  {status.message}")
    for problem in problems or []:
        lines.append(f"  PROBLEM: {problem}")
    lines.append("")
    roles = {lv.version: str(lv.role) for lv in status.versions}
    versions = [lv.version for lv in status.versions]
    for v in status.weights:
        if v not in versions:
            versions.append(v)
    if status.mirror is not None and status.mirror.version not in versions:
        versions.append(status.mirror.version)
    width = max((len(v) for v in versions), default=2)
    for v in versions:
        weight = status.weights.get(v, 0)
        role = roles.get(v, "")
        extra = ""
        if status.mirror is not None and status.mirror.version == v:
            role = role or "shadow"
            extra = f"  mirror {status.mirror.percent:g}%"
        lines.append(
            f"  {v:<{width}}  {role:<9}  {bar(weight / 100, 20)} {weight:>3}%{extra}"
            + (f"  {endpoints[v]}" if v in endpoints else "")
        )
    if not versions:
        lines.append("  (no versions running yet)")
    automation = degree(spec, status)
    if automation:
        lines.append(f"  automation  {automation}")
    lines.append("")
    lines.append(f"  progress  {bar(fraction)} {fraction * 100:3.0f}%  {label}")
    active = status.candidate is not None and status.phase in ("Progressing", "Paused", "Promoting")
    if active and status.stage is not None and spec.analysis.metrics:
        judged = [g.name for g in applicable_gates(spec, status.stage)]
        idle = [g.name for g in spec.analysis.metrics if g.name not in judged]
        lines.append(
            f"  gates in {status.stage}: {', '.join(judged) or 'none'}"
            + (f"  (not in this stage: {', '.join(idle)})" if idle else "")
        )
    if status.pauseReason and status.phase == "Paused":
        lines.append(f"  paused: {status.pauseReason} {_age(status.pausedAt, now)}".rstrip())
    latest: dict[tuple[str, str], Any] = {}
    for m in status.measurements:
        latest[(m.metric, m.version)] = m
    if latest:
        lines.append("")
        lines.append("  latest measurements" + ("" if active else " (of the last rollout)"))
        for (metric, version), m in sorted(latest.items()):
            gate = gates.get(metric, {})
            lines.append(
                f"    {metric:<18} {version:<{width}}  {_value(metric, m.value, gates):>10}  "
                f"{m.verdict!s:<12} {_bounds(gate):<14} {_age(m.time, now)}"
                + (f"  - {m.reason}" if m.reason and str(m.verdict) != "Successful" else "")
            )
            if m.comparison is not None:
                lines.append(f"      {evidence(m.comparison)}")
    return "\n".join(lines)
