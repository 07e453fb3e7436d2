"""The router's routes document: what the operator and ``kanaria up`` write and
the router reads (a YAML/JSON file, or the ``routes.yaml`` key of a ConfigMap).

It is the only contract between the control plane and the data plane, so it is
one pydantic model shared by both sides and validated on both sides: the
writer cannot produce a document the router would reject, and the router keeps
its old routes when a new document fails validation.

Example::

    models:
      fraud:
        versions:
          v1: {url: "http://127.0.0.1:9001", weight: 90}
          v2: {url: "http://127.0.0.1:9002", weight: 10}
          v3: {url: "http://127.0.0.1:9003", weight: 0, ready: false}
        mirror: {version: v3, percent: 100}
        stickyKey: {header: x-user-id}
        automation: {webhook: "http://reviews:8000/cases"}   # where review cases go
      # per version: v2: {..., automation: {mode: partial, threshold: 0.9}}
"""

from __future__ import annotations

from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, model_validator

CONFIGMAP_KEY = "routes.yaml"
"""Key of the routes document inside the router's ConfigMap."""

Percent = Annotated[float, Field(ge=0, le=100)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


AutomationMode = Literal["assist", "partial", "full"]


class AutomationPolicy(_Model):
    """A version's confidence policy: which of its answers are automated, which for review."""

    mode: AutomationMode
    """assist: every answer for review; partial: automated at or above threshold; full."""
    threshold: float = Field(default=1.0, ge=0, le=1)
    """Confidence (0-1) at or above which a partial answer is automated."""
    output: str | None = Field(default=None, min_length=1, max_length=256)
    """Output holding the confidence per row (default: the classifier's max probability)."""
    spotCheck: float = Field(default=0.0, ge=0, le=1)
    """Share (0-1) of automated answers also sent for review as spot checks."""

    def header(self) -> str:
        """The value the router sends the model server in x-kanaria-automation-policy."""
        extra = f";output={self.output}" if self.output else ""
        if self.spotCheck > 0:
            extra += f";spot={self.spotCheck:g}"
        return f"{self.mode};{self.threshold:g}{extra}"


class LabelStudioRoute(_Model):
    """Review cases as Label Studio tasks (kanaria.review.LabelStudioSink)."""

    url: HttpUrl
    project: str = Field(min_length=1)
    classes: list[str] = Field(min_length=2)
    """Class names, in the model's class index order."""
    tokenEnv: str = "LABEL_STUDIO_TOKEN"
    """The router's environment variable holding the API token."""


class ReviewRoute(_Model):
    """Where the router sends a model's review cases (kanaria.review sinks)."""

    webhook: HttpUrl | None = None
    labelStudio: LabelStudioRoute | None = None
    bufferSize: int = Field(default=1000, ge=1)
    """Cases held per sink while deliveries are slow; a full buffer drops and counts."""
    namespace: str | None = None
    """The ModelDeployment's namespace (named in each case); None under kanaria up."""


class Backend(_Model):
    """One model version the router can send requests to."""

    url: HttpUrl
    """Base URL of the version's model server (or its Service), e.g. http://10.0.0.5:8080."""
    weight: Percent = 0
    """Share of the model's primary traffic, in percent (0-100)."""
    ready: bool = True
    """False while the version is starting or failing probes: it then gets no traffic."""
    automation: AutomationPolicy | None = None
    """The version's confidence policy; None: every answer is the model's decision."""


class Mirror(_Model):
    """Send a copy of some requests to a shadow version and compare its answers."""

    version: str
    """Version that receives the copies; its answers are compared, never returned."""
    percent: Percent = 100
    """Share of primary requests that are copied, in percent."""


class StickyKey(_Model):
    """Where to read the key that pins a user to a version bucket."""

    header: str | None = None
    """Request header holding the key (e.g. x-user-id)."""
    cookie: str | None = None
    """Cookie holding the key, used when the header is absent."""

    @model_validator(mode="after")
    def _one_source(self) -> StickyKey:
        if not self.header and not self.cookie:
            raise ValueError("stickyKey needs a header or a cookie name")
        return self


class Comparison(_Model):
    """How shadow outputs are compared with the primary's."""

    rtol: float = Field(default=1e-3, ge=0)
    """Relative tolerance for numeric outputs that are not class probabilities."""
    atol: float = Field(default=1e-5, ge=0)
    """Absolute tolerance for numeric outputs that are not class probabilities."""
    logDisagreements: Percent = 1
    """Share of disagreeing examples written to the log with their request id, percent."""


class ModelRoutes(_Model):
    """Routes of one model name (the ``{name}`` in ``/v2/models/{name}``)."""

    versions: dict[str, Backend]
    mirror: Mirror | None = None
    stickyKey: StickyKey | None = None
    overrideHeader: str = "x-kanaria-version"
    """Header that pins a request to a named version (blue-green preview, debugging)."""
    comparison: Comparison = Comparison()
    review: ReviewRoute | None = None
    """Where review cases go; None: clients hold them (the answer says review)."""

    @model_validator(mode="after")
    def _weights(self) -> ModelRoutes:
        if not self.versions:
            raise ValueError("a model needs at least one version")
        live = {v: b.weight for v, b in self.versions.items() if b.weight > 0}
        total = sum(live.values())
        if abs(total - 100) > 1e-6:
            raise ValueError(f"weights must sum to 100, got {total:g} ({live or 'none set'})")
        unready = [v for v, b in self.versions.items() if b.weight > 0 and not b.ready]
        if unready and len(unready) == len(live):
            raise ValueError(f"every weighted version is unready: {', '.join(sorted(unready))}")
        if self.mirror is not None and self.mirror.version not in self.versions:
            raise ValueError(f"mirror.version {self.mirror.version!r} is not one of the versions")
        return self


class RoutesConfig(_Model):
    """The whole routes document."""

    apiVersion: Literal["kanaria.io/v1alpha1"] = "kanaria.io/v1alpha1"
    models: dict[str, ModelRoutes] = {}
    revision: str = ""
    """Opaque tag set by the writer (e.g. ModelDeployment generation/step), echoed in logs."""

    def to_yaml(self) -> str:
        """Serialise for a file or ConfigMap (stable key order, so diffs stay small)."""
        return yaml.safe_dump(
            self.model_dump(mode="json", by_alias=True, exclude_none=True), sort_keys=True
        )

    @classmethod
    def from_yaml(cls, text: str) -> RoutesConfig:
        """Parse and validate; raises ``ValueError`` with a readable message."""
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValueError(f"routes document is not valid YAML: {exc}") from exc
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ValueError("routes document must be a mapping with a 'models' key")
        return cls.model_validate(data)
