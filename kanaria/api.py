"""The ModelDeployment resource: spec and status as pydantic v2 models.

These models are the single source of truth for the resource: the CRD schema
(``kanaria crd``) is generated from them, ``kanaria up``/``apply`` validate
files with them, and the rollout engine reads spec and writes status through
them. Field names are camelCase exactly as they appear in YAML. Each field's
docstring becomes its description in the CRD (``kubectl explain``), so it says
the unit and the default. Cross-field rules are written twice on purpose: as a
pydantic validator (local files) and as a CEL rule in ``json_schema_extra``
(the API server), each naming the offending field.
"""

from __future__ import annotations

import ipaddress
import math
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from kanaria.durations import Duration, parse_duration

# The resource's identity, in one place: the CRD, the operator, `kanaria status` and
# the kubectl-facing verbs all read these.
GROUP: Final = "kanaria.io"
VERSION: Final = "v1alpha1"
API_VERSION: Final = "kanaria.io/v1alpha1"  # GROUP/VERSION, spelled out for the Literal type
KIND: Final = "ModelDeployment"
PLURAL: Final = "modeldeployments"
SINGULAR: Final = "modeldeployment"
SHORT_NAMES: Final = ("mdep",)
COMMAND_ANNOTATION: Final = "kanaria.io/command"
"""The annotation through which ``kanaria pause|resume|promote|abort`` reach the operator."""

NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
"""DNS-1123 label: model names and metric names become Kubernetes object names and labels."""
VERSION_PATTERN = r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
"""A model version: a label value (letters, digits, '-', '_', '.'), at most 63 characters."""
HEADER_PATTERN = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$"
"""An HTTP header (or cookie) name token."""

Percent = Annotated[float, Field(ge=0, le=100)]
RolloutStage = Literal["Mirroring", "Preview", "Steps", "Automating", "Switching", "PostPromotion"]
"""Stages of a rollout, as in status.stage: Mirroring (shadow: the candidate only gets
mirrored copies), Preview (blue-green before the switch), Steps (canary steps), Switching
(full promotion: scaling the candidate up, then moving all traffic), Automating (automation
ramp: the candidate answers, its confidence threshold steps down), PostPromotion
(blue-green after the switch, the old version kept warm)."""
ROLLOUT_STAGES: Final[tuple[RolloutStage, ...]] = (
    "Mirroring",
    "Preview",
    "Steps",
    "Automating",
    "Switching",
    "PostPromotion",
)
Quantity = Annotated[str, Field(min_length=1, max_length=64)]
"""A Kubernetes resource quantity such as 500m or 1Gi."""


def _cel(rule: str, message: str, field_path: str | None = None) -> dict[str, str]:
    """One ``x-kubernetes-validations`` entry; ``fieldPath`` points kubectl at the field."""
    entry = {"rule": rule, "message": message}
    if field_path:
        entry["fieldPath"] = field_path
    return entry


def _validations(*rules: dict[str, str]) -> dict[str, Any]:
    return {"x-kubernetes-validations": list(rules)}


class _Spec(BaseModel):
    """Spec parts: unknown fields are errors (a typo must not be silently ignored)."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, use_attribute_docstrings=True, populate_by_name=True
    )


class _Status(BaseModel):
    """Status parts: mutable copies owned by the engine; unknown fields are ignored so
    an older engine can read a newer status."""

    model_config = ConfigDict(extra="ignore", use_attribute_docstrings=True)


# --------------------------------------------------------------------------- spec: model


class ModelSource(_Spec):
    """The model version to serve: where the ONNX file is and how to verify it."""

    model_config = ConfigDict(
        json_schema_extra=_validations(
            _cel(
                "!self.uri.startsWith('s3://') || self.uri.matches('^s3://[^/]+/.+$')",
                "spec.model.uri: an s3:// URI names a bucket and a key: "
                "s3://bucket/path/model.onnx",
                ".uri",
            ),
            _cel(
                "!has(self.referenceProfile) || !self.referenceProfile.startsWith('s3://') "
                "|| self.referenceProfile.matches('^s3://[^/]+/.+$')",
                "spec.model.referenceProfile: an s3:// URI names a bucket and a key: "
                "s3://bucket/path/profile.json",
                ".referenceProfile",
            ),
            _cel(
                "!has(self.credentialsSecret) || self.uri.startsWith('s3://') "
                "|| (has(self.referenceProfile) && self.referenceProfile.startsWith('s3://'))",
                "spec.model.credentialsSecret: only s3:// URIs use it; uri or "
                "referenceProfile must be an s3:// URI",
                ".credentialsSecret",
            ),
        )
    )

    version: str = Field(pattern=VERSION_PATTERN, max_length=63)
    """Version name (e.g. v2). Changing it starts a rollout from the current stable version."""
    uri: str = Field(min_length=1, max_length=2048)
    """Where the ONNX file is: https://, http://, s3:// or file:// URL, or a local path.
    s3://bucket/key reads credentials, region and endpoint from the model server's AWS_*
    environment variables (on Kubernetes: from credentialsSecret)."""
    sha256: str | None = Field(default=None, pattern=r"^[a-f0-9]{64}$", max_length=64)
    """Expected SHA-256 of the ONNX file (64 lowercase hex digits). Optional; if set, a
    mismatching file is refused by the model server."""
    referenceProfile: str | None = Field(default=None, max_length=2048)
    """URI of the reference input profile (JSON) used for input drift (PSI). Default: none,
    so no drift metric is exported for this version."""
    credentialsSecret: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
        max_length=253,
    )
    """Kubernetes only: Secret in the ModelDeployment's namespace whose keys become the
    model-server container's environment for s3:// URIs. Required keys:
    AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY; optional: AWS_SESSION_TOKEN, AWS_REGION,
    AWS_DEFAULT_REGION, AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_S3, S3_ENDPOINT, S3_USE_HTTPS,
    S3_VERIFY_SSL. It applies to every running version read from S3: changing it restarts
    their pods. Default: none (IAM roles for service accounts or node credentials, if any). Under
    `kanaria up` the model servers use kanaria up's own environment instead."""

    @model_validator(mode="after")
    def _s3_uris_name_bucket_and_key(self) -> ModelSource:
        for field, uri in (("uri", self.uri), ("referenceProfile", self.referenceProfile)):
            if uri is not None and uri.startswith("s3://"):
                bucket, _, key = uri[len("s3://") :].partition("/")
                if not bucket or not key:
                    raise ValueError(
                        f"{field}: an s3:// URI names a bucket and a key: s3://bucket/path/file"
                    )
        if self.credentialsSecret is not None and not any(
            u is not None and u.startswith("s3://") for u in (self.uri, self.referenceProfile)
        ):
            raise ValueError(
                "credentialsSecret: only s3:// URIs use it; uri or referenceProfile must be "
                "an s3:// URI"
            )
        return self


class ResourceList(_Spec):
    """Kubernetes resource quantities for the model-server container."""

    requests: dict[str, Quantity] | None = Field(default=None, max_length=16)
    """Resource requests, e.g. {cpu: 500m, memory: 1Gi}. Default: none."""
    limits: dict[str, Quantity] | None = Field(default=None, max_length=16)
    """Resource limits, e.g. {cpu: "2", memory: 2Gi}. Default: none."""


