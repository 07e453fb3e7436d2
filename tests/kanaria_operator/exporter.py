"""A test exporter: Prometheus metrics whose values the test controls.

It stands in for the router and model-server pods of a ModelDeployment, which
cannot run in the test cluster (kwok fakes the kubelet: pods are Running and
Ready but no container runs). A real Prometheus scrapes it; the operator
queries that Prometheus exactly as it would in a cluster.

The test PUTs a JSON list of series to ``/series``::

    [{"name": "kanaria_router_requests_total", "labels": {"model": "m", ...},
      "rate": 50.0},                       # a counter growing 50/s
     {"name": "kanaria_input_drift_psi", "labels": {...}, "value": 0.1}]  # a gauge

Counters accumulate ``rate`` per second of wall time between scrapes, so
``rate(x[window])`` reads back the rate the test asked for. Run it with
``python -m tests.kanaria_operator.exporter --port N``.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Series:
    def __init__(self, spec: dict[str, Any], now: float) -> None:
        self.name: str = spec["name"]
        self.labels: dict[str, str] = dict(spec.get("labels") or {})
        self.rate: float | None = spec.get("rate")
        self.value: float = float(spec.get("value", 0.0))
        self.since = now

    def key(self) -> tuple[str, tuple[tuple[str, str], ...]]:
        return self.name, tuple(sorted(self.labels.items()))

    def advance(self, now: float) -> None:
        if self.rate is not None:
            self.value += self.rate * (now - self.since)
        self.since = now

    def line(self) -> str:
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(self.labels.items()))
        return f"{self.name}{{{labels}}} {self.value:.6f}"


class Store:
    """Series by (name, labels); counters keep their value when their rate changes."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.series: dict[tuple[str, tuple[tuple[str, str], ...]], Series] = {}

    def replace(self, specs: list[dict[str, Any]]) -> None:
        now = time.monotonic()
        with self.lock:
            fresh: dict[tuple[str, tuple[tuple[str, str], ...]], Series] = {}
            for spec in specs:
                s = Series(spec, now)
                old = self.series.get(s.key())
                if old is not None and s.rate is not None and old.rate is not None:
                    old.advance(now)
                    s.value = old.value  # counters never go down
                fresh[s.key()] = s
            self.series = fresh

    def render(self) -> str:
        now = time.monotonic()
        with self.lock:
            for s in self.series.values():
                s.advance(now)
            return "\n".join(s.line() for s in self.series.values()) + "\n"


def serve(port: int) -> None:
    store = Store()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def _send(self, code: int, body: str, ctype: str = "text/plain") -> None:
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/metrics":
                self._send(200, store.render(), "text/plain; version=0.0.4")
            elif self.path == "/health":
                self._send(200, "ok")
            else:
                self._send(404, "not found")

        def do_PUT(self) -> None:
            if self.path != "/series":
                self._send(404, "not found")
                return
            length = int(self.headers.get("Content-Length") or 0)
            try:
                specs = json.loads(self.rfile.read(length))
                store.replace(specs)
            except (ValueError, KeyError, TypeError) as exc:
                self._send(400, f"bad series: {exc}")
                return
            self._send(200, "ok")

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    serve(parser.parse_args().port)


if __name__ == "__main__":
    main()
