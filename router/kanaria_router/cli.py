"""``kanaria route`` (and ``python -m kanaria_router``): run the router.

Flags override the ``KANARIA_*`` environment (see ``settings.py``). Exit codes:
0 after a clean shutdown, 2 for a bad flag, setting or initial routes file.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError


def configure(parser: argparse.ArgumentParser) -> None:
    """Flags of ``kanaria route``."""
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="routes document (YAML); reloaded within --reload-interval when it changes",
    )
    source.add_argument(
        "--configmap",
        metavar="NAMESPACE/NAME",
        help="watch the routes.yaml key of this ConfigMap (in-cluster config or kubeconfig)",
    )
    parser.add_argument(
        "--kubeconfig", type=Path, help="kubeconfig for --configmap outside a cluster"
    )
    parser.add_argument("--host", help="address to listen on (default 0.0.0.0)")
    parser.add_argument("--port", type=int, help="port to listen on (default 8080)")
    parser.add_argument(
        "--reload-interval", type=float, help="seconds between routes file checks (default 0.2)"
    )
    parser.add_argument(
        "--bearer-tokens-file", type=Path, help="file of accepted bearer tokens, one per line"
    )
    parser.add_argument("--auth-header", help="header carrying the token (Authorization)")
    parser.add_argument(
        "--rate-limit-rps", type=float, help="requests per second per client (0 = off)"
    )
    parser.add_argument("--rate-limit-burst", type=float, help="burst per client (20)")
    parser.add_argument(
        "--trusted-proxies", help="comma-separated IPs/CIDRs whose X-Forwarded-For is trusted"
    )
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    pairs = {
        "config": args.config,
        "configmap": args.configmap,
        "kubeconfig": args.kubeconfig,
        "host": args.host,
        "port": args.port,
        "reload_interval_s": args.reload_interval,
        "bearer_tokens_file": args.bearer_tokens_file,
        "auth_header": args.auth_header,
        "rate_limit_rps": args.rate_limit_rps,
        "rate_limit_burst": args.rate_limit_burst,
        "trusted_proxies": args.trusted_proxies,
    }
    return {k: v for k, v in pairs.items() if v is not None}


async def serve(settings: Any) -> int:
    """Serve until SIGTERM/SIGINT, then drain in-flight requests and exit."""
    from aiohttp import web  # noqa: PLC0415

    from kanaria_router.app import ROUTER_KEY, create_app  # noqa: PLC0415

    log = logging.getLogger("kanaria.router")
    try:
        app = create_app(settings)
    except ValueError as exc:
        log.error("cannot start: %s", exc)
        return 2
    runner = web.AppRunner(
        app, access_log=None, handle_signals=False, shutdown_timeout=settings.drain_timeout_s
    )
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port, backlog=1024)
    try:
        await site.start()
    except OSError as exc:
        log.error("cannot listen on %s:%s: %s", settings.host, settings.port, exc)
        await runner.cleanup()
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # Everything allocated so far (modules, settings, routes) lives as long as the
    # process: moving it out of the collector's generations makes each full
    # collection cheaper on the request path.
    gc.freeze()
    log.info("router listening on %s:%s", settings.host, settings.port)
    await stop.wait()
    log.info("shutting down: draining in-flight requests (up to %gs)", settings.drain_timeout_s)
    app[ROUTER_KEY].draining = True
    await runner.cleanup()
    log.info("router stopped")
    return 0


def run(args: argparse.Namespace) -> int:
    """Entry point of ``kanaria route``."""
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from kanaria_router.settings import RouterSettings  # noqa: PLC0415

    try:
        settings = RouterSettings(**_overrides(args))
    except ValidationError as exc:
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"])
            print(f"kanaria route: setting {where}: {err['msg']}", file=sys.stderr)
        return 2
    if settings.config is None and settings.configmap is None:
        print(
            "kanaria route: give --config FILE or --configmap NAMESPACE/NAME "
            "(or KANARIA_CONFIG / KANARIA_CONFIGMAP)",
            file=sys.stderr,
        )
        return 2
    factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop
    try:
        import uvloop  # noqa: PLC0415

        factory = uvloop.new_event_loop
    except ImportError:  # uvloop is optional: plain asyncio still works, slower
        pass
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(serve(settings))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m kanaria_router``."""
    parser = argparse.ArgumentParser(prog="kanaria-router", description="Kanaria traffic router")
    configure(parser)
    return run(parser.parse_args(argv))