# --------------------------------------------------------------------------- spec: server, router


class Batching(_Spec):
    """Dynamic batching: requests that queue while a batch runs are merged into the
    next onnxruntime call. On by default, with the same defaults as `kanaria
    serve-model` (64 rows, no delay): a lone request runs at once, as without
    batching, while under load throughput grows several times (bench/README.md)."""

    maxBatchSize: int = Field(default=64, ge=1, le=4096)
    """Most rows per executed batch (rows, not requests); 1 turns batching off. Default 64."""
    maxBatchDelay: Duration = "0ms"
    """Longest time an idle server waits for more requests to fill a batch; every
    request pays it when traffic is low. Default 0ms (batch only what queued)."""


class ServerSpec(_Spec):
    """Model-server settings. They belong to a version: each version keeps the settings
    it started with (status.stable.server, status.candidate.server), so a rollout
    whose new version carries `--chaos-error-rate` never touches the stable's pods.
    A change of spec.server alone reaches the stable version once no rollout runs."""

    batching: Batching = Batching()
    """Dynamic batching settings. Default on: maxBatchSize 64, maxBatchDelay 0ms, the
    same as `kanaria serve-model`. A lone request still runs at once; requests that
    arrive together share one onnxruntime call (about 4x the throughput of batching
    off at 64 connections in bench/README.md)."""
    image: str | None = Field(default=None, max_length=512)
    """Container image of the model server (Kubernetes only). Default: the operator's."""
    args: list[Annotated[str, Field(max_length=256)]] = Field(default=[], max_length=32)
    """Extra command-line arguments for `kanaria serve-model`. Default: none."""


class StickyKey(_Spec):
    """Where the router reads the key that pins a user to one version."""

    model_config = ConfigDict(
        json_schema_extra=_validations(
            _cel(
                "has(self.header) || has(self.cookie)",
                "spec.router.stickyKey: set header or cookie",
            )
        )
    )

    header: str | None = Field(default=None, pattern=HEADER_PATTERN, max_length=128)
    """Request header holding the key (e.g. x-user-id)."""
    cookie: str | None = Field(default=None, pattern=HEADER_PATTERN, max_length=128)
    """Cookie holding the key, read when the header is absent."""

    @model_validator(mode="after")
    def _one_source(self) -> StickyKey:
        if not self.header and not self.cookie:
            raise ValueError("set header or cookie")
        return self


class RouterAuth(_Spec):
    """Bearer-token authentication of client requests at the router."""

    header: str = Field(default="Authorization", pattern=HEADER_PATTERN, max_length=128)
    """Header carrying the token ("Bearer <token>" in Authorization). Default Authorization."""
    secretName: str | None = Field(default=None, pattern=NAME_PATTERN, max_length=253)
    """Kubernetes only: Secret whose `tokens` key lists accepted tokens, one per line."""
    tokensFile: str | None = Field(default=None, max_length=1024)
    """Local runtime only: file listing accepted tokens, one per line."""


class RouterRateLimit(_Spec):
    """Per-client request rate limit at the router: a model behind a public API can
    be copied by querying it, and a limit is the first line of defence."""

    model_config = ConfigDict(
        json_schema_extra=_validations(
            _cel(
                "self.trustedProxies.all(p, isIP(p) || isCIDR(p))",
                "spec.router.rateLimit.trustedProxies: each entry must be an IP address "
                "or CIDR (e.g. 10.0.0.0/8)",
            )
        )
    )

    requestsPerSecond: float = Field(gt=0, le=1_000_000)
    """Requests per second each client may send (clients: bearer token, else address)."""
    burst: int = Field(default=20, ge=1, le=1_000_000)
    """Requests a client may send at once before the per-second rate applies. Default 20."""
    trustedProxies: list[Annotated[str, Field(max_length=64)]] = Field(
        default_factory=list, max_length=32
    )
    """Addresses or CIDRs of proxies in front of the router (ingress, load balancer):
    from them, the client is the right-most X-Forwarded-For entry that is not a
    trusted proxy. Default: none (X-Forwarded-For ignored)."""

    @field_validator("trustedProxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(
                    f"{item!r} is not an IP address or CIDR (e.g. 10.0.0.0/8)"
                ) from None
        return value


class RouterSpec(_Spec):
    """How the router splits, pins, authenticates and limits traffic for this model."""

    stickyKey: StickyKey | None = None
    """Pin each user to a version bucket by this key. Default: none (per-request split)."""
    overrideHeader: str = Field(default="x-kanaria-version", pattern=HEADER_PATTERN, max_length=128)
    """Header that sends a request to a named version (blue-green preview, debugging).
    Default x-kanaria-version."""
    auth: RouterAuth | None = None
    """Require a bearer token from clients. Default: none (open)."""
    rateLimit: RouterRateLimit | None = None
    """Limit each client's request rate (429 with Retry-After past it). Default: none."""


# --------------------------------------------------------------------------- spec: strategy


class Pause(_Spec):
    """Hold the current weight."""

    duration: Duration | None = None
    """How long to hold (e.g. 60s). Omitted: hold until `kanaria promote` (or resume)."""


class StepAnalysis(_Spec):
    """Hold the current weight until analysis has passed."""

    rounds: int = Field(default=1, ge=1, le=100)
    """Consecutive Successful analysis rounds needed to leave this step. Default 1."""


class CanaryStep(_Spec):
    """One canary step: exactly one of setWeight, pause, analysis."""

    model_config = ConfigDict(
        json_schema_extra=_validations(
            _cel(
                "(has(self.setWeight) ? 1 : 0) + (has(self.pause) ? 1 : 0)"
                " + (has(self.analysis) ? 1 : 0) == 1",
                "spec.strategy.canary.steps[]: set exactly one of setWeight, pause, analysis",
            )
        )
    )

    setWeight: int | None = Field(default=None, ge=0, le=100)
    """Send this percentage (0-100) of traffic to the candidate."""
    pause: Pause | None = None
    """Hold the weight for a duration, or until promoted."""
    analysis: StepAnalysis | None = None
    """Hold the weight until analysis rounds pass."""

    @model_validator(mode="after")
    def _exactly_one(self) -> CanaryStep:
        chosen = [n for n in ("setWeight", "pause", "analysis") if getattr(self, n) is not None]
        if len(chosen) != 1:
            raise ValueError(
                "set exactly one of setWeight, pause, analysis"
                + (f" (got {', '.join(chosen)})" if chosen else "")
            )
        return self


class CanaryStrategy(_Spec):
    """Shift traffic to the candidate step by step; promote after the last step."""

    model_config = ConfigDict(
        json_schema_extra=_validations(
            _cel(
                "self.steps.filter(s, has(s.setWeight)).map(s, s.setWeight).isSorted()",
                "spec.strategy.canary.steps: setWeight values must not decrease",
                ".steps",
            )
        )
    )

    steps: list[CanaryStep] = Field(min_length=1, max_length=32)
    """Steps run in order (1-32). After the last one the candidate is promoted to 100%."""

    @field_validator("steps")
    @classmethod
    def _non_decreasing(cls, steps: list[CanaryStep]) -> list[CanaryStep]:
        last = -1
        for i, step in enumerate(steps):
            if step.setWeight is not None:
                if step.setWeight < last:
                    raise ValueError(
                        f"steps[{i}].setWeight {step.setWeight} is below an earlier step's "
                        f"{last}: weights must not decrease"
                    )
                last = step.setWeight
        return steps


