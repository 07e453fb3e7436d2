"""Benchmark helper: a shadow that takes 100 ms (``--delay``) to answer each copy.

nginx cannot wait before answering without extra modules, so the slow shadow of
the router benchmark is this small aiohttp app returning the same fixed answer.

    python -m bench.router_slow_shadow --port P [--delay 0.1]
"""

from __future__ import annotations

import argparse
import asyncio

from aiohttp import web

ANSWER = (
    b'{"model_name":"bench","model_version":"shadow","outputs":[{"name":"probabilities",'
    b'"datatype":"FP32","shape":[1,3],"data":[0.1,0.7,0.2]}]}'
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay", type=float, default=0.1, help="seconds before answering")
    args = parser.parse_args()

    async def answer(request: web.Request) -> web.Response:
        await request.read()
        await asyncio.sleep(args.delay)
        return web.Response(body=ANSWER, content_type="application/json")

    async def ready(request: web.Request) -> web.Response:
        return web.json_response({"ready": True})

    app = web.Application()
    app.router.add_get("/v2/health/ready", ready)
    app.router.add_route("*", "/{tail:.*}", answer)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
