"""A real HTTP receiver on 127.0.0.1 whose answers a test scripts: fail N times, hold requests.

The review webhook is tested against it: it answers the statuses it is given in
order (then 204), records every request that arrived and every body it accepted,
and can hold requests open until released (a receiver that is slow), so a test
can fill the sender's buffer while a delivery is provably in flight.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class ScriptedReceiver:
    """Answers ``statuses`` in order, then 204; ``hold()`` keeps requests waiting."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.statuses = list(statuses or [])
        self.arrived: list[dict[str, Any]] = []
        """Every request body, in arrival order, whatever it was answered."""
        self.accepted: list[dict[str, Any]] = []
        """Bodies answered with a 2xx."""
        self.headers: list[dict[str, str]] = []
        self._open = threading.Event()
        self._open.set()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length))
                with receiver._lock:
                    receiver.arrived.append(body)
                    receiver.headers.append(dict(self.headers.items()))
                    status = receiver.statuses.pop(0) if receiver.statuses else 204
                # Bounded, so a test that forgets to release cannot hang the server thread.
                receiver._open.wait(60)
                if 200 <= status < 300:
                    with receiver._lock:
                        receiver.accepted.append(body)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/review"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def hold(self) -> None:
        """Keep every request (from now on) waiting for :meth:`release`."""
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def cases(self) -> list[dict[str, Any]]:
        """Every case in the accepted bodies, in order."""
        with self._lock:
            return [case for body in self.accepted for case in body["cases"]]

    def __enter__(self) -> ScriptedReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()
