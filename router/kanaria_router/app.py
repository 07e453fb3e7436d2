"""``create_app(settings)``: the router as an aiohttp application.

aiohttp (server and pooled client) on uvloop rather than FastAPI + httpx: the
router sits in every prediction's path and must stay above 3,000 req/s on one
core, which FastAPI + httpx cannot (see docs/contracts.md and bench/router.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiohttp import web

from kanaria_router.metrics import RouterMetrics
from kanaria_router.proxy import Router
from kanaria_router.settings import RouterSettings
from kanaria_router.sources import (
    ConfigMapWatcher,
    parse_configmap_ref,
    read_routes_file,
    watch_file,
)
from kanaria_router.tokens import TOKENS_FILE, read_tokens_file

log = logging.getLogger("kanaria.router")

ROUTER_KEY = web.AppKey("router", Router)

SERVER = "kanaria-router"
"""``Server`` header of every answer: aiohttp's default names Python's and its own
versions, which tells an attacker which advisories to try."""


async def _server_header(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Server"] = SERVER


def create_app(settings: RouterSettings) -> web.Application:
    """Build the application; with a routes file, its first version must be valid.

    Raises ``ValueError`` with a readable message when the routes file is missing
    or invalid, the ConfigMap reference is malformed, or the bearer tokens file is
    missing or lists no tokens: a router must not start serving with no routes, or
    with nobody able to authenticate, by mistake.
    """
    router = Router(settings, RouterMetrics())
    if settings.config is not None and settings.configmap is not None:
        raise ValueError("give either a routes file or a ConfigMap, not both")
    if settings.config is not None:
        text = read_routes_file(settings.config)
        if not router.apply_text(text, str(settings.config)):
            raise ValueError(f"routes file {settings.config} is invalid (see the log line above)")
    configmap = parse_configmap_ref(settings.configmap) if settings.configmap else None
    tokens_file = settings.bearer_tokens_file
    if tokens_file is not None:
        router.set_file_tokens(read_tokens_file(tokens_file))

    app = web.Application(client_max_size=settings.max_body_bytes)
    app[ROUTER_KEY] = router
    app.router.add_get("/v2/health/live", router.live)
    app.router.add_get("/v2/health/ready", router.ready)
    app.router.add_get("/v2", router.server_metadata)
    app.router.add_get("/metrics", router.prometheus)
    app.router.add_route("*", "/v2/models/{tail:.+}", router.handle_model)
    app.router.add_route("*", "/{tail:.*}", router.not_found)

    tasks: list[asyncio.Task[None]] = []
    watchers: list[ConfigMapWatcher] = []

    async def on_startup(_: web.Application) -> None:
        await router.start()
        if settings.config is not None:
            tasks.append(
                asyncio.create_task(
                    watch_file(settings.config, settings.reload_interval_s, router.apply_text)
                )
            )
        if tokens_file is not None:
            tasks.append(
                asyncio.create_task(
                    watch_file(
                        tokens_file,
                        settings.reload_interval_s,
                        router.apply_tokens_text,
                        TOKENS_FILE,
                    )
                )
            )
        if configmap is not None:
            watcher = ConfigMapWatcher(
                configmap[0],
                configmap[1],
                settings.kubeconfig,
                asyncio.get_running_loop(),
                router.apply_text,
            )
            watcher.start()
            watchers.append(watcher)

    async def on_shutdown(_: web.Application) -> None:
        router.draining = True

    async def on_cleanup(_: web.Application) -> None:
        for watcher in watchers:
            watcher.stop()
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await router.stop()

    app.on_response_prepare.append(_server_header)
    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)
    app.on_cleanup.append(on_cleanup)
    return app