class BlueGreenStrategy(_Spec):
    """Bring the candidate up at full size with 0% traffic, check it, switch at once."""

    autoPromote: bool = True
    """Switch automatically once the candidate is Ready and pre-promotion analysis passed.
    False: wait for `kanaria promote`. Default true."""
    mirrorPercent: Percent = 0
    """Percentage of live requests mirrored to the candidate while it waits (its answers
    are compared, never returned), so pre-promotion analysis has data. Default 0; the
    candidate can always be reached with the router's override header."""
    prePromotionAnalysis: StepAnalysis | None = None
    """Analysis rounds the candidate must pass before the switch. Default: none."""
    postPromotionAnalysis: StepAnalysis | None = None
    """Analysis rounds after the switch, while the old version is kept warm; a failure
    switches back. Default: none."""
    scaleDownDelay: Duration = "30s"
    """How long the old version stays up (warm, 0% traffic) after the switch. Default 30s."""


class ThresholdStep(_Spec):
    """One automation step: exactly one of setThreshold, pause, analysis."""

    model_config = ConfigDict(
        json_schema_extra=_validations(
            _cel(
                "(has(self.setThreshold) ? 1 : 0) + (has(self.pause) ? 1 : 0)"
                " + (has(self.analysis) ? 1 : 0) == 1",
                "spec.strategy.automation.steps[]: set exactly one of setThreshold, pause, "
                "analysis",
            )
        )
    )

    setThreshold: float | None = Field(default=None, ge=0, le=1)
    """Automate the candidate's predictions whose confidence is at least this (0-1); the
    rest go to review. The first one ends assist (everything reviewed)."""
    pause: Pause | None = None
    """Hold the threshold for a duration, or until promoted."""
    analysis: StepAnalysis | None = None
    """Hold the threshold until analysis rounds pass (reviewerAgreement on the band
    automated next, automationRate, success and latency)."""

    @model_validator(mode="after")
    def _exactly_one(self) -> ThresholdStep:
        chosen = [n for n in ("setThreshold", "pause", "analysis") if getattr(self, n) is not None]
        if len(chosen) != 1:
            raise ValueError(
                "set exactly one of setThreshold, pause, analysis"
                + (f" (got {', '.join(chosen)})" if chosen else "")
            )
        return self


class AutomationStrategy(_Spec):
    """Ramp a new version's automation: it answers every client at once with all of its
    predictions for review (assist), then automates more step by step, lowering the
    threshold towards spec.automation.threshold; a failing reviewerAgreement or
    automationRate gate moves the threshold back to the last step that passed."""

    model_config = ConfigDict(
        json_schema_extra=_validations(
            _cel(
                "self.steps.filter(s, has(s.setThreshold)).map(s, 1.0 - s.setThreshold).isSorted()",
                "spec.strategy.automation.steps: setThreshold values must not increase",
                ".steps",
            )
        )
    )

    steps: list[ThresholdStep] = Field(min_length=1, max_length=32)
    """Steps run in order (1-32). After the last one the candidate is promoted with the
    threshold it reached (spec.automation.mode full: everything automated)."""

    @field_validator("steps")
    @classmethod
    def _non_increasing(cls, steps: list[ThresholdStep]) -> list[ThresholdStep]:
        last = 2.0
        for i, step in enumerate(steps):
            if step.setThreshold is not None:
                if step.setThreshold > last:
                    raise ValueError(
                        f"steps[{i}].setThreshold {step.setThreshold:g} is above an earlier "
                        f"step's {last:g}: thresholds must not increase"
                    )
                last = step.setThreshold
        return steps


class ShadowStrategy(_Spec):
    """Mirror a share of traffic to the candidate and compare; optionally graduate."""

    model_config = ConfigDict(
        json_schema_extra=_validations(
            _cel(
                "!has(self.graduateTo) || self.graduateTo != 'canary' || has(self.canary)",
                "spec.strategy.shadow.canary is required when graduateTo is canary",
                ".canary",
            ),
            _cel(
                "!has(self.graduateTo) || self.graduateTo != 'blueGreen' || has(self.blueGreen)",
                "spec.strategy.shadow.blueGreen is required when graduateTo is blueGreen",
                ".blueGreen",
            ),
            _cel(
                "!has(self.graduateTo) || self.graduateTo != 'automation' || has(self.automation)",
                "spec.strategy.shadow.automation is required when graduateTo is automation",
                ".automation",
            ),
        )
    )

    mirrorPercent: Percent = 100
    """Percentage of live requests copied to the candidate. Default 100."""
    duration: Duration | None = None
    """Shortest time the shadow runs before it can end or graduate (e.g. 10m). Default:
    none, only the analysis rounds count."""
    analysis: StepAnalysis = StepAnalysis()
    """Consecutive Successful analysis rounds (spec.analysis.metrics, e.g. shadowAgreement)
    needed to pass. Default 1 round."""
    graduateTo: Literal["canary", "blueGreen", "automation", "none"] = "none"
    """After passing: continue as a canary or blue-green rollout, or as an automation ramp
    (assist, then partial: the degrees chain), or stop the shadow and keep the stable
    version (none). Default none."""
    canary: CanaryStrategy | None = None
    """Canary steps used when graduateTo is canary."""
    blueGreen: BlueGreenStrategy | None = None
    """Blue-green settings used when graduateTo is blueGreen."""
    automation: AutomationStrategy | None = None
    """Automation ramp used when graduateTo is automation (needs spec.automation)."""

    @model_validator(mode="after")
    def _graduation(self) -> ShadowStrategy:
        if self.graduateTo == "canary" and self.canary is None:
            raise ValueError("canary is required when graduateTo is canary")
        if self.graduateTo == "blueGreen" and self.blueGreen is None:
            raise ValueError("blueGreen is required when graduateTo is blueGreen")
        if self.graduateTo == "automation" and self.automation is None:
            raise ValueError("automation is required when graduateTo is automation")
        return self


class Strategy(_Spec):
    """How a new model version is rolled out: exactly one of canary, blueGreen, shadow,
    automation."""

    model_config = ConfigDict(
        json_schema_extra=_validations(
            _cel(
                "(has(self.canary) ? 1 : 0) + (has(self.blueGreen) ? 1 : 0)"
                " + (has(self.shadow) ? 1 : 0) + (has(self.automation) ? 1 : 0) == 1",
                "spec.strategy: set exactly one of canary, blueGreen, shadow, automation",
            )
        )
    )

    canary: CanaryStrategy | None = None
    """Shift traffic step by step."""
    blueGreen: BlueGreenStrategy | None = None
    """Full-size candidate at 0%, then one switch."""
    shadow: ShadowStrategy | None = None
    """Mirrored traffic only; may graduate into canary or blue-green."""
    automation: AutomationStrategy | None = None
    """The candidate answers at once, in assist; its threshold steps down (needs
    spec.automation)."""

    @model_validator(mode="after")
    def _exactly_one(self) -> Strategy:
        chosen = [
            n
            for n in ("canary", "blueGreen", "shadow", "automation")
            if getattr(self, n) is not None
        ]
        if len(chosen) != 1:
            raise ValueError(
                "set exactly one of canary, blueGreen, shadow, automation"
                + (f" (got {', '.join(chosen)})" if chosen else "")
            )
        return self

    @property
    def automation_ramp(self) -> AutomationStrategy | None:
        """The automation ramp's settings (a shadow's, if it graduates into one)."""
        shadow = self.shadow
        if self.automation is None and shadow is not None and shadow.graduateTo == "automation":
            return shadow.automation
        return self.automation

    @property
    def kind(self) -> Literal["canary", "blueGreen", "shadow", "automation"]:
        """Which strategy is set."""
        if self.canary is not None:
            return "canary"
        if self.blueGreen is not None:
            return "blueGreen"
        if self.automation is not None:
            return "automation"
        return "shadow"


