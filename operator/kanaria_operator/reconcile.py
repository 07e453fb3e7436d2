"""The operator's adapter for the one control loop, and its pass driver.

The pass -- measure, decide, act in a fixed order, record -- is
:func:`kanaria.loop.run_pass`, the same one ``kanaria up`` runs. Here:

- :class:`Reconciler` reads the ModelDeployment; a spec the models reject, or one only
  the operator can refuse (auth without a Secret), becomes an ``InvalidSpec``
  condition and a Warning Event, and no pass runs;
- :class:`ClusterWorld` is every Kubernetes read and write the loop asks for:
  model-server Deployments and Services (annotated with their artifact), the routes
  ConfigMap, the router's objects, the routers' confirmation of a routes revision
  (read from their pods' metrics), the status subresource, Events, retraining Jobs.

Nothing is remembered between passes except caches that only save API calls or a
grace period: all rollout state is in ``status``, so another operator (or this one
after a restart) continues where this one stopped.
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
from kanaria_operator.errors import SpecError, TemporaryError, backoff, classify
from kanaria_operator.kubeio import Kube, summary
from kanaria_operator.objects import (
    LABEL_COMPONENT,
    LABEL_MD,
    LABEL_VERSION,
    ROUTER_PORT,
    Images,
    Owner,
    retraining_job,
    router_objects,
    routes_configmap,
    routes_name,
    version_deployment,
    version_name,
    version_service,
    version_url,
)
from kubernetes.dynamic.exceptions import DynamicApiError
from pydantic import ValidationError

from kanaria.api import (
    COMMAND_ANNOTATION,
    Condition,
    LiveVersion,
    Measurement,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    problems_of,
)
from kanaria.logtail import last_error_line
from kanaria.loop import Reading, RoutesSeen, RunningVersion, World, run_pass
from kanaria.loop.identity import ARTIFACT_ANNOTATION
from kanaria.loop.routes import routed_versions, router_revisions
from kanaria.retraining import request_retraining
from kanaria.rollout import (
    COMMAND_VERBS,
    Command,
    Decision,
    MeasurementRequest,
    Observations,
    Retrain,
    VersionObservation,
)
from kanaria.routes import CONFIGMAP_KEY, RoutesConfig

log = logging.getLogger(__name__)

Measure = Callable[[MeasurementRequest, Owner, datetime], Measurement]
"""Takes one measurement the engine asked for (Prometheus through kanaria.analysis)."""

INVALID_SPEC = "InvalidSpec"
REAPPLY_AFTER_S = 60.0
"""Unchanged objects are re-applied this often anyway, to undo manual edits."""
URI_CHECK_TTL_S = 300.0
REFUSED = frozenset({400, 422, 500})
"""API answers to an object built from the spec that mean the spec is at fault: invalid
(400/422), or a value the API server cannot even decode (a quantity like "lots": 500)."""


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
class Memory:
    """Per-ModelDeployment caches that only save API calls or time; losing them is
    harmless (a re-apply, or one grace period before a stop)."""

    applied: dict[tuple[str, str], tuple[str, float]] = field(default_factory=dict)
    rejected_commands: set[str] = field(default_factory=set)
    routes_seen: dict[str, float] = field(default_factory=dict)
    """Routes revision -> when this operator first saw it written (monotonic)."""
    failures: int = 0
    """Temporary failures in a row (the backoff's index); a good pass resets it."""
    last_failure: str | None = None
    """The last temporary failure an Event was posted for (one Event per new one)."""


def routes_revision(configmap: dict[str, Any] | None) -> RoutesConfig | None:
    """The routes document in the routes ConfigMap, if it holds a valid one."""
    text = ((configmap or {}).get("data") or {}).get(CONFIGMAP_KEY)
    if not text:
        return None
    try:
        return RoutesConfig.from_yaml(text)
    except ValueError:
        return None


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
        router_metrics: Callable[[str], str | None] | None = None,
    ) -> None:
        self.kube = kube
        self.images = images
        self.measure = measure
        self.resync_interval_s = resync_interval_s
        self.check_model_uris = check_model_uris
        self.clock = clock
        self.router_metrics = router_metrics or _fetch_metrics
        """Reads a router pod's /metrics (its URL in, text out; None if unreachable)."""
        self._memory: dict[tuple[str, str], Memory] = {}
        self._uri_checks: dict[str, tuple[str | None, float]] = {}

    def forget(self, namespace: str, name: str) -> None:
        """The ModelDeployment is gone: drop caches and its metrics."""
        self._memory.pop((namespace, name), None)
        metrics.LOOP.forget(namespace, name)

    # ------------------------------------------------------------------ the pass

    def run_pass(self, name: str, namespace: str) -> float:
        """One pass; returns the seconds until the next one. Never raises: a temporary
        failure is retried after a growing delay (kanaria_operator.errors.BACKOFF_S) and
        posted as a Warning Event once per new reason."""
        started = time.perf_counter()
        memory = self._memory.setdefault((namespace, name), Memory())
        try:
            wait = self._pass(name, namespace, memory)
        except Exception as exc:  # the daemon must survive anything: classify, back off
            error = classify(exc)
            if isinstance(error, SpecError):  # raised where only a person can help
                log.warning("%s/%s: %s", namespace, name, error)
                return self.resync_interval_s
            memory.failures += 1
            delay = min(backoff(memory.failures), self.resync_interval_s)
            if error.reason == "PassFailed":
                log.exception("%s/%s: pass failed, retrying in %gs", namespace, name, delay)
            else:
                log.warning("%s/%s: %s; retrying in %gs", namespace, name, error, delay)
            self._failure_event(name, namespace, memory, error, delay)
            return delay
        else:
            memory.failures = 0
            memory.last_failure = None
            return wait
        finally:
            metrics.LOOP.observe_latency(time.perf_counter() - started)

    def _failure_event(
        self, name: str, namespace: str, memory: Memory, error: TemporaryError, delay: float
    ) -> None:
        """One Warning Event per new temporary failure (not one per retry)."""
        text = str(error)
        if text == memory.last_failure:
            return
        memory.last_failure = text
        try:
            obj = self.kube.get_model_deployment(name, namespace)
            if obj is not None:
                message = f"{error.message} (retrying in {delay:g}s, then with backoff)"
                self.kube.event(obj, error.reason, message, warning=True)
        except Exception as exc:  # the API is what failed: the log line has said it
            log.debug("%s/%s: no Event for %s: %s", namespace, name, error.reason, exc)

    def _pass(self, name: str, namespace: str, memory: Memory) -> float:
        obj = self.kube.get_model_deployment(name, namespace)
        if obj is None or obj["metadata"].get("deletionTimestamp"):
            return self.resync_interval_s
        meta = obj["metadata"]
        owner = Owner(name=name, namespace=namespace, uid=meta["uid"])
        now = self.clock()
        raw_status: dict[str, Any] = dict(obj.get("status") or {})
        try:
            spec = ModelDeploymentSpec.model_validate(obj.get("spec") or {})
        except ValidationError as exc:
            spec_error = SpecError("SpecRejected", "; ".join(problems_of(exc)))
            self._invalid(obj, raw_status, spec_error, now)
            return self.resync_interval_s
        open_router = cluster_auth_problem(spec)
        if open_router is not None:
            self._invalid(obj, raw_status, SpecError("AuthWithoutSecret", open_router), now)
            return self.resync_interval_s
        try:
            status: ModelDeploymentStatus | None = ModelDeploymentStatus.model_validate(raw_status)
        except ValidationError as exc:
            log.warning("%s/%s: unreadable status, starting over: %s", namespace, name, exc)
            self.kube.event(obj, "StatusReset", f"status could not be read: {exc}", warning=True)
            status = None
        if status is not None:
            status.conditions = [c for c in status.conditions if c.type != INVALID_SPEC]
        world = ClusterWorld(self, obj, owner, memory, raw_status)
        outcome = run_pass(world, spec, status, now)
        wait = self.resync_interval_s
        if outcome.next_pass_at is not None:
            wait = min(wait, max(0.0, (outcome.next_pass_at - now).total_seconds()))
        return wait

    def unreachable_models(self, status: ModelDeploymentStatus) -> SpecError | None:
        """http(s) model URIs the operator cannot reach (cached for a few minutes)."""
        if not self.check_model_uris:
            return None
        for v in status.versions:
            if not v.uri.startswith(("http://", "https://")):
                continue
            cached = self._uri_checks.get(v.uri)
            if cached is None or time.monotonic() - cached[1] > URI_CHECK_TTL_S:
                cached = (self._probe(v.uri), time.monotonic())
                self._uri_checks[v.uri] = cached
            if cached[0] is not None:
                return SpecError("ModelUnreachable", f"version {v.version}: {v.uri}: {cached[0]}")
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

    def _invalid(
        self, obj: dict[str, Any], status: dict[str, Any], error: SpecError, now: datetime
    ) -> None:
        """A spec only the operator could refuse: condition + Event, no crash, no actions."""
        before = json.dumps(status.get("conditions"), sort_keys=True)
        reason, message = error.reason, error.message
        set_condition(status, INVALID_SPEC, True, reason, message, now)
        status["observedGeneration"] = obj["metadata"].get("generation")
        if json.dumps(status.get("conditions"), sort_keys=True) != before:
            self.kube.event(obj, reason, message, warning=True)
        self.kube.patch_status(obj["metadata"]["name"], obj["metadata"]["namespace"], status,
                               old=obj.get("status") or {})  # fmt: skip


