"""Turn the engine's status into the router's routes document (pure).

The engine decides weights and mirroring per version; the local runtime knows
where each version listens. This module joins the two into a
:class:`kanaria.routes.RoutesConfig`, which validates itself, so ``kanaria up``
never writes a document the router would reject.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import ValidationError

from kanaria.api import ModelDeploymentSpec, ModelDeploymentStatus
from kanaria.routes import Backend, Mirror, ModelRoutes, RoutesConfig, StickyKey


def build(
    name: str,
    spec: ModelDeploymentSpec,
    status: ModelDeploymentStatus,
    ports: Mapping[str, int],
    ready: Mapping[str, bool],
) -> RoutesConfig | None:
    """Routes for ``status`` given each running version's port and readiness.

    Versions without a process are left out. Returns None when no valid document
    can be made yet (no weighted version running), in which case the caller keeps
    the previous routes.
    """
    backends: dict[str, Backend] = {}
    for version, port in ports.items():
        weight = float(status.weights.get(version, 0))
        backends[version] = Backend(
            url=f"http://127.0.0.1:{port}",
            weight=weight,
            # A weighted version stays eligible while it restarts: the engine moves its
            # traffic away if it stays unready; flipping it here would just make the
            # document invalid when it is the only version.
            ready=ready.get(version, False) or weight > 0,
        )
    if not backends:
        return None
    mirror = None
    if status.mirror is not None and status.mirror.version in backends:
        mirror = Mirror(version=status.mirror.version, percent=status.mirror.percent)
    sticky = None
    if spec.router.stickyKey is not None:
        sticky = StickyKey(header=spec.router.stickyKey.header, cookie=spec.router.stickyKey.cookie)
    revision = f"{status.phase}/{status.currentStep if status.currentStep is not None else '-'}"
    try:
        return RoutesConfig(
            models={
                name: ModelRoutes(
                    versions=backends,
                    mirror=mirror,
                    stickyKey=sticky,
                    overrideHeader=spec.router.overrideHeader,
                )
            },
            revision=f"{revision}/{'-'.join(f'{v}={b.weight:g}' for v, b in backends.items())}",
        )
    except ValidationError:
        return None
