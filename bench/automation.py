"""Confidence policy benchmark (issue 13): the serving overhead of automated-or-review.

One ``kanaria serve-model`` (MLP 64-256-256-10, one intra-op thread) behind three
Kanaria routers started from the same code in the same run, measured interleaved:

- ``no policy``: routes without ``automation`` (the baseline);
- ``partial 0.9``: the version's policy in the routes, so the router sends it in
  ``x-kanaria-automation-policy`` and the model server decides per answer (the
  parameter, both headers, the decision counter); no review sink;
- ``partial 0.9 + webhook``: the same, and every review answer (this model is
  rarely confident, so most are) becomes a review case offered to a webhook sink (an
  nginx stub answering 200): the offer on the request path (the bodies as bytes),
  then on the sender's task, per batch, parsing the bodies, the cases, one JSON
  body and one POST.

Routers are pinned to one CPU, the model server, the stub and wrk to the other.
Target (issue 13): the policy costs at most 5% of throughput, at 1 and 64
connections. Read the ratios: absolute numbers on a shared machine drift.

    python -m bench.automation [--quick] [--duration S] [--rounds N] [--connections 1,64]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from bench.harness import (
    add_run_options,
    cpu_ticks,
    free_port,
    pinned,
    process,
    run_options,
    run_wrk,
)
from bench.router import SMALL, Bench, Proxy, nginx_binary, stub_conf, verdict

BASE = "no policy"
PARTIAL = "partial 0.9"
WEBHOOK = "partial 0.9 + webhook review sink"
TARGET = 0.95


def routes(server: str, policy: bool, webhook: str | None) -> str:
    version: dict[str, object] = {"url": server, "weight": 100}
    if policy:
        version["automation"] = {"mode": "partial", "threshold": 0.9}
    model: dict[str, object] = {"versions": {"v1": version}}
    if webhook:
        model["review"] = {"webhook": webhook, "bufferSize": 10000}
    return yaml.safe_dump({"models": {"bench": model}})


def router(b: Bench, stack: ExitStack, label: str, text: str) -> Proxy:
    port = free_port()
    config = b.tmp / f"routes-{port}.yaml"
    config.write_text(text)
    cmd = [sys.executable, "-m", "kanaria", "route", "--config", str(config), "--host",
           "127.0.0.1", "--port", str(port), "--log-level", "WARNING"]  # fmt: skip
    proc = stack.enter_context(
        process(
            pinned(b.proxy_cpu, cmd),
            f"http://127.0.0.1:{port}/v2/health/ready",
            b.tmp / f"router-{port}.log",
        )
    )
    return Proxy(label, f"http://127.0.0.1:{port}/v2/models/bench/infer", proc.pid)


@dataclass
class Cell:
    """One variant at one connection count: every run's numbers."""

    rps: list[float] = field(default_factory=list)
    router_us: list[float] = field(default_factory=list)
    server_us: list[float] = field(default_factory=list)
    errors: int = 0


def measure(b: Bench, proxies: list[Proxy], server_pid: int) -> dict[str, dict[int, Cell]]:
    """``b.rounds`` interleaved runs per variant and connection count, recording the
    throughput and the CPU time per request of the router and of the model server
    (which all variants share, so its CPU is read around each run)."""
    for p in proxies:
        run_wrk(p.url, b.body, max(b.connections), min(b.seconds, 3.0), b.aux_cpu)
    cells: dict[str, dict[int, Cell]] = {
        p.label: {c: Cell() for c in b.connections} for p in proxies
    }
    tick = os.sysconf("SC_CLK_TCK")
    for _ in range(b.rounds):
        for c in b.connections:
            for p in proxies:
                before = cpu_ticks(server_pid)
                r = run_wrk(p.url, b.body, c, b.seconds, b.aux_cpu, p.pid)
                after = cpu_ticks(server_pid)
                cell = cells[p.label][c]
                cell.rps.append(r.rps)
                cell.router_us.append(r.cpu_us or 0.0)
                cell.server_us.append((after - before) / tick / max(r.requests, 1) * 1e6)
                cell.errors += r.errors
    return cells