# --------------------------------------------------------------------------- spec: analysis


class Builtin(StrEnum):
    """Built-in gates, PromQL templates over the metric names in kanaria.metric_names."""

    successRate = "successRate"
    errorRate = "errorRate"
    latencyP99 = "latencyP99"
    inputDrift = "inputDrift"
    shadowAgreement = "shadowAgreement"
    accuracy = "accuracy"
    reviewerAgreement = "reviewerAgreement"
    automationRate = "automationRate"
    latencyDistribution = "latencyDistribution"
    outputDistribution = "outputDistribution"


COMPARABLE_BUILTINS: Final = ("successRate", "errorRate", "accuracy", "latencyP99",
                              "latencyDistribution", "outputDistribution")  # fmt: skip
"""Built-ins that can compare the candidate with the stable (``compare``): each has a
count per version to compare. inputDrift is already a comparison (with the reference
profile) and shadowAgreement is one number for the pair."""
COMPARE_ONLY_BUILTINS: Final = ("latencyDistribution", "outputDistribution")
"""Built-ins that only mean something as a comparison (no threshold on their own)."""
COMPARE_STAGES: Final[tuple[RolloutStage, ...]] = ("Mirroring", "Preview", "Steps")
"""Stages in which both versions can get traffic; after the switch the stable gets none."""


class Compare(_Spec):
    """Judge the candidate against the stable version instead of against a fixed number.

    Both versions are counted on the same traffic since the current step (or stage)
    began; a shadow is compared on the copies it answered. The counts are checked
    every interval with an always-valid sequential test (a confidence sequence), so
    looking every interval does not add false alarms. The gate is Successful once the
    data show, with the configured confidence, that the candidate is not worse than
    the stable by more than margin; Failed once they show it is; Inconclusive until
    then, so low traffic never rolls back and never promotes. spec.analysis.minRequests
    does not apply: status shows the sample size the margin and power need instead."""

    model_config = ConfigDict(
        json_schema_extra=_validations(
            _cel(
                "!has(self.relative) || !self.relative || self.margin > 0.0",
                "spec.analysis.metrics[].compare.margin must be above 0 when relative",
                ".margin",
            ),
        )
    )

    against: Literal["stable"] = "stable"
    """The version compared with: stable (the only choice today)."""
    margin: float = Field(ge=0, le=1000)
    """How much worse than the stable the candidate may be. successRate, errorRate,
    accuracy: the increase of the failing share (5xx, or incorrect labels), absolute
    (0.005 = half a percentage point) or, with relative, as a fraction of the stable's
    (0.5 = 50% more). latencyP99: the quantile's ratio minus 1 (0.2 = at most 20%
    slower). latencyDistribution: the chance that a candidate request is slower than a
    stable one, minus 1/2 (0.05). outputDistribution: the largest change of any output
    class's share (0.02 = two points)."""
    relative: bool | None = None
    """Margin as a fraction of the stable's value instead of an absolute difference
    (successRate, errorRate, accuracy). latencyP99 is always relative (a ratio);
    latencyDistribution and outputDistribution never are. Default false."""
    confidence: float = Field(default=0.99, ge=0.5, le=0.9999)
    """Probability that the whole rollout makes no false verdict: it is shared
    equally between the steps (or stages) whose counts start afresh. Default 0.99."""
    power: float = Field(default=0.8, ge=0.5, le=0.9999)
    """Chance of a verdict by the minimum sample size shown in status. Default 0.8."""

    @model_validator(mode="after")
    def _positive_relative(self) -> Compare:
        if self.relative and self.margin <= 0:
            raise ValueError("margin must be above 0 when relative")
        return self


