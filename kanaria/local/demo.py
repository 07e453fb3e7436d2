"""``make demo``: three rollouts on this machine, narrated, in a couple of minutes.

1. v1 serves; v2 (a smaller, faster model) rolls out as a canary and is promoted;
2. v3 (served with 30% injected errors) rolls out and is rolled back by the gates;
3. v4 (v2 re-exported: the same answers) runs in shadow, passes its gates on
   mirrored traffic (agreement with v2, and success rate and latency read from
   its model server) and graduates into a canary, which its traffic gates
   promote with no one stepping in (agreement only applies while mirrored).

Everything is real: ``kanaria up`` as a child process with model servers, the
router and Prometheus (or the embedded source without the binary), ``kanaria
apply`` for each new version, synthetic clients with sticky user ids, and
``kanaria report`` at the end. Output goes to ``demo-out/``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from kanaria.local.statedir import StateDir
from kanaria.local.supervisor import free_port, stop_pid
from kanaria.local.traffic import TrafficGenerator

NAME = "fraud"
WIDTH = 16
INTERVAL = "2s"
STEP_TIMEOUT_S = 150.0
RATE = 40.0
"""Synthetic requests per second: enough that a 20% canary has minRequests per interval."""


def _say(text: str) -> None:
    print(f"{time.strftime('%H:%M:%S')}  {text}", flush=True)


def build_models(models: Path) -> dict[str, Path]:
    """The demo's ONNX files (deterministic: same bytes on every run)."""
    from kanaria.modelgen import mlp_classifier  # noqa: PLC0415 (needs onnx)

    return {
        "v1": mlp_classifier(models / "v1.onnx", layers=(WIDTH, 256, 256, 4), seed=1),
        "v2": mlp_classifier(models / "v2.onnx", layers=(WIDTH, 64, 4), seed=2),
        "v3": mlp_classifier(models / "v3.onnx", layers=(WIDTH, 64, 4), seed=3),
        "v4": mlp_classifier(models / "v4.onnx", layers=(WIDTH, 64, 4), seed=2),
    }


TRAFFIC_GATES = [
    {"name": "success-rate", "builtin": "successRate", "min": 0.95},
    {"name": "p99-latency", "builtin": "latencyP99", "max": 0.5},
]
SHADOW_GATES = [
    *TRAFFIC_GATES,
    # shadowAgreement applies only while v4 is mirrored (its default stages), so the
    # canary it graduates into is judged by the traffic gates alone.
    {"name": "agreement", "builtin": "shadowAgreement", "min": 0.95},
]


def manifest(
    version: str,
    uri: Path,
    strategy: dict[str, Any],
    args: list[str],
    metrics: list[dict[str, Any]] = TRAFFIC_GATES,
) -> dict[str, Any]:
    """A ModelDeployment as a user would write it."""
    return {
        "apiVersion": "kanaria.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": NAME},
        "spec": {
            "model": {"version": version, "uri": str(uri)},
            "server": {"args": args},
            "router": {"stickyKey": {"header": "x-user-id"}},
            "strategy": strategy,
            "analysis": {
                "interval": INTERVAL,
                "failureLimit": 0,
                "minRequests": 10,
                "metrics": metrics,
            },
        },
    }


CANARY = {
    "canary": {
        "steps": [
            {"setWeight": 20},
            {"pause": {"duration": "4s"}},
            {"setWeight": 50},
            {"pause": {"duration": "4s"}},
        ]
    }
}
SHADOW = {
    "shadow": {
        "mirrorPercent": 100,
        "analysis": {"rounds": 2},
        "graduateTo": "canary",
        "canary": {"steps": [{"setWeight": 50}, {"pause": {"duration": "4s"}}]},
    }
}


class Demo:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.root = out / "state"
        self.dir = StateDir.for_model(self.root, NAME)
        self.up: subprocess.Popen[bytes] | None = None
        self.seen_events = 0

    def write(self, filename: str, document: dict[str, Any]) -> Path:
        path = self.out / filename
        path.write_text(yaml.safe_dump(document, sort_keys=False))
        return path

    def kanaria(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "kanaria", *args, "--state-dir", str(self.root)]

    def status(self) -> dict[str, Any]:
        try:
            return self.dir.load().status
        except Exception:  # not written yet
            return {}

    def narrate(self) -> None:
        """Print the engine's events since the last call, one line each."""
        history = self.dir.read_history()
        events = [e for p in history for e in p.events]
        for event in events[self.seen_events :]:
            _say(f"  {event}")
        self.seen_events = len(events)

    def wait_for(self, what: str, check: Any) -> dict[str, Any]:
        deadline = time.monotonic() + STEP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.up is not None and self.up.poll() is not None:
                raise RuntimeError(f"kanaria up exited; see {self.out / 'up.log'}")
            self.narrate()
            status = self.status()
            if check(status):
                return status
            time.sleep(0.3)
        raise RuntimeError(f"timed out waiting for {what}; see {self.out / 'up.log'}")

    def apply(self, path: Path) -> None:
        subprocess.run(
            self.kanaria("apply", "-f", str(path)), check=True, stdout=subprocess.DEVNULL
        )


