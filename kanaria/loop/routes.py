"""The one routes builder: the engine's status plus where each version answers (pure).

Both actuators write what this returns -- ``kanaria up`` to the routes file, the
operator to the routes ConfigMap -- so the router sees the same document for the same
status whichever runs it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from kanaria.api import ModelDeploymentSpec, ModelDeploymentStatus
from kanaria.metric_names import ROUTER_ROUTES_REVISION
from kanaria.routes import (
    AutomationPolicy,
    Backend,
    LabelStudioRoute,
    Mirror,
    ModelRoutes,
    ReviewRoute,
    RoutesConfig,
    StickyKey,
)


def automation_policy(
    spec: ModelDeploymentSpec, status: ModelDeploymentStatus, version: str
) -> AutomationPolicy | None:
    """The confidence policy of ``version``: the one an automation ramp set for it
    (status.automation: assist, then each setThreshold, kept once it is stable), else
    spec.automation as written. None without spec.automation.

    spec.automation.mode assist wins over a ramp's threshold: a person asked for every
    answer to be reviewed."""
    conf = spec.automation
    if conf is None:
        return None
    ramp = status.automation
    if ramp is not None and ramp.version == version and conf.mode != "assist":
        return AutomationPolicy(
            mode=ramp.mode, threshold=ramp.threshold, output=conf.output, spotCheck=conf.spotCheck
        )
    return AutomationPolicy(
        mode=conf.mode, threshold=conf.threshold, output=conf.output, spotCheck=conf.spotCheck
    )


def review_route(spec: ModelDeploymentSpec, namespace: str | None) -> ReviewRoute | None:
    """spec.automation.review as the router reads it."""
    conf = spec.automation
    if conf is None or conf.review is None:
        return None
    ls = conf.review.labelStudio
    return ReviewRoute(
        webhook=conf.review.webhook,
        labelStudio=(
            LabelStudioRoute(
                url=ls.url, project=ls.project, classes=list(ls.classes), tokenEnv=ls.tokenEnv
            )
            if ls is not None
            else None
        ),
        bufferSize=conf.review.bufferSize,
        namespace=namespace,
    )


def build_routes(
    name: str,
    spec: ModelDeploymentSpec,
    status: ModelDeploymentStatus,
    urls: Mapping[str, str],
    ready: Mapping[str, bool],
    namespace: str | None = None,
) -> RoutesConfig | None:
    """Routes for the versions in ``status`` that have an address in ``urls``.

    Weights are the engine's (before its first decision, the spec's version takes all
    traffic). A version is eligible when it is Ready; if no weighted version is Ready
    (a first start, every replica restarting), the weighted ones are written as ready
    anyway: the router needs somewhere to send requests, and it retries once a
    backend refuses. Returns None when no valid document can be made (no weighted
    version has an address yet); the caller then keeps the routes it has.

    The revision names the document's content (phase, step and a digest of the
    models), so "the router runs revision R" means "the router runs exactly this".
    """
    weights = dict(status.weights) or {spec.model.version: 100}
    listed = [v.version for v in status.versions] or [spec.model.version]
    versions = [v for v in dict.fromkeys([*listed, *weights]) if v in urls]
    if not versions:
        return None
    any_weighted_ready = any(ready.get(v, False) for v in versions if weights.get(v, 0) > 0)
    backends = {
        v: Backend(
            url=urls[v],
            weight=weights.get(v, 0),
            ready=ready.get(v, False) or (weights.get(v, 0) > 0 and not any_weighted_ready),
            automation=automation_policy(spec, status, v),
        )
        for v in versions
    }
    mirror = None
    if status.mirror is not None and status.mirror.version in backends:
        mirror = Mirror(version=status.mirror.version, percent=status.mirror.percent)
    sticky = spec.router.stickyKey
    try:
        model = ModelRoutes(
            versions=backends,
            mirror=mirror,
            stickyKey=StickyKey(header=sticky.header, cookie=sticky.cookie) if sticky else None,
            overrideHeader=spec.router.overrideHeader,
            review=review_route(spec, namespace),
        )
    except ValidationError:
        return None
    models = {name: model}
    content = json.dumps(
        {k: m.model_dump(mode="json", by_alias=True, exclude_none=True) for k, m in models.items()},
        sort_keys=True,
    )
    step = status.currentStep if status.currentStep is not None else "-"
    digest = hashlib.sha256(content.encode()).hexdigest()[:12]
    return RoutesConfig(models=models, revision=f"{status.phase}/{step}/{digest}")


def routed_versions(routes: RoutesConfig) -> frozenset[str]:
    """Versions a routes document can send a request or a copy to."""
    out: set[str] = set()
    for model in routes.models.values():
        out.update(v for v, b in model.versions.items())
        if model.mirror is not None:
            out.add(model.mirror.version)
    return frozenset(out)


def router_revisions(metrics_text: str) -> frozenset[str]:
    """Revisions a router reports running, from its /metrics text (empty if none, or if
    the text cannot be parsed)."""
    out: set[str] = set()
    try:
        for family in text_string_to_metric_families(metrics_text):
            for sample in family.samples:
                if sample.name == ROUTER_ROUTES_REVISION and sample.value == 1:
                    out.add(sample.labels.get("revision", ""))
    except ValueError:
        return frozenset()
    return frozenset(out)
