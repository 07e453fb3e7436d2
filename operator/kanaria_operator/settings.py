"""Operator settings: ``KANARIA_*`` environment variables, overridden by CLI flags.

The operator image is configured with environment variables alone (the
manifests and the Helm chart set them); a developer runs it with flags. The
field docstrings are the descriptions (``use_attribute_docstrings``): ``kanaria
operator --help`` and docs/reference/settings.md are generated from them by
:mod:`kanaria.settings_cli`, one flag and one variable per field.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from kanaria.settings_cli import Flag, LogLevel


def _default_identity() -> str:
    """The host name and process id (HOST-PID)."""
    return f"{socket.gethostname()}-{os.getpid()}"


class OperatorSettings(BaseSettings):
    """Everything the operator needs besides the cluster's ModelDeployments."""

    model_config = SettingsConfigDict(
        env_prefix="KANARIA_", extra="ignore", frozen=True, use_attribute_docstrings=True
    )

    prometheus_url: str | None = None
    """Base URL of the Prometheus the gates query (e.g. http://prometheus:9090). Unset: every
    measurement is an Error, so rollouts with gates roll back rather than promote blind."""
    namespaces: Annotated[list[str], NoDecode, Flag("-n", "--namespace", metavar="NS")] = []
    """Namespaces to watch, comma-separated; empty: every namespace (`-A` says so
    explicitly on the command line)."""
    resync_interval_s: Annotated[float, Flag("--resync-interval")] = Field(default=30.0, gt=0)
    """Longest time, in seconds, between two passes over a ModelDeployment. A pass runs
    every spec.analysis.interval or this, whichever is shorter, and at once on changes."""
    metrics_host: str = "0.0.0.0"
    """Address the Prometheus metrics endpoint listens on."""
    metrics_port: int = Field(default=9090, ge=0, le=65535)
    """Port of the metrics endpoint (/metrics); 0 turns it off."""
    health_port: int = Field(default=8080, ge=0, le=65535)
    """Port of the liveness endpoint (/healthz); 0 turns it off."""
    server_image: str = "ghcr.io/kanaria-io/kanaria-server:0.1.0"
    """Model-server image for version Deployments (spec.server.image overrides it)."""
    router_image: str = "ghcr.io/kanaria-io/kanaria-router:0.1.0"
    """Router image."""
    image_pull_policy: str = "IfNotPresent"
    """imagePullPolicy of the containers the operator creates."""
    identity: str = Field(default_factory=_default_identity)
    """Name of this operator instance in the leader Lease (the pod name in a cluster)."""
    lease_name: str = "kanaria-operator"
    """Name of the coordination.k8s.io Lease that elects the acting operator."""
    lease_namespace: str = "kanaria-system"
    """Namespace of the Lease (the operator's own)."""
    lease_duration_s: Annotated[float, Flag("--lease-duration")] = Field(default=15.0, ge=1)
    """Seconds a Lease holder stays leader without renewing; a standby takes over after."""
    check_model_uris: bool = True
    """Probe http(s) model URIs (HEAD) and report unreachable ones as an InvalidSpec
    condition; off where the operator's network differs from the pods'."""
    kubeconfig: Path | None = None
    """Kubeconfig file; unset: in-cluster service account, then ~/.kube/config."""
    log_level: LogLevel = "info"
    """Log level: debug, info, warning, error or critical (any case)."""

    @field_validator("namespaces", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [n.strip() for n in value.split(",") if n.strip()]
        return value

    @property
    def renew_interval_s(self) -> float:
        """How often the leader renews the Lease: a third of its duration."""
        return self.lease_duration_s / 3
