"""The routes document the operator writes for a ModelDeployment's router (pure).

The engine's status says which versions run, their weights and the mirror; the
operator adds where each version is (its Service URL) and whether it is ready.
"""

from __future__ import annotations

from kanaria_operator.objects import Owner, version_url

from kanaria.api import ModelDeploymentSpec, ModelDeploymentStatus
from kanaria.routes import Backend, Mirror, ModelRoutes, RoutesConfig, StickyKey


def build_routes(
    owner: Owner,
    spec: ModelDeploymentSpec,
    status: ModelDeploymentStatus,
    ready: dict[str, bool],
    revision: str,
) -> RoutesConfig:
    """Routes for the versions in ``status.versions`` with ``status.weights``.

    Before the engine's first decision there are no weights: the spec's version
    takes all traffic. If no weighted version is ready yet (first start), they
    are written as ready anyway: the router needs somewhere to send requests,
    and the Service answers once a pod is up.
    """
    versions = [v.version for v in status.versions] or [spec.model.version]
    weights = dict(status.weights) or {versions[0]: 100}
    for name in weights:
        if name not in versions:
            versions.append(name)
    any_weighted_ready = any(ready.get(v, False) for v, w in weights.items() if w > 0)
    backends = {
        v: Backend(
            url=version_url(owner, v),
            weight=weights.get(v, 0),
            ready=ready.get(v, False) or (weights.get(v, 0) > 0 and not any_weighted_ready),
        )
        for v in versions
    }
    mirror = None
    if status.mirror is not None and status.mirror.version in backends:
        mirror = Mirror(version=status.mirror.version, percent=status.mirror.percent)
    sticky = spec.router.stickyKey
    model = ModelRoutes(
        versions=backends,
        mirror=mirror,
        stickyKey=StickyKey(header=sticky.header, cookie=sticky.cookie) if sticky else None,
        overrideHeader=spec.router.overrideHeader,
    )
    return RoutesConfig(models={owner.name: model}, revision=revision)
