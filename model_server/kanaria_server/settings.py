"""Settings of ``kanaria serve-model``: flags, or environment variables prefixed ``KANARIA_``.

Each field documents its unit. Command-line flags override the environment
(``kanaria_server.cli`` passes them as init values), so a container can be
configured with env vars alone and a laptop with flags alone. The flags, their
help and docs/reference/settings.md are generated from these fields by
:mod:`kanaria.settings_cli`.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from kanaria.settings_cli import LogLevel


class Settings(BaseSettings):
    """Everything the model server needs to know to start."""

    model_config = SettingsConfigDict(env_prefix="KANARIA_", extra="forbid", frozen=True)

    model: str = Field(
        description="ONNX model: a local path, file:// URI, http(s):// URL or s3://bucket/key "
        "(credentials, region and endpoint from the AWS_* variables: docs/serving.md)."
    )
    name: str = Field(
        description="Model name served at /v2/models/{name} (the ModelDeployment's name).",
        min_length=1,
    )
    version: str = Field(default="1", min_length=1, description="Version label of this model.")
    sha256: str | None = Field(
        default=None,
        pattern=r"^[0-9a-fA-F]{64}$",
        description="Expected SHA-256 (hex) of the model file; loading fails on mismatch.",
    )
    reference: str | None = Field(
        default=None,
        description="Reference input profile (JSON from `kanaria profile`; path, file://, "
        "http(s):// or s3://) for drift metrics.",
    )
    host: str = Field(default="127.0.0.1", description="Address to listen on.")
    port: int = Field(default=8080, ge=0, le=65535, description="TCP port to listen on.")
    max_batch_size: int = Field(
        default=64,
        ge=1,
        description="Rows merged into one onnxruntime call at most (rows, not requests); "
        "1 disables dynamic batching.",
    )
    max_batch_delay_ms: float = Field(
        default=0.0,
        ge=0,
        le=10_000,
        description="Milliseconds an idle inference thread waits for more requests to fill a "
        "batch; 0 batches only what queued while the previous batch ran.",
    )
    intra_op_threads: int = Field(
        default=1, ge=0, description="onnxruntime intra-op threads (0: onnxruntime's default)."
    )
    max_body_bytes: int = Field(
        default=16 * 1024 * 1024, ge=1024, description="Largest accepted request body, in bytes."
    )
    drain_timeout_s: float = Field(
        default=30.0,
        ge=0,
        description="Seconds SIGTERM waits for in-flight requests before closing connections.",
    )
    drift_window: int = Field(
        default=1000, ge=10, description="Rows in the sliding window that drift (PSI) is over."
    )
    log_predictions: float = Field(
        default=0.0, ge=0, le=1, description="Fraction of predictions written to the log (0-1)."
    )
    prediction_log: str = Field(
        default="-", description="Prediction log file (JSON lines); '-' is standard output."
    )
    prediction_log_max_values: int = Field(
        default=256,
        ge=0,
        description="Tensors with more elements than this are logged as a summary (elements).",
    )
    feedback_capacity: int = Field(
        default=100_000,
        ge=0,
        description="Recent predictions remembered for delayed labels (predictions).",
    )
    feedback_ttl_s: float = Field(
        default=3600.0, gt=0, description="Seconds a prediction waits for its label at most."
    )
    download_timeout_s: float = Field(
        default=300.0, gt=0, description="Seconds allowed to download an http(s) or s3 model."
    )
    chaos_error_rate: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Testing aid: fraction (0-1) of infer requests answered 500 on purpose.",
    )
    chaos_latency_ms: float = Field(
        default=0.0,
        ge=0,
        description="Testing aid: extra delay added to every infer request, in milliseconds.",
    )
    log_level: LogLevel = Field(
        default="info", description="Log level: debug, info, warning, error or critical (any case)."
    )
