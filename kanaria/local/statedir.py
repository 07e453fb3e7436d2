"""The state directory of one locally run ModelDeployment, and atomic writes into it.

``kanaria up`` is the only writer of ``state.json`` and ``routes.yaml``; the CLI
verbs append to ``commands.jsonl`` and ``kanaria apply`` replaces ``spec.json``.
Every whole-file write goes through a temporary file and ``os.replace`` so a
reader (the router, ``kanaria status``, a restarted ``kanaria up``) never sees a
half-written file, even if the writer is killed mid-write.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

DEFAULT_ROOT = ".kanaria"
"""State root used when neither ``--state-dir`` nor ``KANARIA_STATE_DIR`` is given."""
ENV_STATE_DIR = "KANARIA_STATE_DIR"

COMMAND_VERBS = ("promote", "promote-full", "abort", "pause", "resume", "retry")
"""Manual commands, as the engine's observations name them."""


class StateError(Exception):
    """The state directory is missing, unreadable or belongs to something else."""


def state_root(arg: str | None) -> Path:
    """Where model state directories live: the flag, else the env var, else ``./.kanaria``.

    Always absolute (relative to the working directory it is given in): the paths
    inside a state directory are handed to other processes (Prometheus resolves a
    relative ``file_sd`` path against its configuration file's folder, not against
    our working directory), and the printed paths must work from anywhere.
    Raises :class:`StateError` when the path exists and is not a directory.
    """
    env = os.environ.get(ENV_STATE_DIR)
    root = Path(arg or env or DEFAULT_ROOT).expanduser().absolute()
    if root.exists() and not root.is_dir():
        given = "--state-dir" if arg else f"${ENV_STATE_DIR}" if env else "the default"
        raise StateError(f"state root {root} ({given}) exists and is not a directory")
    return root


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so readers see either the old or the new file, whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, data: Any) -> None:
    """JSON flavour of :func:`atomic_write_text` (indented: people read these files)."""
    atomic_write_text(path, json.dumps(data, indent=1, sort_keys=True, default=str) + "\n")


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ProcessRecord(_Model):
    """A child process ``kanaria up`` started, enough to find it again after a restart."""

    pid: int
    port: int
    argv: list[str]
    """Exact command line: a restarted ``kanaria up`` adopts the PID only if it still matches."""
    startedAt: float = 0.0
    """Unix time (seconds) of the last start."""
    restarts: int = 0


class VersionRecord(_Model):
    """One model version the runtime knows how to serve."""

    version: str
    uri: str
    """Local path (absolute), file:// or http(s):// URI handed to ``kanaria serve-model``."""
    sha256: str | None = None
    reference: str | None = None
    """Reference input profile for drift metrics (absolute path), if the spec names one."""
    serverArgs: list[str] = Field(default_factory=list)
    """Extra ``serve-model`` flags (``server.args`` the version was started with)."""
    artifact: str | None = None
    """:func:`kanaria.loop.identity.artifact_of` of what the process runs: another digest
    under the same version name (a new uri, sha256, profile or server settings) means
    the process is replaced."""
    replicas: int = 1
    """Replicas the status asked for (``kanaria up`` runs one process whatever the count)."""
    process: ProcessRecord | None = None
    health: str = ""
    """What ``kanaria up`` last saw: starting, ready, restarting, or down (gave up
    restarting it; its log is in ``logs/server-<version>.log``)."""


class HistoryPoint(_Model):
    """One engine pass as the report plots it."""

    t: float
    """Unix time (seconds)."""
    phase: str = ""
    step: int | None = None
    stable: str | None = None
    candidate: str | None = None
    weights: dict[str, float] = Field(default_factory=dict)
    """Primary traffic per version, percent."""
    mirror: dict[str, float] = Field(default_factory=dict)
    """Mirrored share per shadow version, percent."""
    threshold: dict[str, float] = Field(default_factory=dict)
    """Confidence threshold of an automation ramp's version (1: assist, 0: full)."""
    measurements: list[dict[str, Any]] = Field(default_factory=list)
    """Measurements taken this pass: metric, version, value, verdict, reason, and for
    a compare gate its evidence (comparison: estimate, lower, upper, limit, ...)."""
    events: list[str] = Field(default_factory=list)


class LocalState(_Model):
    """Everything ``kanaria up`` must remember to resume where it was."""

    name: str
    spec: dict[str, Any]
    """The ModelDeployment document driving the engine (as applied, URIs resolved)."""
    specDigest: str = ""
    generation: int = 1
    """Bumped on every applied spec change (the engine's observedGeneration)."""
    status: dict[str, Any] = Field(default_factory=dict)
    """The engine's status (``kanaria.api`` status model, JSON form)."""
    versions: dict[str, VersionRecord] = Field(default_factory=dict)
    router: ProcessRecord | None = None
    prometheus: ProcessRecord | None = None
    commandsOffset: int = 0
    """Bytes of ``commands.jsonl`` already turned into observations."""
    commandOutcome: dict[str, str] = Field(default_factory=dict)
    """The last command's ``nonce`` and what came of it (``outcome``: applied|ignored,
    ``message``), so the CLI verb can tell its user."""
    upPid: int | None = None
    """PID of the ``kanaria up`` that owns this directory (None once it stopped cleanly)."""
    metricsUrl: str | None = None
    """Prometheus base URL when a real Prometheus is used."""
    routerUrl: str | None = None
    problems: list[str] = Field(default_factory=list)
    """What the last pass found wrong beyond readiness (the metric source sees none of
    the processes, a shadow starved of copies), shown by ``kanaria status``."""
    updatedAt: float = 0.0


