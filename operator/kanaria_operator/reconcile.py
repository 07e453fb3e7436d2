"""One operator pass over a ModelDeployment: observe, decide, apply, record.

1. read the object; a spec the models reject becomes an ``InvalidSpec``
   condition and a Warning Event (the CRD catches most mistakes first);
2. observe: readiness of each version's Deployment, the measurements the
   engine asked for (``plan_measurements`` -> ``kanaria.analysis``), a new
   manual command from the ``kanaria.io/command`` annotation;
3. ``kanaria.rollout.decide`` -- the same engine as ``kanaria up``;
4. apply ``decision.status``: server-side apply of every desired object
   (version Deployments at their sizes, the routes ConfigMap, the router),
   deletion of versions the engine dropped (after the routes moved away),
   the retraining webhook and Jobs;
5. write the status once (status subresource), post the engine's Events,
   update the operator's metrics.

Nothing is remembered between passes except caches that only save API calls:
all rollout state is in ``status``, so another operator (or this one after a
restart) continues where this one stopped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from kanaria_operator import metrics
from kanaria_operator.kubeio import Kube, summary
from kanaria_operator.objects import (
    LABEL_COMPONENT,
    LABEL_MD,
    Images,
    Owner,
    desired_objects,
    retraining_job,
    version_name,
)
from kanaria_operator.routing import build_routes
from kubernetes.dynamic.exceptions import DynamicApiError
from pydantic import ValidationError

from kanaria.api import (
    COMMAND_ANNOTATION,
    Condition,
    Measurement,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    problems_of,
)
from kanaria.logtail import last_error_line
from kanaria.retraining import request_retraining
from kanaria.rollout import (
    COMMAND_VERBS,
    Command,
    Decision,
    MeasurementRequest,
    Observations,
    Retrain,
    VersionObservation,
    decide,
    plan_measurements,
)

log = logging.getLogger(__name__)

Measure = Callable[[MeasurementRequest, Owner, datetime], Measurement]
"""Takes one measurement the engine asked for (Prometheus through kanaria.analysis)."""

INVALID_SPEC = "InvalidSpec"
REAPPLY_AFTER_S = 60.0
"""Unchanged objects are re-applied this often anyway, to undo manual edits."""
URI_CHECK_TTL_S = 300.0
TRANSIENT = frozenset({401, 403, 404, 409, 429, 503, 504})
"""API errors that say nothing about the spec (auth, races, overload): retried quietly."""


def cluster_auth_problem(spec: ModelDeploymentSpec) -> str | None:
    """``spec.router.auth`` a cluster cannot honour, which would leave the router open.

    ``auth.tokensFile`` is for ``kanaria up``; in a cluster the tokens come from
    ``auth.secretName``. Asked for authentication and given no Secret, the operator
    refuses to act rather than serve the model to anyone.
    """
    auth = spec.router.auth
    if auth is None or auth.secretName:
        return None
    return (
        "spec.router.auth: set secretName (a Secret whose 'tokens' key lists accepted "
        "tokens, one per line); tokensFile only applies to kanaria up, and without a "
        "Secret the router would accept requests without a token"
    )


def parse_command(value: str | None) -> Command | str | None:
    """The ``kanaria.io/command`` annotation as a Command, or an error message."""
    if not value:
        return None
    parts = value.split()
    if len(parts) != 2:
        return f"annotation {COMMAND_ANNOTATION}={value!r}: expected '<verb> <nonce>'"
    verb, nonce = parts
    if verb not in COMMAND_VERBS:
        return (
            f"annotation {COMMAND_ANNOTATION}={value!r}: unknown verb {verb!r} "
            f"(one of {', '.join(COMMAND_VERBS)})"
        )
    try:
        return Command.model_validate({"verb": verb, "nonce": nonce})
    except ValidationError as exc:
        return f"annotation {COMMAND_ANNOTATION}={value!r}: {exc.errors()[0]['msg']}"


def set_condition(
    status: dict[str, Any], type_: str, ok: bool, reason: str, message: str, now: datetime
) -> None:
    """Set a condition in a raw status dict (used where the engine did not run)."""
    value = "True" if ok else "False"
    conditions = [c for c in status.get("conditions") or [] if c.get("type") != type_]
    old: dict[str, Any] = next(
        (c for c in status.get("conditions") or [] if c.get("type") == type_), {}
    )
    since = now if old.get("status") != value else old.get("lastTransitionTime", now)
    conditions.append(
        Condition.model_validate(
            {
                "type": type_,
                "status": value,
                "reason": reason,
                "message": message[:1000],
                "lastTransitionTime": since,
            }
        ).model_dump(mode="json", exclude_none=True)
    )
    status["conditions"] = conditions


STUCK_REASONS = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "ErrImageNeverPull",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)
"""Waiting reasons of a container that cannot start without a change."""
PROBLEM_CHARS = 400


def _clip(text: str) -> str:
    return text if len(text) <= PROBLEM_CHARS else text[: PROBLEM_CHARS - 1] + "…"


def pod_problem(pods: list[dict[str, Any]]) -> str | None:
    """Why a version's pods do not run, from their container statuses.

    A container that keeps exiting reads "exited with code N: <the line of its log
    naming the error>" (the termination message holds its last log lines:
    FallbackToLogsOnError), the same text between restarts and in CrashLoopBackOff,
    and the same text ``kanaria up`` shows for a model-server process.
    """
    for pod in pods:
        st = pod.get("status") or {}
        for cs in st.get("containerStatuses") or []:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            reason = waiting.get("reason")
            if reason in STUCK_REASONS:
                detail = " ".join(str(waiting.get("message") or "").split())
                return _clip(f"{reason} ({detail})" if detail else str(reason))
            last = (cs.get("lastState") or {}).get("terminated") or {}
            if not cs.get("ready") and last.get("exitCode") is not None:
                line = last_error_line(str(last.get("message") or ""))
                return _clip(f"exited with code {last['exitCode']}" + (f": {line}" if line else ""))
        for cond in st.get("conditions") or []:
            if cond.get("type") == "PodScheduled" and cond.get("reason") == "Unschedulable":
                return _clip(f"Unschedulable ({cond.get('message', '')})")
    return None


def version_observation(
    deployment: dict[str, Any] | None, pods: list[dict[str, Any]] | None = None
) -> VersionObservation:
    """Readiness of a version from its Deployment's status (and, when it has no ready
    replica, why not, from its pods)."""
    if deployment is None:
        return VersionObservation(ready=False, readyReplicas=0)
    st = deployment.get("status") or {}
    ready = int(st.get("readyReplicas") or 0)
    available = int(st.get("availableReplicas") or 0)
    is_ready = min(ready, available) >= 1
    problem = None if is_ready else pod_problem(pods or [])
    return VersionObservation(ready=is_ready, readyReplicas=ready, problem=problem)


def _digest(obj: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


@dataclass
class _Memory:
    """Per-ModelDeployment caches that only save API calls; losing them is harmless."""

    applied: dict[tuple[str, str], tuple[str, float]] = field(default_factory=dict)
    rejected_commands: set[str] = field(default_factory=set)


class Reconciler:
    """Runs passes; one instance per operator process, shared by all ModelDeployments."""

    def __init__(
        self,
        kube: Kube,
        images: Images,
        measure: Measure,
        resync_interval_s: float,
        check_model_uris: bool = True,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.kube = kube
        self.images = images
        self.measure = measure
        self.resync_interval_s = resync_interval_s
        self.check_model_uris = check_model_uris
        self.clock = clock
        self._memory: dict[tuple[str, str], _Memory] = {}
        self._uri_checks: dict[str, tuple[str | None, float]] = {}

    def forget(self, namespace: str, name: str) -> None:
        """The ModelDeployment is gone: drop caches and its metrics."""
        self._memory.pop((namespace, name), None)
        metrics.LOOP.forget(namespace, name)

    # ------------------------------------------------------------------ the pass

    def run_pass(self, name: str, namespace: str) -> float:
        """One pass; returns the seconds until the next one. Never raises for bad input."""
        started = time.perf_counter()
        try:
            return self._pass(name, namespace)
        except DynamicApiError as exc:
            log.warning("%s/%s: API error, retrying next pass: %s", namespace, name, summary(exc))
            return min(5.0, self.resync_interval_s)
        except Exception:  # a bug or an outage must not kill the daemon: log, retry soon
            log.exception("%s/%s: pass failed, retrying", namespace, name)
            return min(5.0, self.resync_interval_s)
        finally:
            metrics.LOOP.observe_latency(time.perf_counter() - started)

    def _pass(self, name: str, namespace: str) -> float:
        obj = self.kube.get_model_deployment(name, namespace)
        if obj is None or obj["metadata"].get("deletionTimestamp"):
            return self.resync_interval_s
        meta = obj["metadata"]
        owner = Owner(name=name, namespace=namespace, uid=meta["uid"])
        memory = self._memory.setdefault((namespace, name), _Memory())
        now = self.clock()
        raw_status: dict[str, Any] = dict(obj.get("status") or {})
        try:
            spec = ModelDeploymentSpec.model_validate(obj.get("spec") or {})
        except ValidationError as exc:
            self._invalid(obj, raw_status, "SpecRejected", "; ".join(problems_of(exc)), now)
            return self.resync_interval_s
        open_router = cluster_auth_problem(spec)
        if open_router is not None:
            self._invalid(obj, raw_status, "AuthWithoutSecret", open_router, now)
            return self.resync_interval_s
        try:
            status: ModelDeploymentStatus | None = ModelDeploymentStatus.model_validate(raw_status)
        except ValidationError as exc:
            log.warning("%s/%s: unreadable status, starting over: %s", namespace, name, exc)
            self.kube.event(obj, "StatusReset", f"status could not be read: {exc}", warning=True)
            status = None
        if status is not None:
            status.conditions = [c for c in status.conditions if c.type != INVALID_SPEC]

        observations = self._observe(obj, owner, spec, status, memory, now)
        decision = decide(spec, status, observations, now)
        ready = {v: o.ready for v, o in observations.versions.items()}
        problem = self._apply(obj, owner, spec, decision, ready, memory)
        new_status = decision.status.model_dump(mode="json", exclude_none=True)
        if problem is None and self.check_model_uris:
            problem = self._unreachable_models(decision.status)
        if problem is not None:
            reason, message = problem
            set_condition(new_status, INVALID_SPEC, True, reason, message, now)
            if raw_status.get("conditions") != new_status["conditions"]:
                self.kube.event(obj, reason, message, warning=True)
        self.kube.patch_status(name, namespace, new_status, old=raw_status)
        for event in decision.events:
            self.kube.event(obj, event.reason, event.message, warning=event.type == "Warning")
        metrics.LOOP.record_pass(namespace, name, observations, decision, now.timestamp())
        return min(spec.analysis.interval_seconds, self.resync_interval_s)

    # ------------------------------------------------------------------ observe

    def _pods_if_unready(
        self, owner: Owner, version: str, deployment: dict[str, Any] | None
    ) -> list[dict[str, Any]]:
        """A version's pods, read only while it has no ready replica (to say why)."""
        if deployment is None or version_observation(deployment).ready:
            return []
        selector = ",".join(
            f"{k}={v}" for k, v in deployment["spec"]["selector"]["matchLabels"].items()
        )
        return self.kube.list(self.kube.resource("v1", "Pod"), owner.namespace, selector)

    def _observe(
        self,
        obj: dict[str, Any],
        owner: Owner,
        spec: ModelDeploymentSpec,
        status: ModelDeploymentStatus | None,
        memory: _Memory,
        now: datetime,
    ) -> Observations:
        deployments = self.kube.resource("apps/v1", "Deployment")
        names = {v.version for v in (status.versions if status else [])}
        names.add(spec.model.version)
        versions: dict[str, VersionObservation] = {}
        for v in sorted(names):
            found = self.kube.get_or_none(deployments, version_name(owner.name, v), owner.namespace)
            if found is None:  # deleted behind our back: apply it again this pass
                memory.applied.pop(("Deployment", version_name(owner.name, v)), None)
            versions[v] = version_observation(found, self._pods_if_unready(owner, v, found))
        analysis: list[Measurement] = []
        retraining: Measurement | None = None
        for request in plan_measurements(spec, status, now):
            m = self.measure(request, owner, now)
            if request.purpose == "retraining":
                retraining = m
            else:
                analysis.append(m)
        command: Command | None = None
        parsed = parse_command((obj["metadata"].get("annotations") or {}).get(COMMAND_ANNOTATION))
        if isinstance(parsed, str):
            value = obj["metadata"]["annotations"][COMMAND_ANNOTATION]
            if value not in memory.rejected_commands:
                memory.rejected_commands.add(value)
                self.kube.event(obj, "InvalidCommand", parsed, warning=True)
        else:
            command = parsed
        return Observations(
            versions=versions,
            measurements=analysis,
            retraining=retraining,
            command=command,
            generation=obj["metadata"].get("generation"),
        )

    # ------------------------------------------------------------------ apply

    def _apply(
        self,
        obj: dict[str, Any],
        owner: Owner,
        spec: ModelDeploymentSpec,
        decision: Decision,
        ready: dict[str, bool],
        memory: _Memory,
    ) -> tuple[str, str] | None:
        """Converge the cluster on ``decision.status``; returns (reason, message) if the
        API server refused an object because of what the spec says."""
        status = decision.status
        revision = f"{obj['metadata'].get('generation')}/{status.phase}/{status.currentStep}"
        routes = build_routes(owner, spec, status, ready, revision)
        desired = desired_objects(owner, spec, status.versions, routes, self.images)
        # Versions first, so the routes never point at a Service that does not exist.
        desired.sort(key=lambda o: 0 if o["metadata"].get("labels", {}).get(LABEL_COMPONENT)
                     == "model-server" else 1)  # fmt: skip
        mono = time.monotonic()
        for manifest in desired:
            key = (manifest["kind"], manifest["metadata"]["name"])
            digest = _digest(manifest)
            last = memory.applied.get(key)
            if last is not None and last[0] == digest and mono - last[1] < REAPPLY_AFTER_S:
                continue
            try:
                self.kube.apply(manifest)
            except DynamicApiError as exc:
                if exc.status in TRANSIENT:
                    raise
                # 400/422, or a 500 for values it cannot even decode (a resource
                # quantity like "lots"): what the spec asks for cannot be created.
                memory.applied.pop(key, None)
                return (
                    "ObjectRejected",
                    f"the API server refused {key[0]} {key[1]} built from the spec "
                    f"(HTTP {exc.status}): {summary(exc)}",
                )
            memory.applied[key] = (digest, mono)
        self._delete_dropped(owner, {m["metadata"]["name"] for m in desired}, memory)
        for action in decision.actions:
            if isinstance(action, Retrain):
                self._retrain(obj, owner, spec, decision.status, action, self.clock())
        return None

    def _delete_dropped(self, owner: Owner, keep: set[str], memory: _Memory) -> None:
        selector = f"{LABEL_MD}={owner.name},{LABEL_COMPONENT}=model-server"
        for api_version, kind in (("apps/v1", "Deployment"), ("v1", "Service")):
            resource = self.kube.resource(api_version, kind)
            for item in self.kube.list(resource, owner.namespace, selector):
                item_name = item["metadata"]["name"]
                if item_name not in keep:
                    log.info("%s/%s: deleting %s %s", owner.namespace, owner.name, kind, item_name)
                    self.kube.delete(resource, item_name, owner.namespace)
                    memory.applied.pop((kind, item_name), None)

    def _retrain(
        self,
        obj: dict[str, Any],
        owner: Owner,
        spec: ModelDeploymentSpec,
        status: ModelDeploymentStatus,
        action: Retrain,
        now: datetime,
    ) -> None:
        """Call the retraining webhook (the same payload as ``kanaria up``), then create a
        Job from the template, unless one is still running; each outcome is an Event."""
        called = request_retraining(owner.name, owner.namespace, spec, status, action, now)
        if called is not None:
            self.kube.event(obj, called.reason, called.message, warning=called.type == "Warning")
        rt = spec.retraining
        if rt is None or rt.jobTemplate is None:
            return
        jobs = self.kube.resource("batch/v1", "Job")
        selector = f"{LABEL_MD}={owner.name},{LABEL_COMPONENT}=retraining"
        for job in self.kube.list(jobs, owner.namespace, selector):
            finished = any(
                c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
                for c in (job.get("status") or {}).get("conditions") or []
            )
            if not finished:
                self.kube.event(
                    obj,
                    "RetrainingSkipped",
                    f"Job {job['metadata']['name']} is still running: at most one at a time",
                )
                return
        stamp = now.strftime("%Y%m%d%H%M%S")
        job = retraining_job(owner, rt.jobTemplate, stamp)
        try:
            self.kube.create(jobs, job, owner.namespace)
        except DynamicApiError as exc:
            self.kube.event(obj, "RetrainingJobFailed", summary(exc), warning=True)
            return
        self.kube.event(
            obj,
            "RetrainingJobCreated",
            f"Job {job['metadata']['name']}: {action.metric} of {action.version} is "
            f"{action.value} (threshold {action.threshold}) since {action.since.isoformat()}",
        )

    def _invalid(
        self, obj: dict[str, Any], status: dict[str, Any], reason: str, message: str, now: datetime
    ) -> None:
        """A spec only the operator could refuse: condition + Event, no crash, no actions."""
        before = json.dumps(status.get("conditions"), sort_keys=True)
        set_condition(status, INVALID_SPEC, True, reason, message, now)
        status["observedGeneration"] = obj["metadata"].get("generation")
        if json.dumps(status.get("conditions"), sort_keys=True) != before:
            self.kube.event(obj, reason, message, warning=True)
        self.kube.patch_status(obj["metadata"]["name"], obj["metadata"]["namespace"], status,
                               old=obj.get("status") or {})  # fmt: skip

    def _unreachable_models(self, status: ModelDeploymentStatus) -> tuple[str, str] | None:
        """http(s) model URIs the operator cannot reach (cached for a few minutes)."""
        for v in status.versions:
            if not v.uri.startswith(("http://", "https://")):
                continue
            cached = self._uri_checks.get(v.uri)
            if cached is None or time.monotonic() - cached[1] > URI_CHECK_TTL_S:
                cached = (self._probe(v.uri), time.monotonic())
                self._uri_checks[v.uri] = cached
            if cached[0] is not None:
                return "ModelUnreachable", f"version {v.version}: {v.uri}: {cached[0]}"
        return None

    @staticmethod
    def _probe(uri: str) -> str | None:
        try:
            response = httpx.head(uri, timeout=5.0, follow_redirects=True)
        except httpx.HTTPError as exc:
            return f"cannot connect ({exc.__class__.__name__}: {exc})"
        if response.status_code >= 400 and response.status_code != 405:
            return f"HTTP {response.status_code}"
        return None