ROUTER_METRICS_TIMEOUT_S = 0.5


def _fetch_metrics(url: str) -> str | None:
    try:
        response = httpx.get(url, timeout=ROUTER_METRICS_TIMEOUT_S)
    except httpx.HTTPError:
        return None
    return response.text if response.status_code == 200 else None


class ClusterWorld:
    """The operator's adapter for one pass over one ModelDeployment: every read and
    write of Kubernetes objects the loop (:func:`kanaria.loop.run_pass`) asks for."""

    def __init__(
        self,
        reconciler: Reconciler,
        obj: dict[str, Any],
        owner: Owner,
        memory: Memory,
        raw_status: dict[str, Any],
    ) -> None:
        self.r = reconciler
        self.kube = reconciler.kube
        self.obj = obj
        self.owner = owner
        self.name = owner.name
        self.namespace: str | None = owner.namespace
        self.memory = memory
        self.raw_status = raw_status
        self.problem: SpecError | None = None
        """Set when the API server refused an object built from the spec."""

    # ------------------------------------------------------------------ read

    def read(self, spec: ModelDeploymentSpec, status: ModelDeploymentStatus | None) -> Reading:
        """Every model-server Deployment of this ModelDeployment (readiness, artifact,
        replicas), the routes ConfigMap and what the routers run, the command annotation."""
        deployments = self.kube.resource("apps/v1", "Deployment")
        selector = f"{LABEL_MD}={self.owner.name},{LABEL_COMPONENT}=model-server"
        found = {
            d["metadata"].get("labels", {}).get(LABEL_VERSION, ""): d
            for d in self.kube.list(deployments, self.owner.namespace, selector)
        }
        names = {v.version for v in (status.versions if status else [])}
        names.add(spec.model.version)
        versions: dict[str, VersionObservation] = {}
        running: dict[str, RunningVersion] = {}
        for v in sorted(names | found.keys()):
            deployment = found.get(v)
            if deployment is None:  # deleted behind our back: apply it again this pass
                self.memory.applied.pop(("Deployment", version_name(self.owner.name, v)), None)
            else:
                annotations = deployment["metadata"].get("annotations") or {}
                running[v] = RunningVersion(
                    artifact=annotations.get(ARTIFACT_ANNOTATION, ""),
                    replicas=int((deployment.get("spec") or {}).get("replicas") or 0),
                )
            if v in names:
                versions[v] = version_observation(deployment, self._pods_if_unready(v, deployment))
        return Reading(
            versions=versions,
            world=World(versions=running, routes=self._routes_seen()),
            command=self._command(),
            generation=self.obj["metadata"].get("generation"),
        )

    def _pods_if_unready(self, version: str, deployment: dict[str, Any] | None) -> list[Any]:
        """A version's pods, read only while it has no ready replica (to say why)."""
        if deployment is None or version_observation(deployment).ready:
            return []
        selector = ",".join(
            f"{k}={v}" for k, v in deployment["spec"]["selector"]["matchLabels"].items()
        )
        return self.kube.list(self.kube.resource("v1", "Pod"), self.owner.namespace, selector)

    def _routes_seen(self) -> RoutesSeen:
        """The routes ConfigMap, and whether every Ready router pod runs its revision
        (``kanaria_router_routes_revision_info``); None when a router cannot be read."""
        configmaps = self.kube.resource("v1", "ConfigMap")
        written = routes_revision(
            self.kube.get_or_none(configmaps, routes_name(self.owner.name), self.owner.namespace)
        )
        if written is None:
            return RoutesSeen()
        first_seen = self.memory.routes_seen.setdefault(written.revision, time.monotonic())
        if len(self.memory.routes_seen) > 16:  # only the latest few matter
            for old in list(self.memory.routes_seen)[:-16]:
                del self.memory.routes_seen[old]
        return RoutesSeen(
            revision=written.revision,
            versions=routed_versions(written),
            confirmed=self._routers_run(written.revision),
            age_s=time.monotonic() - first_seen,
        )

    def _routers_run(self, revision: str) -> bool | None:
        pods = self.kube.list(
            self.kube.resource("v1", "Pod"),
            self.owner.namespace,
            f"{LABEL_MD}={self.owner.name},{LABEL_COMPONENT}=router",
        )
        seen = False
        for pod in pods:
            ip = (pod.get("status") or {}).get("podIP")
            if not ip or (pod["metadata"].get("deletionTimestamp")):
                continue
            text = self.r.router_metrics(f"http://{ip}:{ROUTER_PORT}/metrics")
            if text is None:
                return None
            if revision not in router_revisions(text):
                return False
            seen = True
        return True if seen else None

    def _command(self) -> Command | None:
        annotations = self.obj["metadata"].get("annotations") or {}
        parsed = parse_command(annotations.get(COMMAND_ANNOTATION))
        if isinstance(parsed, str):
            value = annotations[COMMAND_ANNOTATION]
            if value not in self.memory.rejected_commands:
                self.memory.rejected_commands.add(value)
                self.kube.event(self.obj, "InvalidCommand", parsed, warning=True)
            return None
        return parsed

    def measure(self, request: MeasurementRequest, now: datetime) -> Measurement:
        """One measurement from Prometheus (kanaria.analysis)."""
        return self.r.measure(request, self.owner, now)

    # ------------------------------------------------------------------ write

    def _apply(self, manifest: dict[str, Any]) -> None:
        """Server-side apply, skipped when this exact object was applied recently; an
        object the API server refuses for what the spec says becomes ``self.problem``."""
        key = (manifest["kind"], manifest["metadata"]["name"])
        digest = _digest(manifest)
        mono = time.monotonic()
        last = self.memory.applied.get(key)
        if last is not None and last[0] == digest and mono - last[1] < REAPPLY_AFTER_S:
            return
        try:
            self.kube.apply(manifest)
        except DynamicApiError as exc:
            if exc.status not in REFUSED:
                raise  # classified as temporary by run_pass
            self.memory.applied.pop(key, None)
            if self.problem is None:
                self.problem = SpecError(
                    "ObjectRejected",
                    f"the API server refused {key[0]} {key[1]} built from the spec "
                    f"(HTTP {exc.status}): {summary(exc)}",
                )
            return
        self.memory.applied[key] = (digest, mono)

    def start_version(self, spec: ModelDeploymentSpec, live: LiveVersion, replace: bool) -> None:
        """The version's Deployment (annotated with its artifact) and Service; a replaced
        artifact rolls the pods through the Deployment's own rolling update."""
        self._apply(version_service(self.owner, live.version))
        self._apply(version_deployment(self.owner, spec, live, self.r.images))

    def scale_version(self, spec: ModelDeploymentSpec, live: LiveVersion) -> None:
        """The version's Deployment at ``live.replicas``."""
        self._apply(version_deployment(self.owner, spec, live, self.r.images))

    def addresses(self, versions: list[str]) -> dict[str, str]:
        """Each version's Service URL (it exists from the version's first pass)."""
        return {v: version_url(self.owner, v) for v in versions}

    def write_routes(self, spec: ModelDeploymentSpec, routes: RoutesConfig) -> None:
        """The routes ConfigMap the routers watch."""
        self._apply(routes_configmap(self.owner, routes))

    def ensure_router(self, spec: ModelDeploymentSpec) -> None:
        """The router's ServiceAccount, Role, RoleBinding, Deployment and client Service."""
        for manifest in router_objects(self.owner, spec, self.r.images):
            self._apply(manifest)

    def stop_version(self, version: str) -> None:
        """Delete the version's Deployment and Service (the routers run routes without it)."""
        name = version_name(self.owner.name, version)
        for api_version, kind in (("apps/v1", "Deployment"), ("v1", "Service")):
            log.info("%s/%s: deleting %s %s", self.owner.namespace, self.owner.name, kind, name)
            self.kube.delete(self.kube.resource(api_version, kind), name, self.owner.namespace)
            self.memory.applied.pop((kind, name), None)

    def record(
        self, spec: ModelDeploymentSpec, observations: Observations, decision: Decision
    ) -> None:
        """The status written once (with InvalidSpec when an object was refused or a
        model cannot be reached), the engine's Events, the loop's metrics."""
        now = self.r.clock()
        new_status = decision.status.model_dump(mode="json", exclude_none=True)
        problem = self.problem or self.r.unreachable_models(decision.status)
        if problem is not None:
            reason, message = problem.reason, problem.message
            set_condition(new_status, INVALID_SPEC, True, reason, message, now)
            if self.raw_status.get("conditions") != new_status["conditions"]:
                self.kube.event(self.obj, reason, message, warning=True)
        self.kube.patch_status(self.owner.name, self.owner.namespace, new_status,
                               old=self.raw_status)  # fmt: skip
        for event in decision.events:
            self.kube.event(self.obj, event.reason, event.message,
                            warning=event.type == "Warning")  # fmt: skip
        metrics.LOOP.record_pass(
            self.owner.namespace, self.owner.name, observations, decision, now.timestamp()
        )

    def retrain(self, spec: ModelDeploymentSpec, decision: Decision, action: Retrain) -> None:
        """Call the retraining webhook (the same payload as ``kanaria up``), then create a
        Job from the template, unless one is still running; each outcome is an Event."""
        obj, owner, status, now = self.obj, self.owner, decision.status, self.r.clock()
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
