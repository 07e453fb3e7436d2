"""Helpers of the confidence-policy tests: reading a model server's metrics."""

from __future__ import annotations

import httpx

from tests.kanaria_router.conftest import Backend


def server_metric(server: Backend, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` on ``server`` whose labels include ``labels``."""
    text = httpx.get(f"{server.url}/metrics", timeout=5).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rpartition(" ")[2])
    return total
