"""The local actuator of the rollout engine: observe, decide, apply, remember.

Several times per analysis interval one *pass* runs:

1. pick up a spec written by ``kanaria apply`` and one command appended by the CLI;
2. health-check the children (restarting dead ones) and take the measurements
   the engine asked for (:func:`kanaria.rollout.plan_measurements`);
3. call :func:`kanaria.rollout.decide` with those observations;
4. converge on the decided status: start versions it wants running, write the
   routes file, retire versions it dropped (only once the router stopped sending
   them traffic), update the metric source's targets;
5. save the state and, when something changed, one history point.

The runtime decides nothing itself: weights, steps, verdict counting and
rollbacks all come from the engine, exactly as in the operator.
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

from kanaria import metric_names as names
from kanaria.api import (
    LiveVersion,
    Measurement,
    ModelDeployment,
    ModelDeploymentStatus,
    Verdict,
)
from kanaria.durations import parse_duration
from kanaria.local import manifest, routes_doc, sources
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
from kanaria.local.supervisor import Supervisor, free_port, pid_alive, port_free
from kanaria.loop_metrics import LOCAL_NAMESPACE, LoopMetrics
from kanaria.retraining import request_retraining
from kanaria.rollout import (
    Command,
    Decision,
    MeasurementRequest,
    Observations,
    Retrain,
    VersionObservation,
    decide,
    plan_measurements,
)
from kanaria.router_process import as_flags, router_process_settings

log = logging.getLogger("kanaria.up")

READY_TIMEOUT_S = 90.0
"""How long ``kanaria up`` waits for a process it needs before serving (model load, Prometheus)."""
RETIRE_GRACE_PASSES = 20
"""Passes a dropped version is kept while the router still reports a weight for it."""
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
        self.supervisor = Supervisor()
        self.state = self._load_or_init(dict(document))
        self.md = ModelDeployment.model_validate(self.state.spec)
        self.scraper: Scraper | None = None
        self.source: sources.MetricSource | None = None
        self._retiring: dict[str, int] = {}
        self._wake = threading.Event()
        self._http = httpx.Client(timeout=2.0)
        self._last_point: HistoryPoint | None = None
        self._gave_up_logged: set[str] = set()
        self.metrics = LoopMetrics(CollectorRegistry())
        """Its own registry: only the control loop's metrics on its endpoint."""
        self._routes_needed: float | None = None
        """Applied-reload count at which the router runs the routes last written."""
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
                    continue
            self._start_version(lv)
        for lv in wanted:
            self.supervisor.wait_ready(_server_name(lv.version), READY_TIMEOUT_S)
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
    def tick_s(self) -> float:
        """Seconds between passes: a quarter interval (at most 1 s), so readiness, commands
        and due analysis rounds are acted on promptly."""
        return min(1.0, self.interval_s / 4)

    def run(self, stop: threading.Event) -> None:
        """Pass after pass until ``stop`` is set."""
        while not stop.is_set():
            started = time.monotonic()
            self.pass_once()
            if self._wake.is_set():
                self._wake.clear()
                continue
            stop.wait(max(0.0, self.tick_s - (time.monotonic() - started)))

    def _status(self) -> ModelDeploymentStatus | None:
        return (
            ModelDeploymentStatus.model_validate(self.state.status) if self.state.status else None
        )

    def pass_once(self) -> Decision:
        """One observe-decide-apply round (see the module docstring)."""
        started = time.monotonic()
        self._pick_up_spec()
        ready = self._check_children()
        now = datetime.now(UTC)
        status = self._status()
        requests = plan_measurements(self.md.spec, status, now)
        taken = self._measure(requests, now)
        analysis = [m for r, m in zip(requests, taken, strict=True) if r.purpose == "analysis"]
        retraining = next(
            (m for r, m in zip(requests, taken, strict=True) if r.purpose == "retraining"), None
        )
        command = None
        pending = read_commands(self.dir, self.state.commandsOffset)
        if pending:
            verb, nonce, offset = pending[0]
            command = Command.model_validate({"verb": verb, "nonce": nonce})
            self.state.commandsOffset = offset
            log.info("%s: command %s (%s)", self.name, verb, nonce)
        else:
            self.state.commandsOffset = max(self.state.commandsOffset, complete_length(self.dir))
        observations = Observations(
            versions={
                v: VersionObservation(ready=r, problem=None if r else self._problem(v))
                for v, r in ready.items()
            },
            measurements=analysis,
            retraining=retraining,
            command=command,
            generation=self.state.generation,
        )
        decision = decide(self.md.spec, status, observations, now)
        if command is not None:
            self.state.commandOutcome = _outcome(command, decision)
        self.state.status = decision.status.model_dump(mode="json", exclude_none=True)
        for event in decision.events:
            log.info("%s: %s: %s", self.name, event.reason, event.message)
        self._apply(decision.status)
        self._check_health(decision.status)
        for action in decision.actions:
            if isinstance(action, Retrain):
                self._call_retrain_hook(action, decision.status, now)
        self.metrics.record_pass(LOCAL_NAMESPACE, self.name, observations, decision, time.time())
        self.metrics.observe_latency(time.monotonic() - started)
        self.dir.save(self.state)
        point = self._history_point(decision, taken)
        if self._worth_recording(point):
            self.dir.append_history(point)
            self._last_point = point
        if len(pending) > 1:
            self._wake.set()
        return decision

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

    def _check_children(self) -> dict[str, bool]:
        ready: dict[str, bool] = {}
        for version, record in self.state.versions.items():
            name = _server_name(version)
            child = self.supervisor.children.get(name)
            if child is None:
                continue
            ready[version] = self.supervisor.check(name) and version not in self._retiring
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
        for name in ("router", "prometheus"):
            if name in self.supervisor.children:
                self.supervisor.check(name)
        return ready

    def _measure(self, requests: list[MeasurementRequest], now: datetime) -> list[Measurement]:
        if self.source is None:
            return [_no_data(r, now, "no metric source") for r in requests]
        return [sources.measure(self.source, r, self.name, now) for r in requests]

    def _call_retrain_hook(
        self, action: Retrain, status: ModelDeploymentStatus, now: datetime
    ) -> None:
        event = request_retraining(
            self.name, self.md.metadata.namespace, self.md.spec, status, action, now
        )
        if event is None:
            log.warning("%s: retraining requested; spec.retraining.webhook is not set", self.name)
        elif event.type == "Warning":
            log.error("%s: %s: %s", self.name, event.reason, event.message)
        else:
            log.info("%s: %s: %s", self.name, event.reason, event.message)

    # ------------------------------------------------------------------ apply

    def _apply(self, status: ModelDeploymentStatus) -> None:
        wanted = {lv.version: lv for lv in status.versions if lv.replicas > 0}
        for version, lv in wanted.items():
            self._retiring.pop(version, None)
            record = self.state.versions.get(version)
            running = _server_name(version) in self.supervisor.children
            if running and record is not None and record.uri != lv.uri:
                log.info("%s: %s now points at %s: restarting it", self.name, version, lv.uri)
                self.supervisor.stop(_server_name(version))
                running = False
            if not running:
                self._start_version(lv)
        ports: dict[str, int] = {}
        ready: dict[str, bool] = {}
        for v in wanted:
            child = self.supervisor.children.get(_server_name(v))
            if child is not None:
                ports[v] = child.port
                ready[v] = child.ready
        if "router" not in self.supervisor.children:
            # First start: the router goes up once the weighted versions answer, so the
            # first client request does not meet a model that is still loading.
            for v in ports:
                if status.weights.get(v, 0) > 0:
                    self._wait_first_ready(v)
                    ready[v] = True
        routes = routes_doc.build(self.name, self.md.spec, status, ports, ready)
        if routes is not None:
            text = routes.to_yaml()
            if not self.dir.routes_file.exists() or self.dir.routes_file.read_text() != text:
                before = self._router_reloads()
                atomic_write_text(self.dir.routes_file, text)
                self._routes_needed = None if before is None else before + 1
            self._ensure_router()
        for version in list(self.state.versions):
            if version not in wanted:
                self._retire(version)
        self._update_targets()

    def _start_version(self, lv: LiveVersion) -> None:
        version = lv.version
        record = self.state.versions.get(version)
        if record is None or record.uri != lv.uri:
            # A version keeps the server flags it first started with (spec.server.args),
            # so a later apply does not change a running stable version behind its back.
            record = VersionRecord(
                version=version,
                uri=lv.uri,
                sha256=lv.sha256,
                reference=lv.referenceProfile,
                serverArgs=list(self.md.spec.server.args),
            )
        port = free_port()
        batching = self.md.spec.server.batching
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

    def _problem(self, version: str) -> str | None:
        """Why a version's model server is not running, if it exited."""
        child = self.supervisor.children.get(_server_name(version))
        return child.problem() if child is not None else None

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

    def _router_metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float] | None:
        child = self.supervisor.children.get("router")
        if child is None:
            return None
        try:
            return parse(self._http.get(f"http://127.0.0.1:{child.port}/metrics").text)
        except (httpx.HTTPError, ValueError):
            return None

    def _router_reloads(self) -> float | None:
        """Routes documents the router has applied so far (None: cannot tell)."""
        series = self._router_metrics()
        if series is None:
            return None
        return sum(
            v
            for (sample, labels), v in series.items()
            if sample == names.ROUTER_CONFIG_RELOADS and dict(labels).get("result") == "applied"
        )

    def _router_still_uses(self, version: str) -> bool:
        """Does the router still weight ``version``, or not yet run the latest routes
        (which may have stopped mirroring to it)?"""
        series = self._router_metrics()
        if series is None:
            return False
        for (sample, labels), value in series.items():
            d = dict(labels)
            if (
                sample == names.ROUTER_WEIGHT
                and (d.get("model"), d.get("version")) == (self.name, version)
                and value > 0
            ):
                return True
        applied = sum(
            v
            for (sample, labels), v in series.items()
            if sample == names.ROUTER_CONFIG_RELOADS and dict(labels).get("result") == "applied"
        )
        return self._routes_needed is not None and applied < self._routes_needed

    def _retire(self, version: str) -> None:
        """Stop a dropped version once the router no longer sends it traffic or copies.

        The routes without it were written this pass or earlier; the router reloads
        within 0.2 s (its applied-reload counter says when), and the server drains
        its in-flight requests on SIGTERM, so no client request is lost to the stop.
        """
        name = _server_name(version)
        if name in self.supervisor.children:
            waited = self._retiring.get(version, 0)
            if waited < RETIRE_GRACE_PASSES and self._router_still_uses(version):
                self._retiring[version] = waited + 1
                return
            log.info("%s: stopping %s", self.name, version)
            self.supervisor.stop(name)
        self._retiring.pop(version, None)
        record = self.state.versions.get(version)
        if record is not None:
            record.process = None

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
            measurements=[
                {
                    "metric": m.metric,
                    "version": m.version,
                    "value": m.value,
                    "verdict": str(m.verdict),
                    "reason": m.reason,
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
        self.supervisor.stop_all()
        self.state.upPid = None
        self.state.problems = []
        with contextlib.suppress(OSError):
            self.dir.save(self.state)
        self._http.close()
