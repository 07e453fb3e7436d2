"""Bad input to the local CLI verbs gets a clear message and exit code, never a traceback."""

from __future__ import annotations

import shlex
import socket
import subprocess
from pathlib import Path

import yaml

from kanaria.local.statedir import LocalState, StateDir
from tests.support.procs import kanaria


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        kanaria(*args), capture_output=True, text=True, cwd=cwd, check=False, timeout=60
    )


def _no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr, result.stderr


def _md(tmp_path: Path, **spec_changes: object) -> Path:
    (tmp_path / "v1.onnx").write_bytes(b"not really onnx: the runtime only checks it exists")
    doc = {
        "apiVersion": "kanaria.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "fraud"},
        "spec": {
            "model": {"version": "v1", "uri": "v1.onnx"},
            "strategy": {"canary": {"steps": [{"setWeight": 10}]}},
            **spec_changes,
        },
    }
    path = tmp_path / "md.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_up_reports_invalid_fields_by_path(tmp_path: Path) -> None:
    path = _md(tmp_path, analysis={"interval": "soon", "failureLimit": -1})
    result = _run("up", "-f", str(path), "--state-dir", "st", cwd=tmp_path)
    assert result.returncode == 2
    _no_traceback(result)
    assert "spec.analysis.interval" in result.stderr
    assert "spec.analysis.failureLimit" in result.stderr


def test_up_reports_a_missing_model_file_and_a_missing_prometheus(tmp_path: Path) -> None:
    path = _md(tmp_path)
    (tmp_path / "v1.onnx").unlink()
    result = _run("up", "-f", str(path), "--state-dir", "st", cwd=tmp_path)
    assert result.returncode == 2
    _no_traceback(result)
    assert "spec.model.uri" in result.stderr
    assert "does not exist" in result.stderr
    path = _md(tmp_path)
    result = _run("up", "-f", str(path), "--prometheus", "/no/such/prometheus", cwd=tmp_path)
    assert result.returncode == 2
    assert "--prometheus /no/such/prometheus: no such binary" in result.stderr


def test_verbs_without_a_running_rollout_say_what_to_do(tmp_path: Path) -> None:
    for args in (("status", "fraud"), ("promote", "fraud"), ("report", "fraud")):
        result = _run(*args, "--state-dir", "st", cwd=tmp_path)
        assert result.returncode == 1, args
        _no_traceback(result)
        assert "kanaria up -f" in result.stderr
    result = _run("apply", "-f", str(_md(tmp_path)), "--state-dir", "st", cwd=tmp_path)
    assert result.returncode == 1
    assert "kanaria up -f" in result.stderr


def test_local_verbs_append_commands_with_nonces(tmp_path: Path) -> None:
    d = StateDir.for_model(tmp_path / "st", "fraud")
    d.path.mkdir(parents=True)
    d.save(LocalState(name="fraud", spec={"spec": {}}))
    for args in (("promote", "--full"), ("pause",), ("abort",)):
        result = _run(args[0], "fraud", *args[1:], "--state-dir", "st", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert "queued" in result.stdout
    lines = [yaml.safe_load(line) for line in d.commands_file.read_text().splitlines()]
    assert [line["verb"] for line in lines] == ["promote-full", "pause", "abort"]
    assert len({line["nonce"] for line in lines}) == 3


def test_up_refuses_a_router_port_in_use_and_stops_what_it_started(tmp_path: Path) -> None:
    from kanaria.modelgen import mlp_classifier

    path = _md(tmp_path)
    mlp_classifier(tmp_path / "v1.onnx", layers=(4, 8, 2), seed=1)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _run(
            "up", "-f", str(path), "--state-dir", "st", "--prometheus", "off",
            "--port", str(port), cwd=tmp_path,
        )  # fmt: skip
    assert result.returncode == 1
    _no_traceback(result)
    assert f"127.0.0.1:{port} is already in use: pass another router port" in result.stderr
    state = StateDir.for_model(tmp_path / "st", "fraud").load()
    assert state.upPid is None
    for record in state.versions.values():
        assert record.process is not None
        assert not Path(f"/proc/{record.process.pid}").exists()


def test_apply_suggests_a_status_command_that_finds_the_state(tmp_path: Path) -> None:
    """With --state-dir D, the suggested `kanaria status` carries --state-dir D (quoted),
    and running it as printed finds the rollout."""
    root = tmp_path / "my state"
    d = StateDir.for_model(root, "fraud")
    d.path.mkdir(parents=True)
    path = _md(tmp_path)
    running = yaml.safe_load(path.read_text())
    running["spec"]["model"]["version"] = "v0"
    d.save(LocalState(name="fraud", spec=running))
    result = _run("apply", "-f", str(path), "--state-dir", str(root), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    suggestion = next(
        line.removeprefix("watch it: ")
        for line in result.stdout.splitlines()
        if line.startswith("watch it: ")
    )
    assert f"--state-dir {shlex.quote(str(root))}" in suggestion
    argv = shlex.split(suggestion)
    assert argv[:2] == ["kanaria", "status"]
    shown = _run(*[a for a in argv[1:] if a != "-w"], cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("fraud"), shown.stdout