def _stable(status: dict[str, Any]) -> str | None:
    stable = status.get("stable") or {}
    return stable.get("version")


def run(out: Path) -> int:
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    demo = Demo(out)
    _say(f"generating demo models in {out / 'models'}")
    models = build_models(out / "models")
    port = free_port()
    first = demo.write("fraud-v1.yaml", manifest("v1", models["v1"], CANARY, []))
    _say(f"kanaria up -f {first.name}  (router on 127.0.0.1:{port}, logs in {out / 'up.log'})")
    with (out / "up.log").open("wb") as log:
        demo.up = subprocess.Popen(
            demo.kanaria("up", "-f", str(first), "--port", str(port)),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    traffic: TrafficGenerator | None = None
    try:
        demo.wait_for("v1 to serve", lambda s: s.get("phase") == "Healthy")
        _say(f"v1 is serving; starting synthetic clients ({RATE} req/s, 200 sticky users)")
        traffic = TrafficGenerator(
            f"http://127.0.0.1:{port}", NAME, WIDTH, rate=RATE, workers=8
        ).start()
        time.sleep(3)

        _say("1) canary: kanaria apply v2 (smaller and faster)")
        demo.apply(demo.write("fraud-v2.yaml", manifest("v2", models["v2"], CANARY, [])))
        demo.wait_for("v2 at 50%", lambda s: (s.get("weights") or {}).get("v2") == 50)
        _say(f"what `kanaria status {NAME}` shows right now:")
        shown = subprocess.run(
            demo.kanaria("status", NAME), capture_output=True, text=True, check=False
        )
        print("\n".join(f"           {line}" for line in shown.stdout.splitlines()), flush=True)
        demo.wait_for(
            "v2 to be promoted", lambda s: _stable(s) == "v2" and s.get("phase") == "Healthy"
        )
        ok, failed, _ = traffic.stats.snapshot()
        _say(f"v2 promoted; clients so far: {ok} ok, {failed} failed")

        _say("2) canary: kanaria apply v3 (served with 50% injected errors)")
        before_failed = failed
        demo.apply(
            demo.write(
                "fraud-v3.yaml",
                manifest("v3", models["v3"], CANARY, ["--chaos-error-rate", "0.5"]),
            )
        )
        status = demo.wait_for("v3 to be rolled back", lambda s: s.get("phase") == "RolledBack")
        ok, failed, _ = traffic.stats.snapshot()
        peak = max(
            (p.weights.get("v3", 0.0) for p in demo.dir.read_history() if p.candidate == "v3"),
            default=0.0,
        )
        _say(
            f"v3 rolled back: {status.get('message', '')}\n"
            f"           clients saw {failed - before_failed} errors from v3 while it had "
            f"up to {peak:g}% of traffic (the injected faults the gate caught)"
        )

        _say("3) shadow: kanaria apply v4 (v2 re-exported: it should answer exactly like v2)")
        demo.apply(
            demo.write("fraud-v4.yaml", manifest("v4", models["v4"], SHADOW, [], SHADOW_GATES))
        )
        demo.wait_for("v4 to graduate", lambda s: (s.get("weights") or {}).get("v4") == 50)
        demo.narrate()
        _say("v4 agreed with v2 and answered its mirrored copies well (success rate and")
        _say("latency from its model server); it graduated into a canary at 50%, where the")
        _say("traffic gates judge what clients see and agreement no longer applies")
        demo.wait_for(
            "v4 to be promoted", lambda s: _stable(s) == "v4" and s.get("phase") == "Healthy"
        )
        time.sleep(2)  # a little steady state after the last promotion, for the report
        demo.narrate()
        traffic.stop()
        ok, failed, versions = traffic.stats.snapshot()
        injected = traffic.stats.injected
        _say(
            f"done. clients: {ok} ok, {failed} failed ({injected} injected by v3's fault, "
            f"{failed - injected} caused by the rollouts); answered by {versions}"
        )
        report = out / "rollout.png"
        subprocess.run(
            demo.kanaria("report", NAME, "-o", str(report)), check=True, stdout=subprocess.DEVNULL
        )
        _say(f"report: {report}")
        _say(f"try:    kanaria status {NAME} --state-dir {demo.root}")
        return 0
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        _say(f"demo failed: {exc}")
        print((out / "up.log").read_text(errors="replace")[-3000:], file=sys.stderr)
        return 1
    finally:
        if traffic is not None:
            traffic.stop()
        if demo.up is not None:
            stop_pid(demo.up.pid, timeout=20, popen=demo.up)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kanaria.local.demo", description=__doc__)
    parser.add_argument("--out", default="demo-out", help="output folder (default demo-out)")
    args = parser.parse_args(argv)
    try:
        return run(Path(args.out).resolve())
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
