"""What every benchmark suite needs: free ports, pinned processes, and wrk runs.

wrk (one thread, ``wrk_post.lua``) POSTs the JSON body named by
``KANARIA_BENCH_BODY`` and prints one ``KANARIA_RESULT`` line, parsed here into
a :class:`Result`. Processes are stopped by PID (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
LUA = HERE / "wrk_post.lua"


@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int
    cpu_us: float | None = None
    """Proxy CPU time per request, microseconds (user + system, from /proc/PID/stat)."""
    copies: dict[str, float] | None = None
    """Kanaria with mirroring: shadow copies per second by outcome (sent, dropped, failed)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def pinned(cpu: str | None, cmd: Sequence[str]) -> list[str]:
    if cpu is None or shutil.which("taskset") is None:
        return list(cmd)
    return ["taskset", "-c", cpu, *cmd]


def cpu_ticks(pid: int) -> int:
    """utime + stime of a process, in clock ticks (fields 14 and 15 of /proc/PID/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: process exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} not ready after {timeout}s")


@contextmanager
def process(
    cmd: Sequence[str], ready_url: str, log: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``cmd`` (output to ``log``) until the block ends; its log tail on failure."""
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            list(cmd), stdout=fh, stderr=subprocess.STDOUT, cwd=HERE.parent,
            env={**os.environ, **(env or {})},
        )  # fmt: skip
    try:
        wait_ready(ready_url, proc)
        yield proc
    except RuntimeError as exc:
        raise RuntimeError(f"{exc}\n{log.read_text(errors='replace')[-2000:]}") from exc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def run_wrk(
    url: str, body: Path, connections: int, seconds: float, cpu: str | None, pid: int | None = None
) -> Result:
    """One wrk run; with ``pid``, also that process's CPU time per request."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk not found (Debian package wrk; make system-deps installs it)")
    cmd = [wrk, "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s"]
    before = cpu_ticks(pid) if pid else 0
    out = subprocess.run(
        pinned(cpu, [*cmd, "-s", str(LUA), url]),
        capture_output=True,
        text=True,
        env={**os.environ, "KANARIA_BENCH_BODY": str(body)},
        check=False,
    )
    after = cpu_ticks(pid) if pid else 0
    match = re.search(
        r"KANARIA_RESULT requests=(\d+) duration_us=(\d+) errors=(\d+) p50_us=(\d+) p99_us=(\d+)",
        out.stdout,
    )
    if match is None:
        raise RuntimeError(f"wrk failed: {out.stdout}\n{out.stderr}")
    requests, duration, errors, p50, p99 = (int(g) for g in match.groups())
    cpu_us = None
    if pid and requests:
        cpu_us = (after - before) / os.sysconf("SC_CLK_TCK") / requests * 1e6
    return Result(requests / (duration / 1e6), p50 / 1000, p99 / 1000, errors, requests, cpu_us)


@dataclass(frozen=True)
class RunOptions:
    """How long and how often each wrk cell runs, and where the processes are pinned."""

    seconds: float
    rounds: int
    connections: list[int]
    proxy_cpu: str
    aux_cpu: str


def add_run_options(
    parser: argparse.ArgumentParser,
    *,
    duration: float,
    rounds: int,
    connections: str,
    proxy_help: str,
    aux_help: str,
) -> None:
    """The options every proxy benchmark shares (--quick, --duration, --rounds,
    --connections, --proxy-cpu, --aux-cpu); read them back with :func:`run_options`."""
    parser.add_argument("--quick", action="store_true", help="2-second runs, smoke test only")
    parser.add_argument("--duration", type=float, default=duration, help="seconds per wrk run")
    parser.add_argument(
        "--rounds", type=int, default=rounds, help="runs per cell; the best is kept"
    )
    parser.add_argument("--connections", default=connections, help="comma-separated list")
    parser.add_argument("--proxy-cpu", default="0", help=proxy_help)
    parser.add_argument("--aux-cpu", default=str((os.cpu_count() or 1) - 1), help=aux_help)


def run_options(args: argparse.Namespace) -> RunOptions:
    """--quick means one 2-second round per cell."""
    return RunOptions(
        seconds=2.0 if args.quick else args.duration,
        rounds=1 if args.quick else max(1, args.rounds),
        connections=sorted({int(c) for c in args.connections.split(",")}),
        proxy_cpu=args.proxy_cpu,
        aux_cpu=args.aux_cpu,
    )
