"""Benchmark baseline: the naive Python proxy (FastAPI + httpx), one worker.

This is what a first router would look like; the router benchmark runs it next
to Kanaria's router so the gap is measured, not claimed.

    python -m bench.router_fastapi_proxy --port P --upstream http://127.0.0.1:S
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import uvicorn
from fastapi import FastAPI, Request, Response


def build(upstream: str) -> FastAPI:
    client = httpx.AsyncClient(
        base_url=upstream, limits=httpx.Limits(max_connections=256, max_keepalive_connections=256)
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await client.aclose()

    app = FastAPI(lifespan=lifespan)

    @app.api_route("/{path:path}", methods=["GET", "POST"])
    async def forward(path: str, request: Request) -> Response:
        body = await request.body()
        upstream_response = await client.request(
            request.method,
            "/" + path,
            content=body,
            headers={"content-type": request.headers.get("content-type", "application/json")},
        )
        return Response(
            content=upstream_response.content,
            status_code=upstream_response.status_code,
            media_type=upstream_response.headers.get("content-type"),
        )

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    args = parser.parse_args()
    uvicorn.run(
        build(args.upstream), host="127.0.0.1", port=args.port, workers=1, log_level="warning",
        access_log=False,
    )  # fmt: skip


if __name__ == "__main__":
    main()
