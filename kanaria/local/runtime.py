"""The local actuator: ``kanaria up``'s adapter for the one control loop.

The pass itself -- measure, decide, act in a fixed order, record -- is
:func:`kanaria.loop.run_pass`, the same one the operator runs. This module only
reads and writes the local world: model-server and router processes on 127.0.0.1
(:mod:`kanaria.local.supervisor`), the routes file the router watches, the state
directory (status, history, commands) and the metric source (Prometheus or the
embedded scraper).

Between passes it waits until the engine's next pass is due, waking early when a
model server's readiness changes, a command arrives or ``kanaria apply`` writes a
new spec. The runtime decides nothing itself.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
from prometheus_client import CollectorRegistry

from kanaria.api import (
    LiveVersion,
    Measurement,
    ModelDeployment,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    Verdict,
)
from kanaria.durations import parse_duration
from kanaria.local import manifest, sources
from kanaria.local import prometheus as prom
from kanaria.local.embedded import EmbeddedSource
from kanaria.local.health import Checks
from kanaria.local.scrape import Scraper, parse
from kanaria.local.statedir import (
    HistoryPoint,
    LocalState,
    StateDir,
    VersionRecord,
    atomic_write_text,
    complete_length,
    read_commands,
)
from kanaria.local.supervisor import (
    Child,
    Supervisor,
    free_port,
    pid_alive,
    port_free,
    stop_pid,
)
from kanaria.loop import (
    PassOutcome,
    Reading,
    RoutesSeen,
    RunningVersion,
    World,
    artifact_of,
    run_pass,
    server_of,
)
from kanaria.loop.routes import routed_versions, router_revisions
from kanaria.loop_metrics import LOCAL_NAMESPACE, LoopMetrics
from kanaria.retraining import request_retraining
from kanaria.rollout import (
    Command,
    Decision,
    MeasurementRequest,
    Observations,
    Retrain,
    VersionObservation,
)
from kanaria.router_process import as_flags, router_process_settings
from kanaria.routes import RoutesConfig

log = logging.getLogger("kanaria.up")

READY_TIMEOUT_S = 90.0
"""How long ``kanaria up`` waits for a process it needs before serving (model load, Prometheus)."""
IDLE_S = 5.0
"""Longest wait between two passes when the engine has nothing due."""
POLL_S = 0.25
"""How often readiness, the command file and the spec file are looked at between passes."""
DEFAULT_ROUTER_PORT = 8080


class UpError(Exception):
    """``kanaria up`` cannot start (another instance runs, a port is taken, ...)."""


@dataclass(frozen=True)
class Options:
    """How ``kanaria up`` runs (from its flags)."""

    prometheus: str | None
    """Prometheus binary, or None for the embedded metric source."""
    router_port: int | None
    """Router port; None keeps the previous run's (or 8080 the first time)."""
    python: str = sys.executable
    """Interpreter that runs ``kanaria serve-model`` and ``kanaria route``."""


def _server_name(version: str) -> str:
    return f"server-{version}"


def _health(port: int) -> str:
    return f"http://127.0.0.1:{port}/v2/health/ready"


def _no_data(request: MeasurementRequest, now: datetime, reason: str) -> Measurement:
    return Measurement(
        metric=request.gate.name,
        version=request.version,
        verdict=Verdict.Error,
        reason=reason,
        time=now,
    )


def _outcome(command: Command, decision: Decision) -> dict[str, str]:
    """What became of a manual command, from the engine's events."""
    ignored = [e.message for e in decision.events if e.reason == "CommandIgnored"]
    if ignored:
        return {"nonce": command.nonce, "outcome": "ignored", "message": ignored[0]}
    return {
        "nonce": command.nonce,
        "outcome": "applied",
        "message": f"{decision.status.phase}: {decision.status.message}",
    }


