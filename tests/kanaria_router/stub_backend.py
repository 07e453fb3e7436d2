"""A test backend: a tiny real V2 server process the router tests route to.

It is not a model server: it answers infer with a fixed output (configurable),
optionally after a delay, with a failure status, or held until released, and it
records what it received (headers, feedback) at ``/control/stats`` so tests can
check what crossed the router. Run: ``python stub_backend.py --port P --name v1``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from aiohttp import web

DEFAULT_OUTPUT = [
    {"name": "probabilities", "datatype": "FP32", "shape": [1, 3], "data": [0.1, 0.7, 0.2]}
]


class Stub:
    def __init__(self, args: argparse.Namespace) -> None:
        self.name: str = args.name
        self.outputs: list[dict[str, Any]] = (
            json.loads(args.output) if args.output else DEFAULT_OUTPUT
        )
        self.delay: float = args.delay
        self.status: int = args.status
        self.hold = asyncio.Event()
        if not args.hold:
            self.hold.set()
        self.received = 0
        self.answered = 0
        self.last_headers: dict[str, str] = {}
        self.feedback: list[Any] = []
        self.shadow_copies = 0

    async def infer(self, request: web.Request) -> web.Response:
        self.received += 1
        self.last_headers = dict(request.headers)
        if request.headers.get("x-kanaria-shadow"):
            self.shadow_copies += 1
        body = await request.read()
        await self.hold.wait()
        if self.delay:
            await asyncio.sleep(self.delay)
        self.answered += 1
        if self.status != 200:
            return web.json_response({"error": f"stub {self.name} fails"}, status=self.status)
        try:
            payload = json.loads(body) if body else {}
        except ValueError:
            return web.json_response({"error": "stub: body is not JSON"}, status=400)
        return web.json_response(
            {
                "model_name": request.match_info["model"],
                "model_version": self.name,
                "id": request.headers.get("x-request-id", ""),
                "outputs": self.outputs,
                "echo_inputs": len(payload.get("inputs", [])) if isinstance(payload, dict) else 0,
            },
            headers={"x-backend": self.name, "Connection": "keep-alive"},
        )

    async def feedback_post(self, request: web.Request) -> web.Response:
        items = await request.json()
        self.feedback.extend(items if isinstance(items, list) else [items])
        return web.json_response({"accepted": len(items) if isinstance(items, list) else 1})

    async def metadata(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"name": request.match_info["model"], "versions": [self.name], "platform": "stub"}
        )

    async def ready(self, request: web.Request) -> web.Response:
        return web.json_response({"ready": True})

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "name": self.name,
                "received": self.received,
                "answered": self.answered,
                "last_headers": self.last_headers,
                "feedback": self.feedback,
                "shadow_copies": self.shadow_copies,
            }
        )

    async def release(self, request: web.Request) -> web.Response:
        self.hold.set()
        return web.json_response({"released": True})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--name", required=True, help="version name it reports")
    parser.add_argument("--output", help="JSON list of V2 output tensors to answer")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before answering")
    parser.add_argument("--status", type=int, default=200, help="status of every infer answer")
    parser.add_argument("--hold", action="store_true", help="hold infers until /control/release")
    args = parser.parse_args()
    stub = Stub(args)
    app = web.Application()
    app.router.add_get("/v2/health/ready", stub.ready)
    app.router.add_get("/v2/health/live", stub.ready)
    app.router.add_get("/v2/models/{model}", stub.metadata)
    app.router.add_get("/v2/models/{model}/ready", stub.ready)
    app.router.add_post("/v2/models/{model}/infer", stub.infer)
    app.router.add_post("/v2/models/{model}/versions/{version}/infer", stub.infer)
    app.router.add_post("/v2/models/{model}/feedback", stub.feedback_post)
    app.router.add_get("/control/stats", stub.stats)
    app.router.add_post("/control/release", stub.release)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