class MetricGate(_Spec):
    """One gate: a value measured over the last interval, judged against min and/or max;
    or (compare) the candidate judged against the stable version."""

    model_config = ConfigDict(
        json_schema_extra=_validations(
            _cel(
                "has(self.builtin) != has(self.query)",
                "spec.analysis.metrics[]: set exactly one of builtin, query",
            ),
            _cel(
                "has(self.min) || has(self.max) || has(self.compare)",
                "spec.analysis.metrics[]: set min, max or both, or compare",
            ),
            _cel(
                "!has(self.compare) || (!has(self.min) && !has(self.max))",
                "spec.analysis.metrics[]: compare replaces min and max: set one or the other",
                ".compare",
            ),
            _cel(
                "!has(self.compare) || (has(self.builtin) && self.builtin in "
                + str(list(COMPARABLE_BUILTINS))
                + ")",
                "spec.analysis.metrics[].compare needs builtin " + ", ".join(COMPARABLE_BUILTINS),
                ".compare",
            ),
            _cel(
                "!has(self.builtin) || !(self.builtin in "
                + str(list(COMPARE_ONLY_BUILTINS))
                + ") || has(self.compare)",
                "spec.analysis.metrics[]: builtins "
                + ", ".join(COMPARE_ONLY_BUILTINS)
                + " need compare",
                ".builtin",
            ),
            _cel(
                "!has(self.compare) || !has(self.compare.relative) || !has(self.builtin) || "
                "(self.compare.relative ? !(self.builtin in "
                + str(list(COMPARE_ONLY_BUILTINS))
                + ") : self.builtin != 'latencyP99')",
                "spec.analysis.metrics[].compare.relative: latencyP99 is always relative, "
                + " and ".join(COMPARE_ONLY_BUILTINS)
                + " never",
                ".compare.relative",
            ),
            _cel(
                "!has(self.compare) || !has(self.stages) || "
                "self.stages.all(s, s in " + str(list(COMPARE_STAGES)) + ")",
                "spec.analysis.metrics[].stages: a compare gate applies only where both "
                "versions get traffic: " + ", ".join(COMPARE_STAGES),
                ".stages",
            ),
            _cel(
                "!has(self.min) || !has(self.max) || self.min < self.max",
                "spec.analysis.metrics[].min must be less than max",
                ".min",
            ),
            _cel(
                "!has(self.quantile) || (has(self.builtin) && self.builtin == 'latencyP99')",
                "spec.analysis.metrics[].quantile is only allowed with builtin latencyP99",
                ".quantile",
            ),
        )
    )

    name: str = Field(pattern=NAME_PATTERN, max_length=63)
    """Name of the gate, unique in the list (shown in status and Events)."""
    builtin: Builtin | None = None
    """A built-in gate: successRate, errorRate (ratios 0-1), latencyP99 (seconds),
    inputDrift (PSI, max over inputs), shadowAgreement (ratio 0-1), accuracy (ratio 0-1,
    from delayed labels); with compare only: latencyDistribution (the whole latency
    histogram, P(candidate slower) - 1/2) and outputDistribution (output class shares);
    for an automation ramp: reviewerAgreement (ratio 0-1: reviewers' labels that agree
    with the model's suggestion, on review cases whose confidence lies in the band the next
    setThreshold step automates) and automationRate (ratio 0-1 of automated predictions)."""
    query: str | None = Field(default=None, min_length=1, max_length=4096)
    """Custom PromQL returning one series; placeholders {{model}}, {{version}},
    {{namespace}} (empty outside Kubernetes) and {{interval}} (e.g. 30s)."""
    min: float | None = None
    """The measured value must be >= min to pass."""
    max: float | None = None
    """The measured value must be <= max to pass."""
    quantile: float | None = Field(default=None, gt=0, lt=1)
    """Latency quantile for builtin latencyP99, e.g. 0.95. Default 0.99."""
    compare: Compare | None = None
    """Judge the candidate against the stable version on the same traffic (instead of
    min and max): builtins successRate, errorRate, accuracy, latencyP99,
    latencyDistribution, outputDistribution. Applies where both versions get traffic
    (Steps, and Mirroring or Preview with mirrored copies). Default: none."""
    stages: list[RolloutStage] | None = Field(
        default=None,
        min_length=1,
        max_length=len(ROLLOUT_STAGES),
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    """Rollout stages in which this gate is measured and judged (status.stage names):
    Mirroring, Preview, Steps, Switching, PostPromotion. Default: shadowAgreement only
    while the candidate gets mirrored copies (Mirroring, and Preview when
    blueGreen.mirrorPercent > 0); every other gate in every stage. A stage in which no
    gate applies is gated like a rollout without gates: only pauses and people hold it."""

    @model_validator(mode="after")
    def _rules(self) -> MetricGate:
        if (self.builtin is None) == (self.query is None):
            raise ValueError("set exactly one of builtin, query")
        if self.compare is not None:
            self._compare_rules(self.compare)
        elif self.builtin is not None and self.builtin.value in COMPARE_ONLY_BUILTINS:
            raise ValueError(f"builtin {self.builtin.value} needs compare")
        elif self.min is None and self.max is None:
            raise ValueError("set min, max or both, or compare")
        for bound in (self.min, self.max):
            if bound is not None and not math.isfinite(bound):
                raise ValueError("min and max must be finite numbers")
        if self.min is not None and self.max is not None and self.min >= self.max:
            raise ValueError(f"min ({self.min:g}) must be less than max ({self.max:g})")
        if self.quantile is not None and self.builtin is not Builtin.latencyP99:
            raise ValueError("quantile is only allowed with builtin latencyP99")
        if self.stages is not None and len(set(self.stages)) != len(self.stages):
            raise ValueError("stages must not name a stage twice")
        return self

    def _compare_rules(self, compare: Compare) -> None:
        if self.min is not None or self.max is not None:
            raise ValueError("compare replaces min and max: set one or the other")
        if self.builtin is None or self.builtin.value not in COMPARABLE_BUILTINS:
            raise ValueError("compare needs builtin " + ", ".join(COMPARABLE_BUILTINS))
        if compare.relative is False and self.builtin is Builtin.latencyP99:
            raise ValueError("compare.relative: latencyP99 is always relative (a ratio)")
        if compare.relative and self.builtin.value in COMPARE_ONLY_BUILTINS:
            raise ValueError(f"compare.relative: {self.builtin.value} is never relative")
        if self.stages is not None and not set(self.stages) <= set(COMPARE_STAGES):
            raise ValueError(
                "stages: a compare gate applies only where both versions get traffic: "
                + ", ".join(COMPARE_STAGES)
            )


class Analysis(_Spec):
    """Metric gates measured every interval while a rollout progresses."""

    model_config = ConfigDict(
        json_schema_extra=_validations(
            _cel(
                "!has(self.interval) || duration(self.interval) >= duration('1s')",
                "spec.analysis.interval must be at least 1s",
                ".interval",
            )
        )
    )

    interval: Duration = "30s"
    """Time between analysis rounds, and the window each query looks back over. Default 30s."""
    failureLimit: int = Field(default=0, ge=0, le=100)
    """Failed measurements of one gate tolerated during a rollout; one more rolls back
    (as in Argo Rollouts: failures > failureLimit roll back). 0 rolls back at the first
    failure, 1 tolerates one and rolls back at the second. Default 0."""
    inconclusiveLimit: int = Field(default=3, ge=0, le=100)
    """Consecutive Inconclusive measurements (no data, too few requests) of one gate
    tolerated; one more pauses the rollout for a person. Default 3."""
    consecutiveErrorLimit: int = Field(default=4, ge=0, le=100)
    """Consecutive Error measurements (metric source down, bad query) of one gate
    tolerated; one more rolls back. Default 4."""
    minRequests: int = Field(default=0, ge=0)
    """Requests the measured version must have served in the interval for a verdict;
    fewer makes the measurement Inconclusive. Default 0."""
    metrics: list[MetricGate] = Field(
        default=[],
        max_length=16,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    """The gates (at most 16). Default: none, so only pauses and people gate the rollout."""

    @field_validator("interval")
    @classmethod
    def _at_least_a_second(cls, value: str) -> str:
        if parse_duration(value) < 1:
            raise ValueError("must be at least 1s")
        return value

    @field_validator("metrics")
    @classmethod
    def _unique(cls, metrics: list[MetricGate]) -> list[MetricGate]:
        seen: set[str] = set()
        for i, m in enumerate(metrics):
            if m.name in seen:
                raise ValueError(f"metrics[{i}].name {m.name!r} is used twice")
            seen.add(m.name)
        return metrics

    @property
    def interval_seconds(self) -> float:
        """The analysis interval in seconds."""
        return parse_duration(self.interval)


# --------------------------------------------------------------------------- spec: retraining


class Webhook(_Spec):
    """An HTTP endpoint called with a JSON payload."""

    url: str = Field(pattern=r"^https?://", max_length=2048)
    """http:// or https:// URL that receives a POST with the JSON payload."""
    timeout: Duration = "10s"
    """Request timeout. Default 10s."""
    headers: dict[str, Annotated[str, Field(max_length=4096)]] = Field(default={}, max_length=16)
    """Extra request headers (e.g. Authorization). Default: none."""


class Retraining(_Spec):
    """Ask for a retrained model when the stable version's inputs drift or accuracy drops."""

    metric: Literal["inputDrift", "accuracy"] = "inputDrift"
    """What to watch on the stable version: inputDrift (PSI, max over inputs; crossing
    means above threshold) or accuracy (ratio 0-1; crossing means below). Default inputDrift."""
    threshold: float
    """The value that must be crossed (PSI, e.g. 0.2; or accuracy, e.g. 0.9)."""
    duration: Duration = "10m"
    """How long the value must stay crossed before retraining is requested. Default 10m."""
    cooldown: Duration = "1h"
    """Least time between two retraining requests. Default 1h."""
    webhook: Webhook | None = None
    """Called (POST, JSON) when retraining is requested. Default: none."""
    jobTemplate: dict[str, Any] | None = Field(
        default=None, json_schema_extra={"x-kubernetes-preserve-unknown-fields": True}
    )
    """Kubernetes only: a batch/v1 JobTemplateSpec the operator creates a Job from."""


# --------------------------------------------------------------------------- spec: automation

AutomationMode = Literal["assist", "partial", "full"]
"""assist: every prediction goes to review, with the model's answer as a suggestion;
partial: predictions at or above the threshold are automated, the rest go to review;
full: every prediction is automated."""


class LabelStudioReview(_Spec):
    """Review cases become Label Studio tasks with the model's prediction pre-filled."""

    url: str = Field(pattern=r"^https?://", max_length=2048)
    """Label Studio's base URL, e.g. http://label-studio:8080."""
    project: str = Field(min_length=1, max_length=200)
    """Project title; made (with the model's classes) when missing."""
    classes: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        min_length=2, max_length=1000
    )
    """Class names in the model's class index order: the reviewer's choices."""
    tokenEnv: str = Field(
        default="LABEL_STUDIO_TOKEN", pattern=r"^[A-Z_][A-Z0-9_]*$", max_length=128
    )
    """Environment variable of the router holding the API token (never in the spec).
    Default LABEL_STUDIO_TOKEN. Under `kanaria up` the router inherits kanaria up's
    environment."""
    tokenSecret: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
        max_length=253,
    )
    """Kubernetes only: Secret in the ModelDeployment's namespace whose key `token` the
    operator gives the router as tokenEnv (changing the Secret's name restarts the
    router). Default: none."""


