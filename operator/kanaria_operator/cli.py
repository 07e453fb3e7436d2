"""``kanaria operator``: run the Kubernetes operator (flags override KANARIA_* env)."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from pydantic import ValidationError


def configure(parser: argparse.ArgumentParser) -> None:
    """Flags of ``kanaria operator``; each defaults to its KANARIA_* variable."""
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "-n",
        "--namespace",
        action="append",
        dest="namespaces",
        metavar="NS",
        help="watch only this namespace (repeatable; env KANARIA_NAMESPACES, comma-separated)",
    )
    scope.add_argument(
        "-A",
        "--all-namespaces",
        action="store_true",
        help="watch every namespace (the default when no namespace is given)",
    )
    parser.add_argument(
        "--prometheus-url", help="Prometheus the gates query (KANARIA_PROMETHEUS_URL)"
    )
    parser.add_argument(
        "--resync-interval",
        type=float,
        dest="resync_interval_s",
        metavar="SECONDS",
        help="longest time between two passes over a ModelDeployment (default 30)",
    )
    parser.add_argument("--metrics-port", type=int, help="/metrics port, 0 = off (default 9090)")
    parser.add_argument("--health-port", type=int, help="/healthz port, 0 = off (default 8080)")
    parser.add_argument("--server-image", help="model-server image for version Deployments")
    parser.add_argument("--router-image", help="router image")
    parser.add_argument("--identity", help="name of this instance in the leader Lease")
    parser.add_argument("--lease-name", help="leader Lease name (default kanaria-operator)")
    parser.add_argument("--lease-namespace", help="leader Lease namespace (default kanaria-system)")
    parser.add_argument(
        "--lease-duration",
        type=float,
        dest="lease_duration_s",
        metavar="SECONDS",
        help="seconds a leader stays leader without renewing (default 15)",
    )
    parser.add_argument(
        "--kubeconfig", help="kubeconfig file (default: in-cluster, ~/.kube/config)"
    )
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )


FIELDS = (
    "namespaces",
    "prometheus_url",
    "resync_interval_s",
    "metrics_port",
    "health_port",
    "server_image",
    "router_image",
    "identity",
    "lease_name",
    "lease_namespace",
    "lease_duration_s",
    "kubeconfig",
)

FLAG_NAMES = {
    "namespaces": "--namespace",
    "resync_interval_s": "--resync-interval",
    "lease_duration_s": "--lease-duration",
}


def run(args: argparse.Namespace) -> int:
    """Validate the settings, then hand over to kopf until SIGTERM/SIGINT."""
    from kanaria_operator.settings import OperatorSettings  # noqa: PLC0415

    overrides: dict[str, Any] = {
        f: getattr(args, f) for f in FIELDS if getattr(args, f, None) is not None
    }
    if args.all_namespaces:
        overrides["namespaces"] = []
    try:
        settings = OperatorSettings(**overrides)
    except ValidationError as exc:
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else ""
            flag = FLAG_NAMES.get(field, "--" + field.replace("_", "-"))
            print(
                f"kanaria operator: {flag} (or KANARIA_{field.upper()}): {err['msg']}",
                file=sys.stderr,
            )
        return 2
    if settings.kubeconfig is not None and not settings.kubeconfig.is_file():
        print(
            f"kanaria operator: --kubeconfig {settings.kubeconfig}: no such file", file=sys.stderr
        )
        return 2
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # One line per Prometheus query and per probe would drown the operator's own log.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    from kanaria_operator import runner  # noqa: PLC0415  (kopf is heavy: load on run only)

    return runner.run(settings)
