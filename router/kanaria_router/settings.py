"""Router settings: environment variables prefixed ``KANARIA_`` (CLI flags override).

Every field states its unit; ``0`` turns a limit off where that makes sense. The
field docstrings are the descriptions (``use_attribute_docstrings``): ``kanaria
route --help`` and docs/reference/settings.md are generated from them by
:mod:`kanaria.settings_cli`, one flag and one variable per field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from kanaria.settings_cli import Flag, LogLevel
from kanaria_router.clients import Network, parse_networks
from kanaria_router.tokens import parse_tokens


class RouterSettings(BaseSettings):
    """Everything the router needs besides its routes document."""

    model_config = SettingsConfigDict(
        env_prefix="KANARIA_", extra="ignore", use_attribute_docstrings=True
    )

    host: str = "0.0.0.0"
    """Address to listen on."""
    port: int = Field(default=8080, ge=0, le=65535)
    """TCP port to listen on."""
    config: Annotated[Path | None, Flag(metavar="FILE")] = None
    """Routes document file (YAML or JSON), checked for changes every ``reload_interval_s``.
    Give this or ``configmap``."""
    configmap: Annotated[str | None, Flag(metavar="NAMESPACE/NAME")] = None
    """``NAMESPACE/NAME`` of a ConfigMap whose ``routes.yaml`` key holds the routes;
    changes apply as soon as the API server stores them. Give this or ``config``."""
    kubeconfig: Path | None = None
    """Kubeconfig for ConfigMap mode outside a cluster (unset: in-cluster config, then
    ~/.kube/config)."""
    reload_interval_s: Annotated[float, Flag("--reload-interval")] = Field(default=0.2, gt=0)
    """Seconds between checks of the routes file for changes (a stat call: cheap)."""
    backend_timeout_s: float = Field(default=30.0, gt=0)
    """Seconds a backend has to answer a request before the client gets 504."""
    connect_timeout_s: float = Field(default=2.0, gt=0)
    """Seconds to open a connection to a backend before trying another version."""
    eject_s: float = Field(default=5.0, ge=0)
    """Seconds a version whose connection attempt timed out is skipped by weighted
    routing (its share goes to the other ready versions), so clients do not each
    wait out the connect timeout; 0 turns ejection off. Refused connections are
    cheap to retry and are not ejected."""
    max_body_bytes: int = Field(default=16 * 1024 * 1024, gt=0)
    """Largest request body accepted, in bytes; larger requests get 413."""
    bearer_tokens: Annotated[list[SecretStr], NoDecode] = []
    """Accepted bearer tokens, separated by commas and/or newlines (blanks and
    surrounding whitespace ignored); empty, with no tokens file, turns
    authentication off. Health and /metrics stay open (probes and Prometheus)."""
    bearer_tokens_file: Path | None = None
    """File listing accepted bearer tokens in the same format (one per line is the
    Secret convention); re-read within ``reload_interval_s`` when it changes, so a
    rotated Secret takes effect without a restart. Its tokens add to
    ``bearer_tokens``. Given, authentication is on even if a reload finds it empty
    (then no token is accepted)."""
    auth_header: str = Field(
        default="Authorization", pattern=r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$", max_length=128
    )
    """Request header carrying the token (``spec.router.auth.header``): ``Bearer <token>``
    in ``Authorization``, the token itself in any other header. Never forwarded."""
    rate_limit_rps: float = Field(default=0.0, ge=0)
    """Requests per second allowed per client (token, else address); 0 turns limiting off."""
    rate_limit_burst: float = Field(default=20.0, ge=1)
    """Requests a client may send at once before the per-second rate applies."""
    trusted_proxies: Annotated[list[Network], NoDecode] = []
    """Addresses or CIDRs of proxies in front of the router (ingress, load
    balancer), separated by commas or spaces. From such a peer the client address
    for rate limiting is read from ``X-Forwarded-For`` (right to left, past
    trusted hops); empty: the header is ignored."""
    mirror_queue_size: int = Field(default=1000, ge=1)
    """Mirror copies waiting to be sent, at most; copies beyond are dropped and counted."""
    mirror_queue_bytes: int = Field(default=64 * 1024 * 1024, ge=1)
    """Bytes (request plus primary answer) of the copies waiting or in flight, at most:
    with large tensors this bound, not the count, keeps the router's memory in check."""
    mirror_concurrency: int = Field(default=16, ge=1)
    """Mirror copies in flight to shadows at once."""
    mirror_priority: Literal["idle", "low", "normal"] = "low"
    """CPU priority of the mirror worker process that sends and compares copies:
    ``low`` (nice 19, the default) gives copies the CPU time clients leave plus a
    small guaranteed share (~1.5% of a core), so a shadow gets copies even on a
    saturated core; ``idle`` (Linux SCHED_IDLE) gives copies only CPU time nothing
    else wants (a saturated router then starves its shadow); ``normal`` sends every
    copy at the clients' priority. Copies the worker
    cannot keep up with are dropped and counted (``outcome="dropped"``)."""
    mirror_timeout_s: float = Field(default=10.0, gt=0)
    """Seconds a shadow has to answer a copy before the copy counts as failed."""
    feedback_ids: int = Field(default=200_000, ge=1)
    """Request ids remembered (with the version that served them) for feedback, LRU."""
    disagreement_logs_per_minute: int = Field(default=60, ge=0)
    """Most shadow disagreements written to the log per minute (after sampling)."""
    drain_timeout_s: float = Field(default=30.0, ge=0)
    """Seconds in-flight requests get to finish on shutdown (SIGTERM/SIGINT)."""
    backend_connections: int = Field(default=0, ge=0)
    """Pooled connections per backend at most; 0 means no limit."""
    log_level: LogLevel = "info"
    """Log level: debug, info, warning, error or critical (any case). The mirror worker
    logs at the router's level."""

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_networks(cls, value: object) -> object:
        if isinstance(value, str):
            return parse_networks(value)
        return value

    @field_validator("bearer_tokens", mode="before")
    @classmethod
    def _split_tokens(cls, value: object) -> object:
        if isinstance(value, str):
            return parse_tokens(value)
        return value