class ReviewSinks(_Spec):
    """Where review cases go (kanaria.review): a webhook, Label Studio, or both."""

    model_config = ConfigDict(
        json_schema_extra=_validations(
            _cel(
                "has(self.webhook) || has(self.labelStudio)",
                "spec.automation.review: set webhook, labelStudio or both",
            )
        )
    )

    webhook: str | None = Field(default=None, pattern=r"^https?://", max_length=2048)
    """POST review cases here as JSON batches (kind ReviewCases), with retries."""
    labelStudio: LabelStudioReview | None = None
    """Label Studio reached through its REST API."""
    bufferSize: int = Field(default=1000, ge=1, le=1_000_000)
    """Cases held per sink while deliveries are slow; a full buffer drops (counted in
    kanaria_review_cases_total{outcome="dropped"}) and never slows a client. Default 1000."""

    @model_validator(mode="after")
    def _one_sink(self) -> ReviewSinks:
        if self.webhook is None and self.labelStudio is None:
            raise ValueError("set webhook, labelStudio or both")
        return self


class Automation(_Spec):
    """Degrees of automation: which predictions the model decides and which a person
    reviews (with the model's answer as a suggestion). Every answer says which, in the
    V2 response parameter kanaria_automation and the x-kanaria-automation header."""

    mode: AutomationMode = "partial"
    """assist (everything to review), partial (automated at or above threshold) or full.
    Default partial."""
    threshold: float = Field(default=0.9, ge=0, le=1)
    """Confidence (0-1) at or above which a prediction is automated in partial mode; an
    automation ramp steps down to it (its floor). Default 0.9."""
    output: str | None = Field(default=None, min_length=1, max_length=256)
    """Output holding the confidence per row (values 0-1), for models that are not
    classifiers. Default: the max class probability of the first classifier output (the
    value of kanaria_output_confidence)."""
    spotCheck: float = Field(default=0, ge=0, le=1)
    """Share (0-1) of automated answers also sent for review as spot checks: the client
    gets the automated answer (marked kanaria_spot_check), reviewers get the case, and
    their labels keep measuring agreement in the bands the model decides alone.
    Default 0."""
    review: ReviewSinks | None = None
    """Where review cases go. Default: none (clients hold the review case themselves)."""


# --------------------------------------------------------------------------- spec


class ModelDeploymentSpec(_Spec):
    """The desired state: which model version to serve and how to roll new ones out."""

    model_config = ConfigDict(
        json_schema_extra=_validations(
            _cel(
                "!has(self.strategy.shadow) || !has(self.strategy.shadow.graduateTo)"
                " || self.strategy.shadow.graduateTo != 'none'"
                " || has(self.strategy.shadow.duration)"
                " || (has(self.analysis) && has(self.analysis.metrics)"
                " && self.analysis.metrics.exists(m, !has(m.stages)"
                " || m.stages.exists(t, t == 'Mirroring')))",
                "spec.strategy.shadow needs a gate that applies in the Mirroring stage"
                " (spec.analysis.metrics[].stages) or a duration to end on",
                ".strategy.shadow",
            ),
            _cel(
                "!has(self.strategy.automation) || (has(self.automation)"
                " && has(self.automation.mode) && self.automation.mode != 'assist')",
                "spec.strategy.automation needs spec.automation with mode partial or full",
                ".strategy.automation",
            ),
            _cel(
                "!has(self.strategy.shadow) || !has(self.strategy.shadow.graduateTo)"
                " || self.strategy.shadow.graduateTo != 'automation' || (has(self.automation)"
                " && has(self.automation.mode) && self.automation.mode != 'assist')",
                "spec.strategy.shadow.graduateTo automation needs spec.automation with mode "
                "partial or full",
                ".strategy.shadow",
            ),
            _cel(
                "!has(self.strategy.automation) || !has(self.automation)"
                " || self.strategy.automation.steps.all(s, !has(s.setThreshold)"
                " || s.setThreshold >= (has(self.automation.threshold)"
                " ? self.automation.threshold : 0.9))",
                "spec.strategy.automation.steps[].setThreshold must not be below "
                "spec.automation.threshold (the floor)",
                ".strategy.automation",
            ),
            _cel(
                "!has(self.strategy.shadow) || !has(self.strategy.shadow.automation)"
                " || !has(self.automation)"
                " || self.strategy.shadow.automation.steps.all(s, !has(s.setThreshold)"
                " || s.setThreshold >= (has(self.automation.threshold)"
                " ? self.automation.threshold : 0.9))",
                "spec.strategy.shadow.automation.steps[].setThreshold must not be below "
                "spec.automation.threshold (the floor)",
                ".strategy.shadow",
            ),
        )
    )

    model: ModelSource
    """The model version to serve; changing it starts a rollout."""
    replicas: int = Field(default=1, ge=1, le=1000)
    """Model-server replicas of the stable version (and of a blue-green candidate). Default 1."""
    resources: ResourceList | None = None
    """Resources of each model-server container (Kubernetes). Default: none."""
    server: ServerSpec = ServerSpec()
    """Model-server settings."""
    router: RouterSpec = RouterSpec()
    """Router settings."""
    strategy: Strategy
    """How new versions are rolled out."""
    analysis: Analysis = Analysis()
    """Metric gates and their limits."""
    retraining: Retraining | None = None
    """Retraining hook. Default: none."""
    automation: Automation | None = None
    """Degrees of automation (assist, partial, full) and where review cases go. Default:
    none (every prediction is the model's decision, as before)."""

    @model_validator(mode="after")
    def _ungraduated_shadow_has_an_end(self) -> ModelDeploymentSpec:
        shadow = self.strategy.shadow
        # Without gates or a duration, a shadow would "pass" on no evidence at all.
        if (
            shadow is not None
            and shadow.graduateTo == "none"
            and shadow.duration is None
            and not any(m.stages is None or "Mirroring" in m.stages for m in self.analysis.metrics)
        ):
            raise ValueError(
                "strategy.shadow needs a gate that applies in the Mirroring stage "
                "(analysis.metrics[].stages) or a duration to end on"
            )
        ramp = self.strategy.automation_ramp
        if ramp is not None:
            if self.automation is None or self.automation.mode == "assist":
                raise ValueError(
                    "strategy.automation needs spec.automation with mode partial or full"
                )
            floor = self.automation.threshold
            low = [s.setThreshold for s in ramp.steps if s.setThreshold is not None]
            if any(t < floor for t in low):
                raise ValueError(
                    f"strategy.automation.steps[].setThreshold must not be below "
                    f"automation.threshold {floor:g} (the floor)"
                )
        return self


