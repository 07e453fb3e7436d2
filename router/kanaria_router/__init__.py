"""Kanaria's traffic router: the data-plane half of every rollout.

It decides which model version answers each request (weights, sticky keys,
header overrides), copies requests to a shadow version and compares the
answers, and exports per-version metrics the rollout gates judge. Routes come
from the routes document (``kanaria.routes.RoutesConfig``), a file or a
Kubernetes ConfigMap, and are swapped atomically while traffic flows.
"""

from __future__ import annotations

__all__ = ["create_app"]


def __getattr__(name: str) -> object:
    # Lazy: ``import kanaria_router`` (e.g. for its settings or pure modules)
    # must not pull in aiohttp and the Prometheus client.
    if name == "create_app":
        from kanaria_router.app import create_app  # noqa: PLC0415

        return create_app
    raise AttributeError(name)