class Runtime:
    """One locally run ModelDeployment."""

    def __init__(
        self,
        state_dir: StateDir,
        md: ModelDeployment,
        document: dict[str, object],
        options: Options,
    ) -> None:
        self.dir = state_dir
        self.options = options
        self.name = md.metadata.name
        self.namespace: str | None = None  # no namespaces without a cluster
        self.supervisor = Supervisor()
        self.state = self._load_or_init(dict(document))
        self.md = ModelDeployment.model_validate(self.state.spec)
        self.scraper: Scraper | None = None
        self.source: sources.MetricSource | None = None
        self._wake = threading.Event()
        self._http = httpx.Client(timeout=2.0)
        self._last_point: HistoryPoint | None = None
        self._gave_up_logged: set[str] = set()
        self.metrics = LoopMetrics(CollectorRegistry())
        """Its own registry: only the control loop's metrics on its endpoint."""
        self._routes: RoutesConfig | None = None
        """The routes last written to the routes file (read back after a restart)."""
        self._routes_written_at = time.monotonic()
        self._ready_seen: dict[str, bool] = {}
        """Readiness per version at the last look, so a change wakes the loop."""
        self._more_commands = False
        self._replaced: dict[str, Child] = {}
        """Processes replaced by another artifact under the same version name: they keep
        serving until the new process is Ready and the router runs routes without them."""
        self.metrics_port: int | None = None
        self.checks = Checks(self.name)

    # ------------------------------------------------------------------ start

    def _load_or_init(self, document: dict[str, object]) -> LocalState:
        digest = manifest.digest(document)
        if self.dir.exists():
            state = self.dir.load()
            if state.upPid is not None and state.upPid != os.getpid() and pid_alive(state.upPid):
                raise UpError(
                    f"`kanaria up` already runs {state.name} (pid {state.upPid}, state in "
                    f"{self.dir.path}); stop it first or use another --state-dir"
                )
            if digest != state.specDigest:
                # The file given to `up` is the latest apply; unchanged, the rollout resumes.
                self.dir.write_spec(document)
        else:
            state = LocalState(name=self.name, spec=document, specDigest=digest)
            self.dir.write_spec(document)
        state.upPid = os.getpid()
        self.dir.save(state)
        return state

    def start(self) -> None:
        """Metric source first, then adopt or restart the processes the status wants.

        After a restart the versions in the saved status come back (adopted if still
        running, else started on fresh ports) before the first pass, so the engine
        sees them Ready and the rollout continues at the same step and weight.
        """
        self._start_metrics()
        port = free_port()
        try:
            self.metrics.serve(port)
            self.metrics_port = port
            log.info("%s: control-loop metrics on http://127.0.0.1:%d/metrics", self.name, port)
        except OSError as exc:
            log.warning("%s: control-loop metrics not served: %s", self.name, exc)
        status = self._status()
        wanted = [lv for lv in status.versions if lv.replicas > 0] if status else []
        for lv in wanted:
            record = self.state.versions.get(lv.version)
            name = _server_name(lv.version)
            if record is not None and record.process is not None:
                adopted = self.supervisor.adopt(
                    name, record.process, _health(record.process.port), self._log(name)
                )
                if adopted is not None:
                    log.info("%s: adopted %s (pid %d)", self.name, lv.version, adopted.pid)
                    if record.artifact is None:  # recorded before artifacts were
                        record.artifact = artifact_of(lv, self.md.spec)
                    continue
            self._start_version(lv)
        for lv in wanted:
            self.supervisor.wait_ready(_server_name(lv.version), READY_TIMEOUT_S)
        if wanted and self.dir.routes_file.exists():
            try:
                self._routes = RoutesConfig.from_yaml(self.dir.routes_file.read_text())
            except (OSError, ValueError):
                self._routes = None  # rewritten by the first pass
        if self.state.router is not None and wanted:
            adopted = self.supervisor.adopt(
                "router", self.state.router, _health(self.state.router.port), self._log("router")
            )
            if adopted is not None and self.options.router_port not in (None, adopted.port):
                self.supervisor.stop("router")
        self._update_targets()

    def _log(self, name: str) -> Path:
        return self.dir.logs / f"{name}.log"

    def _start_metrics(self) -> None:
        binary = self.options.prometheus
        if binary is None:
            self.scraper = Scraper(interval_s=prom.SCRAPE_INTERVAL_S)
            self.scraper.start()
            self.source = EmbeddedSource(self.scraper)
            self.state.metricsUrl = None
            log.info("%s: metrics: embedded scraper (no Prometheus)", self.name)
            return
        data_dir = self.dir.prometheus_dir
        prom.prepare(data_dir)
        adopted = None
        if self.state.prometheus is not None:
            adopted = self.supervisor.adopt(
                "prometheus",
                self.state.prometheus,
                f"http://127.0.0.1:{self.state.prometheus.port}/-/ready",
                self._log("prometheus"),
            )
        if adopted is None:
            port = free_port()
            self.supervisor.start(
                "prometheus",
                prom.argv(binary, data_dir, port),
                port,
                f"http://127.0.0.1:{port}/-/ready",
                self._log("prometheus"),
            )
        if not self.supervisor.wait_ready("prometheus", READY_TIMEOUT_S):
            child = self.supervisor.children.get("prometheus")
            tail = child.log_tail() if child else ""
            raise UpError(f"Prometheus did not become ready:\n{tail}")
        child = self.supervisor.children["prometheus"]
        self.state.prometheus = child.record()
        self.state.metricsUrl = f"http://127.0.0.1:{child.port}"
        self.source = sources.PrometheusSource(self.state.metricsUrl, timeout=2.0)
        log.info("%s: metrics: Prometheus at %s", self.name, self.state.metricsUrl)

    # ------------------------------------------------------------------ loop

    @property
    def interval_s(self) -> float:
        """The spec's analysis interval, in seconds."""
        return self.md.spec.analysis.interval_seconds

    @property
    def idle_s(self) -> float:
        """Longest wait between passes when nothing is due: health problems, the
        control-loop metrics and the history keep being refreshed."""
        return min(IDLE_S, self.interval_s)

    def run(self, stop: threading.Event) -> None:
        """Pass after pass until ``stop`` is set: each waits for the engine's next pass
        time, or less when something changes (:meth:`_changed`)."""
        while not stop.is_set():
            outcome = self.pass_once()
            deadline = time.monotonic() + self.idle_s
            if outcome.next_pass_at is not None:
                due_in = (outcome.next_pass_at - datetime.now(UTC)).total_seconds()
                deadline = min(deadline, time.monotonic() + max(0.0, due_in))
            while not stop.is_set() and not self._wake.is_set():
                left = deadline - time.monotonic()
                if left <= 0 or self._changed():
                    break
                stop.wait(min(POLL_S, left))
            self._wake.clear()

    def _changed(self) -> bool:
        """Is there a reason to run a pass before it is due? A model server became
        Ready or stopped being Ready, a command was appended, a spec was applied."""
        for version in self.state.versions:
            name = _server_name(version)
            if name in self.supervisor.children:
                before = self._ready_seen.get(version)
                if self.supervisor.check(name) != before:
                    return True
        if complete_length(self.dir) > self.state.commandsOffset:
            return True
        try:
            document = self.dir.read_spec()
        except ValueError:
            return False
        return document is not None and manifest.digest(document) != self.state.specDigest

    def _status(self) -> ModelDeploymentStatus | None:
        return (
            ModelDeploymentStatus.model_validate(self.state.status) if self.state.status else None
        )

    def pass_once(self) -> PassOutcome:
        """One pass of the shared loop (:func:`kanaria.loop.run_pass`) over this world."""
        started = time.monotonic()
        self._pick_up_spec()
        outcome = run_pass(self, self.md.spec, self._status(), datetime.now(UTC))
        self._update_targets()
        self.metrics.observe_latency(time.monotonic() - started)
        self.dir.save(self.state)
        if self._more_commands:
            self._wake.set()
        return outcome

    def _pick_up_spec(self) -> None:
        try:
            document = self.dir.read_spec()
        except ValueError as exc:
            log.error("%s: %s", self.name, exc)
            return
        if document is None:
            return
        digest = manifest.digest(document)
        if digest == self.state.specDigest:
            return
        try:
            md = ModelDeployment.model_validate(document)
        except ValueError as exc:
            log.error("%s: ignoring %s: %s", self.name, self.dir.spec_file, exc)
            return
        log.info(
            "%s: applied spec (model %s -> %s)",
            self.name,
            self.md.spec.model.version,
            md.spec.model.version,
        )
        self.md = md
        self.state.spec = document
        self.state.specDigest = digest
        self.state.generation += 1

    # ------------------------------------------------------------------ read (Actuator)

    def read(self, spec: ModelDeploymentSpec, status: ModelDeploymentStatus | None) -> Reading:
        """Readiness of every version process, what runs, the routes in effect, and the
        next command appended by the CLI."""
        observed: dict[str, VersionObservation] = {}
        running: dict[str, RunningVersion] = {}
        for version, record in self.state.versions.items():
            name = _server_name(version)
            child = self.supervisor.children.get(name)
            if child is None:
                continue
            ready = self.supervisor.check(name)
            self._ready_seen[version] = ready
            observed[version] = VersionObservation(
                ready=ready, problem=None if ready else child.problem()
            )
            running[version] = RunningVersion(record.artifact or "", record.replicas)
            self._note_health(version, record, child)
        for name in ("router", "prometheus"):
            if name in self.supervisor.children:
                self.supervisor.check(name)
        routes = self._routes_seen()
        self._retire_replaced(routes)
        for version in self._replaced:
            if version in observed and not observed[version].ready:
                observed[version] = VersionObservation(ready=True)  # the old process serves
        command = None
        pending = read_commands(self.dir, self.state.commandsOffset)
        if pending:
            verb, nonce, offset = pending[0]
            command = Command.model_validate({"verb": verb, "nonce": nonce})
            self.state.commandsOffset = offset
            log.info("%s: command %s (%s)", self.name, verb, nonce)
        else:
            self.state.commandsOffset = max(self.state.commandsOffset, complete_length(self.dir))
        self._more_commands = len(pending) > 1
        return Reading(
            versions=observed,
            world=World(versions=running, routes=routes),
            command=command,
            generation=self.state.generation,
        )

    def _retire_replaced(self, routes: RoutesSeen) -> None:
        """Stop each replaced process once the routes in effect no longer point at it."""
        for version, old in list(self._replaced.items()):
            address = f"http://127.0.0.1:{old.port}"
            routed = self._routes is not None and any(
                str(backend.url).rstrip("/") == address
                for model in self._routes.models.values()
                for backend in model.versions.values()
            )
            if not routed and routes.settled():
                log.info("%s: stopping the replaced process of %s", self.name, version)
                stop_pid(old.pid, 10.0, old.popen)
                del self._replaced[version]

    def _note_health(self, version: str, record: VersionRecord, child: Child) -> None:
        """Record what ``kanaria status`` shows for a version process (and log once that
        the supervisor gave up restarting it)."""
        name = _server_name(version)
        if child.gave_up:
            record.health = "down"
            if name not in self._gave_up_logged:
                self._gave_up_logged.add(name)
                log.error(
                    "%s: %s keeps exiting; left down. Last log lines:\n%s",
                    self.name,
                    name,
                    child.log_tail(),
                )
        elif child.ready:
            record.health = "ready"
        else:
            record.health = "restarting" if child.restarts else "starting"
        record.process = child.record()

    def _routes_seen(self) -> RoutesSeen:
        """The routes file as last written, and whether the router runs it (its
        ``kanaria_router_routes_revision_info``)."""
        if self._routes is None:
            return RoutesSeen()
        confirmed: bool | None = None
        text = self._router_metrics_text()
        if text is not None:
            confirmed = self._routes.revision in router_revisions(text)
        return RoutesSeen(
            revision=self._routes.revision,
            versions=routed_versions(self._routes),
            confirmed=confirmed,
            age_s=time.monotonic() - self._routes_written_at,
        )

    def measure(self, request: MeasurementRequest, now: datetime) -> Measurement:
        """One measurement from the metric source (Prometheus or the embedded scraper)."""
        if self.source is None:
            return _no_data(request, now, "no metric source")
        return sources.measure(self.source, request, self.name, now)

    # ------------------------------------------------------------------ write (Actuator)

    def start_version(self, spec: ModelDeploymentSpec, live: LiveVersion, replace: bool) -> None:
        """Start a model-server process for ``live`` (stopping the one it replaces)."""
        if replace:
            log.info(
                "%s: %s is now another artifact (%s): starting its replacement",
                self.name,
                live.version,
                live.uri,
            )
            old = self.supervisor.children.pop(_server_name(live.version), None)
            earlier = self._replaced.pop(live.version, None)
            if earlier is not None:  # replaced twice before the first one retired
                stop_pid(earlier.pid, 10.0, earlier.popen)
            if old is not None:
                self._replaced[live.version] = old
        self._start_version(live)

    def scale_version(self, spec: ModelDeploymentSpec, live: LiveVersion) -> None:
        """``kanaria up`` runs one process per version whatever the count: remember it."""
        record = self.state.versions.get(live.version)
        if record is not None:
            record.replicas = live.replicas

    def addresses(self, versions: list[str]) -> dict[str, str]:
        """Where each of ``versions`` that runs listens."""
        out: dict[str, str] = {}
        for version in versions:
            child = self.supervisor.children.get(_server_name(version))
            old = self._replaced.get(version)
            if old is not None and (child is None or not child.ready):
                out[version] = f"http://127.0.0.1:{old.port}"  # until its replacement is Ready
            elif child is not None:
                out[version] = f"http://127.0.0.1:{child.port}"
        return out

    def ensure_router(self, spec: ModelDeploymentSpec) -> None:
        """Start the router once routes exist (or restart it for a new spec.router)."""
        if self._routes is not None:
            self._ensure_router()

    def write_routes(self, spec: ModelDeploymentSpec, routes: RoutesConfig) -> None:
        """Write the routes file the router watches (atomically; it reloads within 0.2 s)."""
        atomic_write_text(self.dir.routes_file, routes.to_yaml())
        self._routes = routes
        self._routes_written_at = time.monotonic()

    def stop_version(self, version: str) -> None:
        """Stop a version's process: the router runs routes without it, and the server
        drains its in-flight requests on SIGTERM, so no client request is lost."""
        name = _server_name(version)
        if name in self.supervisor.children:
            log.info("%s: stopping %s", self.name, version)
            self.supervisor.stop(name)
        self._ready_seen.pop(version, None)
        record = self.state.versions.get(version)
        if record is not None:
            record.process = None

    def record(
        self, spec: ModelDeploymentSpec, observations: Observations, decision: Decision
    ) -> None:
        """The status into the state file, the events into the log, the problems and
        the history point, the control-loop metrics."""
        command = observations.command
        if command is not None:
            self.state.commandOutcome = _outcome(command, decision)
        self.state.status = decision.status.model_dump(mode="json", exclude_none=True)
        for event in decision.events:
            log.info("%s: %s: %s", self.name, event.reason, event.message)
        self._check_health(decision.status)
        self.metrics.record_pass(LOCAL_NAMESPACE, self.name, observations, decision, time.time())
        taken = list(observations.measurements)
        if observations.retraining is not None:
            taken.append(observations.retraining)
        point = self._history_point(decision, taken)
        if self._worth_recording(point):
            self.dir.append_history(point)
            self._last_point = point

    def retrain(self, spec: ModelDeploymentSpec, decision: Decision, action: Retrain) -> None:
        """POST the RetrainRequested payload to spec.retraining.webhook."""
        event = request_retraining(
            self.name, self.md.metadata.namespace, spec, decision.status, action, datetime.now(UTC)
        )
        if event is None:
            log.warning("%s: retraining requested; spec.retraining.webhook is not set", self.name)
        elif event.type == "Warning":
            log.error("%s: %s: %s", self.name, event.reason, event.message)
        else:
            log.info("%s: %s: %s", self.name, event.reason, event.message)

    def _start_version(self, lv: LiveVersion) -> None:
        """Start ``serve-model`` for ``lv`` with the server settings it is pinned to."""
        version = lv.version
        spec = self.md.spec
        server = server_of(lv, spec)
        record = VersionRecord(
            version=version,
            uri=lv.uri,
            sha256=lv.sha256,
            reference=lv.referenceProfile,
            serverArgs=list(server.args),
            artifact=artifact_of(lv, spec),
            replicas=lv.replicas,
        )
        port = free_port()
        batching = server.batching
        argv = [
            self.options.python,
            "-m",
            "kanaria",
            "serve-model",
            "--model",
            record.uri,
            "--name",
            self.name,
            "--version",
            version,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--max-batch-size",
            str(batching.maxBatchSize),
            "--max-batch-delay-ms",
            f"{parse_duration(batching.maxBatchDelay) * 1000:g}",
            "--drain-timeout-s",
            "10",
        ]
        if record.sha256:
            argv += ["--sha256", record.sha256]
        if record.reference:
            argv += ["--reference", record.reference]
        argv += record.serverArgs
        name = _server_name(version)
        child = self.supervisor.start(name, argv, port, _health(port), self._log(name))
        record.process = child.record()
        self.state.versions[version] = record
        self._gave_up_logged.discard(name)
        log.info("%s: starting %s on 127.0.0.1:%d (pid %d)", self.name, version, port, child.pid)

    def _wait_first_ready(self, version: str) -> None:
        name = _server_name(version)
        if self.supervisor.wait_ready(name, READY_TIMEOUT_S):
            return
        child = self.supervisor.children.get(name)
        tail = child.log_tail() if child else ""
        raise UpError(
            f"{version} did not become ready, so there is nothing to serve; its log "
            f"({self._log(name)}) ends with:\n{tail}"
        )

    def _ensure_router(self) -> None:
        """Start the router, or restart it when ``spec.router``'s process settings changed.

        Weights and mirrors reach a running router through the routes file; auth
        and rate limits are flags it starts with, so a change restarts it (on the
        same port; clients retry the moment it takes).
        """
        running = self.supervisor.children.get("router")
        if running is not None:
            argv = self._router_argv(running.port)
            if running.argv == argv:
                return
            log.info("%s: spec.router changed: restarting the router with it", self.name)
            self.supervisor.stop("router")
            port = running.port
        else:
            # First start: the router goes up once the weighted versions answer, so the
            # first client request does not meet a model that is still loading.
            assert self._routes is not None
            for model in self._routes.models.values():
                for version, backend in model.versions.items():
                    if backend.weight > 0 and _server_name(version) in self.supervisor.children:
                        self._wait_first_ready(version)
            previous = self.state.router.port if self.state.router else None
            port = self.options.router_port or previous or DEFAULT_ROUTER_PORT
            if not port_free(port):
                raise UpError(
                    f"127.0.0.1:{port} is already in use: pass another router port with --port"
                )
            argv = self._router_argv(port)
        child = self.supervisor.start("router", argv, port, _health(port), self._log("router"))
        if not self.supervisor.wait_ready("router", READY_TIMEOUT_S):
            raise UpError(
                f"the router did not start on 127.0.0.1:{port} (port taken? pass --port):\n"
                + child.log_tail()
            )
        self.state.router = child.record()
        self.state.routerUrl = f"http://127.0.0.1:{port}"
        log.info("%s: router on %s", self.name, self.state.routerUrl)

    def _router_argv(self, port: int) -> list[str]:
        router = self.md.spec.router
        tokens = router.auth.tokensFile if router.auth is not None else None
        return [
            *(self.options.python, "-m", "kanaria", "route"),
            *("--config", str(self.dir.routes_file.resolve())),
            *("--host", "127.0.0.1", "--port", str(port), "--reload-interval", "0.2"),
            *as_flags(router_process_settings(router, tokens)),
        ]

    def _router_metrics_text(self) -> str | None:
        child = self.supervisor.children.get("router")
        if child is None:
            return None
        try:
            return self._http.get(f"http://127.0.0.1:{child.port}/metrics").text
        except httpx.HTTPError:
            return None

    def _router_metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float] | None:
        text = self._router_metrics_text()
        if text is None:
            return None
        try:
            return parse(text)
        except ValueError:
            return None

    def _check_health(self, status: ModelDeploymentStatus) -> None:
        """Record (and log once) what the metric source or a shadow's copies lack."""
        now = time.time()
        problems: list[str] = []
        if isinstance(self.source, sources.PrometheusSource):
            targets_file = self.dir.prometheus_dir.absolute() / prom.TARGETS_FILE
            problems += self.checks.prometheus(self.source, targets_file, now)
        elif self.scraper is not None:
            problems += self.checks.scraper(self.scraper, now)
        shadow = status.mirror.version if status.mirror and status.mirror.percent > 0 else None
        series = self._router_metrics() if shadow is not None else None
        starved = self.checks.shadow(shadow, series, self.interval_s, now)
        if starved is not None:
            problems.append(starved)
        for problem in problems:
            if problem not in self.state.problems:
                log.warning("%s: %s", self.name, problem)
        self.state.problems = problems

    def _update_targets(self) -> None:
        targets = {n: c.port for n, c in self.supervisor.children.items() if n != "prometheus"}
        if self.metrics_port is not None:
            targets["kanaria-up"] = self.metrics_port
        self.checks.expect(targets, time.time())
        if self.scraper is not None:
            self.scraper.set_targets(
                {n: f"http://127.0.0.1:{port}/metrics" for n, port in targets.items()}
            )
        elif self.options.prometheus is not None:
            prom.write_targets(self.dir.prometheus_dir / prom.TARGETS_FILE, targets)

    # ------------------------------------------------------------------ history

    def _history_point(self, decision: Decision, measurements: list[Measurement]) -> HistoryPoint:
        status = decision.status
        return HistoryPoint(
            t=time.time(),
            phase=str(status.phase),
            step=status.currentStep,
            stable=status.stable.version if status.stable else None,
            candidate=status.candidate.version if status.candidate else None,
            weights={k: float(v) for k, v in status.weights.items()},
            mirror={status.mirror.version: status.mirror.percent} if status.mirror else {},
            threshold=_threshold(status),
            measurements=[
                {
                    "metric": m.metric,
                    "version": m.version,
                    "value": m.value,
                    "verdict": str(m.verdict),
                    "reason": m.reason,
                    # a compare gate's evidence, so the report can draw its interval
                    **(
                        {"comparison": m.comparison.model_dump(mode="json", exclude_none=True)}
                        if m.comparison is not None
                        else {}
                    ),
                }
                for m in measurements
            ],
            events=[f"{e.reason}: {e.message}" for e in decision.events],
        )

    def _worth_recording(self, point: HistoryPoint) -> bool:
        last = self._last_point
        return (
            last is None
            or bool(point.measurements or point.events)
            or (point.phase, point.step, point.weights, point.mirror)
            != (last.phase, last.step, last.weights, last.mirror)
            or point.t - last.t >= self.interval_s
        )

    # ------------------------------------------------------------------ stop

    def shutdown(self) -> None:
        """Stop every child by PID and mark the state as no longer running."""
        if self.scraper is not None:
            self.scraper.stop()
        for old in self._replaced.values():
            stop_pid(old.pid, 10.0, old.popen)
        self._replaced.clear()
        self.supervisor.stop_all()
        self.state.upPid = None
        self.state.problems = []
        with contextlib.suppress(OSError):
            self.dir.save(self.state)
        self._http.close()


def _threshold(status: ModelDeploymentStatus) -> dict[str, float]:
    """The automation threshold in force, by version, for the report (1: assist, 0: full)."""
    auto = status.automation
    if auto is None:
        return {}
    value = {"assist": 1.0, "full": 0.0}.get(auto.mode, auto.threshold)
    return {auto.version: value}