def report(cells: dict[str, dict[int, Cell]], connections: list[int]) -> None:
    print("\n## confidence policy: kanaria serve-model behind the router")
    print("| variant | conns | req/s (best) | errors | router CPU µs/req | server CPU µs/req |")
    print("|---|---|---|---|---|---|")
    for c in connections:
        for label, by_conns in cells.items():
            cell = by_conns[c]
            print(
                f"| {label} | {c} | {max(cell.rps):,.0f} | {cell.errors} | "
                f"{statistics.median(cell.router_us):.0f} | "
                f"{statistics.median(cell.server_us):.0f} |"
            )
    print(
        "\n| variant | conns | throughput vs no policy (best of runs) "
        "| CPU per request (router + server, medians) vs no policy | target: throughput >= 0.95 |"
    )
    print("|---|---|---|---|---|")
    ok = True
    for c in connections:
        base = cells[BASE][c]
        base_cpu = statistics.median(base.router_us) + statistics.median(base.server_us)
        for label in (PARTIAL, WEBHOOK):
            cell = cells[label][c]
            ratio = max(cell.rps) / max(base.rps)
            cpu = statistics.median(cell.router_us) + statistics.median(cell.server_us)
            if label == PARTIAL:
                ok &= ratio >= TARGET
            met = verdict(ratio >= TARGET)
            print(f"| {label} | {c} | {ratio:.3f} | {cpu / base_cpu:.3f} | {met} |")
    print(f"\npolicy overhead target (partial 0.9, <= 5% throughput): {verdict(ok)}")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.automation", description=__doc__)
    add_run_options(
        parser, duration=5.0, rounds=3, connections="1,64",
        proxy_help="CPU list for taskset of the routers",
        aux_help="CPU list for wrk, server and stub",
    )  # fmt: skip
    args = parser.parse_args(argv)
    run = run_options(args)
    seconds, rounds, connections = run.seconds, run.rounds, run.connections
    print(
        f"# {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; routers on CPU "
        f"{args.proxy_cpu}, wrk, model server and stub on CPU {args.aux_cpu}; {seconds:g}s per "
        f"run, best of {rounds} interleaved round(s)",
        flush=True,
    )
    import numpy as np

    from kanaria.modelgen import mlp_classifier

    with tempfile.TemporaryDirectory(prefix="kanaria-bench-automation-") as tmp_name:
        tmp = Path(tmp_name)
        body = tmp / "body.json"
        x = np.random.default_rng(1).standard_normal(SMALL[0]).round(4).tolist()
        row = {"name": "input", "shape": [1, SMALL[0]], "datatype": "FP32", "data": x}
        body.write_text(json.dumps({"inputs": [row]}))
        b = Bench(tmp, body, connections, seconds, rounds, 1, args.proxy_cpu, args.aux_cpu)
        model = mlp_classifier(tmp / "small.onnx", layers=SMALL)
        port = free_port()
        server = f"http://127.0.0.1:{port}"
        cmd = [
            *(sys.executable, "-m", "kanaria", "serve-model", "--model", str(model)),
            *("--name", "bench", "--port", str(port), "--intra-op-threads", "1"),
            *("--log-level", "warning"),
        ]
        sink_port = free_port()
        with ExitStack() as stack:
            servers = [
                stack.enter_context(
                    process(pinned(args.aux_cpu, cmd), f"{server}/v2/health/ready", tmp / "ms.log")
                )
            ]
            conf = stub_conf(tmp, [sink_port])
            stack.enter_context(
                process(
                    pinned(args.aux_cpu, [nginx_binary(), "-c", str(conf), "-p", str(conf.parent)]),
                    f"http://127.0.0.1:{sink_port}/",
                    tmp / "sink.log",
                )
            )
            proxies = [
                router(b, stack, BASE, routes(server, False, None)),
                router(b, stack, PARTIAL, routes(server, True, None)),
                router(b, stack, WEBHOOK, routes(server, True, f"http://127.0.0.1:{sink_port}/")),
            ]
            server_pid = servers[0].pid
            results = measure(b, proxies, server_pid)
        report(results, connections)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