# --------------------------------------------------------------------------- status


class Verdict(StrEnum):
    """Outcome of one measurement."""

    Successful = "Successful"
    Failed = "Failed"
    Inconclusive = "Inconclusive"
    Error = "Error"


class Phase(StrEnum):
    """Where a ModelDeployment is."""

    Pending = "Pending"
    """Nothing decided yet."""
    Healthy = "Healthy"
    """Only the stable version serves, and it is Ready."""
    Degraded = "Degraded"
    """Only the stable version serves, and it is not Ready."""
    Progressing = "Progressing"
    """A rollout moves forward."""
    Paused = "Paused"
    """A rollout waits for a person (pause step, manual pause, inconclusive analysis)."""
    Promoting = "Promoting"
    """The candidate is being made the stable version (scaled up, switched, old kept warm)."""
    RolledBack = "RolledBack"
    """The candidate failed or was aborted: 100% on stable. `kanaria retry` starts again."""


class VersionRef(_Status):
    """A model version as the engine tracks it."""

    version: str
    """Version name."""
    uri: str
    """Where the ONNX file is."""
    sha256: str | None = None
    """Expected SHA-256, if given."""
    referenceProfile: str | None = None
    """Reference input profile URI, if given."""
    server: ServerSpec | None = None
    """Model-server settings this version runs with, pinned when it started
    (absent in statuses written before they were pinned: spec.server then)."""

    @classmethod
    def of(cls, model: ModelSource, server: ServerSpec | None = None) -> VersionRef:
        """The reference for a spec's model, with the server settings it starts with."""
        return cls(
            version=model.version,
            uri=model.uri,
            sha256=model.sha256,
            referenceProfile=model.referenceProfile,
            server=server,
        )

    def same(self, other: VersionRef | None) -> bool:
        """True if ``other`` names the same artifact (server settings aside)."""
        return other is not None and self.model_dump(exclude={"server"}) == other.model_dump(
            exclude={"server"}
        )


class VersionRole(StrEnum):
    stable = "stable"
    candidate = "candidate"


class LiveVersion(_Status):
    """A version that should be running, and at what size."""

    version: str
    """Version name."""
    uri: str
    """Where the ONNX file is."""
    sha256: str | None = None
    """Expected SHA-256, if given."""
    referenceProfile: str | None = None
    """Reference input profile URI, if given."""
    server: ServerSpec | None = None
    """Model-server settings pinned for this version (absent: spec.server)."""
    role: VersionRole
    """stable or candidate."""
    replicas: int
    """Desired model-server replicas."""


class Condition(_Status):
    """A Kubernetes-style condition."""

    type: str
    """Available, Progressing, Paused, DriftDetected."""
    status: Literal["True", "False", "Unknown"]
    """True, False or Unknown."""
    reason: str = ""
    """CamelCase reason."""
    message: str = ""
    """Human-readable detail."""
    lastTransitionTime: datetime | None = None
    """When status last changed."""


class VersionEvidence(_Status):
    """One version's side of a comparison."""

    version: str
    """Version name."""
    requests: float
    """Observations since the window began (requests, labels, outputs)."""
    events: float | None = None
    """Of those, the ones counted against it (5xx, incorrect); none for latency."""
    estimate: float | None = None
    """Its own value: the failing share, the latency quantile (seconds), or the class
    share the comparison turned on."""


class Comparison(_Status):
    """Why a compare gate decided: the evidence a person needs to check it."""

    test: Literal["difference", "ratio", "quantileRatio", "rank", "shares"]
    """difference: failing shares, candidate minus stable; ratio: candidate over stable
    (relative margin); quantileRatio: latency quantile, candidate over stable; rank:
    P(candidate slower) - 1/2 from the histograms; shares: output class share,
    candidate minus stable, for the class furthest apart."""
    candidate: VersionEvidence
    """The candidate's counts and estimate."""
    stable: VersionEvidence
    """The stable version's counts and estimate."""
    estimate: float | None = None
    """The compared quantity (see test)."""
    lower: float | None = None
    """Lower end of its confidence sequence at this look."""
    upper: float | None = None
    """Upper end of its confidence sequence at this look."""
    limit: float
    """What the interval is held against: the margin (difference, rank, shares) or
    1 + margin (ratios). Above it with confidence: Failed; below: Successful."""
    statistic: float | None = None
    """Distance of the estimate from the limit in standard errors (z)."""
    boundary: float | None = None
    """The z a verdict needs at this sample size (the sequence's half-width in
    standard errors); it grows slowly with the data so every look stays valid."""
    confidence: float
    """Confidence of this window's sequence (the gate's confidence shared among the
    windows of the rollout)."""
    minSampleSize: int | None = None
    """Candidate observations the margin needs for a verdict with the gate's power
    (estimated from the stable's data); none when no size is enough."""
    since: datetime | None = None
    """When the counted window began (the current step or stage)."""
    note: str = ""
    """What else to know (e.g. which output class)."""


class Measurement(_Status):
    """One gate measurement, kept in status so a user can see why a rollout moved."""

    metric: str
    """Gate name (spec.analysis.metrics[].name, or retraining)."""
    version: str
    """Measured version."""
    query: str = ""
    """The resolved query that was run."""
    value: float | None = None
    """The measured value (none when there was no data or an error)."""
    verdict: Verdict
    """Successful, Failed, Inconclusive or Error."""
    reason: str = ""
    """Why (e.g. 'value 0.93 < min 0.99', 'only 12 requests (< minRequests 50)')."""
    time: datetime
    """When it was measured."""
    comparison: Comparison | None = None
    """A compare gate's evidence: both versions' counts and estimates, the difference
    with its interval, the statistic and the boundary it must cross."""


class GateCounters(_Status):
    """Per-gate verdict counters for the current rollout."""

    failed: int = 0
    """Failed measurements since the rollout (or retry) started."""
    consecutiveInconclusive: int = 0
    """Inconclusive measurements in a row."""
    consecutiveErrors: int = 0
    """Error measurements in a row."""


class MirrorStatus(_Status):
    """Mirrored traffic to a version."""

    version: str
    """The version receiving copies."""
    percent: float
    """Percentage of live requests copied."""