class StateDir:
    """Paths of one model's state directory (``<root>/<name>``)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def for_model(cls, root: Path, name: str) -> StateDir:
        return cls(root / name)

    @property
    def state_file(self) -> Path:
        return self.path / "state.json"

    @property
    def spec_file(self) -> Path:
        """The latest applied spec (written by ``kanaria apply`` and ``kanaria up -f``)."""
        return self.path / "spec.json"

    @property
    def commands_file(self) -> Path:
        return self.path / "commands.jsonl"

    @property
    def history_file(self) -> Path:
        return self.path / "history.jsonl"

    @property
    def routes_file(self) -> Path:
        return self.path / "routes.yaml"

    @property
    def logs(self) -> Path:
        return self.path / "logs"

    @property
    def prometheus_dir(self) -> Path:
        return self.path / "prometheus"

    def exists(self) -> bool:
        return self.state_file.exists()

    def load(self) -> LocalState:
        """Read ``state.json``; a clear :class:`StateError` when missing or corrupt."""
        try:
            text = self.state_file.read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            raise StateError(
                f"no local rollout state in {self.path} (start one with `kanaria up -f FILE`, "
                "or pass --state-dir)"
            ) from exc
        try:
            return LocalState.model_validate_json(text)
        except ValidationError as exc:
            raise StateError(f"{self.state_file} is not a kanaria state file: {exc}") from exc

    def save(self, state: LocalState) -> None:
        state.updatedAt = time.time()
        atomic_write_text(self.state_file, state.model_dump_json(indent=1) + "\n")

    def write_spec(self, document: dict[str, Any]) -> None:
        atomic_write_json(self.spec_file, document)

    def read_spec(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.spec_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except json.JSONDecodeError as exc:
            raise StateError(f"{self.spec_file} is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise StateError(f"{self.spec_file} must hold a ModelDeployment mapping")
        return data

    def append_history(self, point: HistoryPoint) -> None:
        with self.history_file.open("a", encoding="utf-8") as fh:
            fh.write(point.model_dump_json() + "\n")

    def read_history(self) -> list[HistoryPoint]:
        """History points in order; a torn last line (writer killed) is skipped."""
        points: list[HistoryPoint] = []
        try:
            lines = self.history_file.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return points
        for line in lines:
            try:
                points.append(HistoryPoint.model_validate_json(line))
            except ValidationError:
                continue
        return points


def append_command(state_dir: StateDir, verb: str) -> str:
    """Append a manual command with a fresh nonce; returns the nonce.

    One ``write`` of one short line to a file opened with O_APPEND is atomic on
    POSIX, so concurrent CLI invocations never interleave.
    """
    if verb not in COMMAND_VERBS:
        raise ValueError(f"unknown command {verb!r}; expected one of {', '.join(COMMAND_VERBS)}")
    nonce = secrets.token_hex(6)
    line = json.dumps({"verb": verb, "nonce": nonce, "at": time.time()}) + "\n"
    state_dir.path.mkdir(parents=True, exist_ok=True)
    fd = os.open(state_dir.commands_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)
    return nonce


def read_commands(state_dir: StateDir, offset: int) -> list[tuple[str, str, int]]:
    """Commands appended since byte ``offset``: ``[(verb, nonce, offset after it)]``.

    Only complete lines are read. Unknown or malformed lines are skipped, so one
    bad line cannot wedge the command log; the engine takes one command per pass,
    so the caller advances its offset command by command.
    """
    try:
        with state_dir.commands_file.open("rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except FileNotFoundError:
        return []
    commands: list[tuple[str, str, int]] = []
    position = offset
    for raw in data.splitlines(keepends=True):
        if not raw.endswith(b"\n"):
            break
        position += len(raw)
        try:
            item = json.loads(raw)
        except json.JSONDecodeError:
            continue
        if (
            isinstance(item, dict)
            and item.get("verb") in COMMAND_VERBS
            and isinstance(item.get("nonce"), str)
            and item["nonce"]
        ):
            commands.append((item["verb"], item["nonce"], position))
    return commands


def complete_length(state_dir: StateDir) -> int:
    """Bytes of ``commands.jsonl`` up to its last complete line."""
    try:
        data = state_dir.commands_file.read_bytes()
    except FileNotFoundError:
        return 0
    return data.rfind(b"\n") + 1
