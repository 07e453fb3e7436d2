"""Start kopf with the operator's handlers and settings (``kanaria operator``)."""

from __future__ import annotations

import logging

import kopf
from kanaria_operator import handlers
from kanaria_operator.settings import OperatorSettings

log = logging.getLogger("kanaria_operator")


def run(settings: OperatorSettings) -> int:
    """Run until SIGTERM/SIGINT; cluster-wide unless namespaces are given."""
    handlers.configure(settings)
    liveness = f"http://0.0.0.0:{settings.health_port}/healthz" if settings.health_port else None
    kopf.run(
        standalone=True,  # leadership is our Lease, not kopf peering (no peering CRDs needed)
        clusterwide=not settings.namespaces,
        namespaces=settings.namespaces,
        liveness_endpoint=liveness,
        # Without an identity kopf asks getpass.getuser(), which raises KeyError for a
        # uid with no passwd entry: the image's 65532 in a pod. (kopf's Identity is a
        # NewType of str that kopf does not export.)
        identity=settings.identity,  # type: ignore[arg-type]
    )
    return 0