class AutomationStatus(_Status):
    """The degree of automation in force, and how far a ramp got."""

    version: str
    """The version it applies to (a ramp's candidate, then the stable it became)."""
    mode: AutomationMode
    """assist, partial or full."""
    threshold: float = 1.0
    """Confidence at or above which predictions are automated (partial)."""
    safeThreshold: float | None = None
    """The last threshold whose analysis passed (None: assist was the last safe step); a
    failing automation gate moves back here in one move."""
    nextThreshold: float | None = None
    """The threshold of the next setThreshold step: reviewerAgreement is measured on the
    band [nextThreshold, threshold)."""
    fallbacks: int = 0
    """How many times the threshold was moved back in this ramp."""


class ModelDeploymentStatus(_Status):
    """Everything the engine knows: a restarted operator continues from here."""

    phase: Phase = Phase.Pending
    """Pending, Healthy, Degraded, Progressing, Paused, Promoting or RolledBack."""
    message: str = ""
    """What is happening, in a sentence."""
    observedGeneration: int | None = None
    """metadata.generation of the spec this status reflects."""
    target: VersionRef | None = None
    """The spec.model the engine last acted on; a different spec.model starts a rollout."""
    stable: VersionRef | None = None
    """The version serving (or falling back to) production traffic."""
    candidate: VersionRef | None = None
    """The version being rolled out (or just rolled back)."""
    strategy: Literal["canary", "blueGreen", "shadow", "automation"] | None = None
    """Strategy the current rollout uses (a graduated shadow becomes canary or blueGreen)."""
    stage: RolloutStage | None = None
    """Stage of the rollout: Mirroring, Preview, Steps, Switching or PostPromotion
    (spec.analysis.metrics[].stages names these)."""
    currentStep: int | None = None
    """Index of the current canary step (len(steps) once all steps are done)."""
    stepWeight: int = 0
    """Candidate weight the current step asks for (applied once the candidate is Ready)."""
    weight: int = 0
    """Percentage of traffic currently sent to the candidate."""
    weights: dict[str, int] = {}
    """Weight per live version; sums to 100."""
    mirror: MirrorStatus | None = None
    """Mirrored traffic, if any."""
    automation: AutomationStatus | None = None
    """The degree of automation an automation ramp set (kept after it ends)."""
    versions: list[LiveVersion] = Field(default=[], max_length=4)
    """Versions that should be running and their sizes (stable first)."""
    stepStartedAt: datetime | None = None
    """When the current step or stage started."""
    pausedAt: datetime | None = None
    """When the rollout paused."""
    pauseReason: str | None = None
    """Why: PauseStep, Manual, InconclusiveAnalysis, AwaitingPromotion."""
    switchedAt: datetime | None = None
    """Blue-green: when traffic switched to the candidate (old kept warm since)."""
    analysisStartedAt: datetime | None = None
    """When the candidate first had traffic (or an analysis stage began) in this rollout:
    the first analysis round is due one interval later."""
    lastAnalysisAt: datetime | None = None
    """When the last analysis round was taken."""
    lastRoundVerdict: Verdict | None = None
    """Worst verdict of the last analysis round in this rollout (none before the first)."""
    successfulRounds: int = 0
    """Consecutive all-Successful analysis rounds in the current step or stage."""
    gates: dict[str, GateCounters] = {}
    """Verdict counters per gate for the current rollout."""
    measurements: list[Measurement] = Field(default=[], max_length=50)
    """The most recent measurements (newest last)."""
    lastCommand: str | None = None
    """Nonce of the last manual command applied (so it is applied once)."""
    lastRetrainCheckAt: datetime | None = None
    """When the retraining metric was last measured."""
    driftSince: datetime | None = None
    """Since when the retraining metric has been crossing its threshold."""
    lastRetrainAt: datetime | None = None
    """When retraining was last requested."""
    conditions: list[Condition] = Field(default=[], max_length=8)
    """Available, Progressing, Paused, DriftDetected."""


# --------------------------------------------------------------------------- the resource


class ObjectMeta(BaseModel):
    """The parts of Kubernetes metadata Kanaria reads; other keys are kept as they are."""

    model_config = ConfigDict(extra="allow", use_attribute_docstrings=True)

    name: str = Field(pattern=NAME_PATTERN, max_length=63)
    """Name of the ModelDeployment; also the model name in /v2/models/{name}."""
    namespace: str | None = Field(default=None, pattern=NAME_PATTERN, max_length=63)
    """Kubernetes namespace; empty locally."""
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}
    generation: int | None = None


class ModelDeployment(BaseModel):
    """A model served by Kanaria and rolled out progressively."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    apiVersion: Literal["kanaria.io/v1alpha1"] = API_VERSION
    """kanaria.io/v1alpha1."""
    kind: Literal["ModelDeployment"] = KIND
    """ModelDeployment."""
    metadata: ObjectMeta
    """Name and namespace."""
    spec: ModelDeploymentSpec
    """Desired state."""
    status: ModelDeploymentStatus | None = None
    """Observed state, written by the engine."""


# --------------------------------------------------------------------------- loading files


class ManifestError(ValueError):
    """A ModelDeployment file that cannot be used; ``str()`` lists each problem by field."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: invalid ModelDeployment:\n  " + "\n  ".join(problems))


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out or "(document)"


def _message(err: ErrorDetails) -> str:
    ctx = err.get("ctx") or {}
    kind = err["type"]
    if kind == "less_than_equal":
        return f"must be <= {ctx['le']}"
    if kind == "greater_than_equal":
        return f"must be >= {ctx['ge']}"
    if kind == "less_than":
        return f"must be < {ctx['lt']}"
    if kind == "greater_than":
        return f"must be > {ctx['gt']}"
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        return "unknown field (check the spelling; fields are camelCase)"
    if kind == "string_pattern_mismatch":
        return f"{err['input']!r} does not match {ctx['pattern']}"
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    return str(err["msg"])


def _loc(err: ErrorDetails) -> tuple[int | str, ...]:
    # Drop pydantic's internal loc parts for tagged unions and function validators.
    return tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))


def problems_of(exc: ValidationError) -> list[str]:
    """One ``field.path: message`` line per validation error."""
    return [f"{_path(_loc(e))}: {_message(e)}" for e in exc.errors()]


def parse_model_deployment(text: str, source: str = "<input>") -> ModelDeployment:
    """Validate a YAML (or JSON) document holding one ModelDeployment."""
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise ManifestError(source, [f"not valid YAML: {exc}"]) from exc
    if len(docs) != 1:
        raise ManifestError(source, [f"expected exactly one document, found {len(docs)}"])
    doc = docs[0]
    if not isinstance(doc, dict):
        raise ManifestError(source, ["(document): must be a mapping with apiVersion, kind, spec"])
    try:
        return ModelDeployment.model_validate(doc)
    except ValidationError as exc:
        raise ManifestError(source, problems_of(exc)) from exc


def load_model_deployment(path: str | Path) -> ModelDeployment:
    """Read and validate a ModelDeployment file (``kanaria up -f`` / ``kanaria apply -f``)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ManifestError(str(p), [f"cannot read file: {exc.strerror or exc}"]) from exc
    return parse_model_deployment(text, str(p))
