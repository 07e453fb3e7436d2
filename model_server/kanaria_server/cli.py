"""``kanaria serve-model``: serve one ONNX model version over the Open Inference Protocol.

Every setting of :class:`kanaria_server.settings.Settings` is a flag (``max_batch_size``
is ``--max-batch-size``) and an environment variable (``KANARIA_MAX_BATCH_SIZE``);
flags win. The flags are generated from the settings by :mod:`kanaria.settings_cli`
(shared with the router and the operator), so their help texts (with units) are
written once.

Exit codes: 0 after a clean shutdown (SIGTERM/SIGINT drain in-flight requests
first), 2 for invalid settings or a model that cannot be loaded (missing,
corrupt, SHA-256 mismatch, unusable profile): the server fails loudly rather
than staying unready, so a wrong model shows up as a crash-looping pod or a
failed `kanaria up`, not as a silent outage.
"""

from __future__ import annotations

import argparse
import logging
import math
import signal
import sys

from kanaria import settings_cli
from kanaria_server.settings import Settings

PROG = "kanaria serve-model"


def configure(parser: argparse.ArgumentParser) -> None:
    """One flag per setting; defaults stay None so the environment can fill them in."""
    settings_cli.add_flags(parser, Settings)


def run(args: argparse.Namespace) -> int:
    try:
        settings = settings_cli.load(Settings, args)
    except settings_cli.InvalidSettingsError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    return serve(settings)


def serve(settings: Settings) -> int:
    """Run the server until SIGTERM/SIGINT; returns the process exit code."""
    import uvicorn  # noqa: PLC0415 (heavy; only when serving)

    from kanaria_server.app import create_app  # noqa: PLC0415

    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    exit_code = 0
    server: uvicorn.Server | None = None

    def fatal(message: str) -> None:
        nonlocal exit_code
        print(f"{PROG}: cannot serve model: {message}", file=sys.stderr, flush=True)
        exit_code = 2
        if server is not None:
            server.should_exit = True

    app = create_app(settings, on_fatal=fatal)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=math.ceil(settings.drain_timeout_s),
        lifespan="on",
    )
    server = uvicorn.Server(config)
    # uvicorn drains on SIGTERM, then re-raises the signal to the handler that was in
    # place before it started; a no-op one makes a drained shutdown exit 0, not -15.
    signal.signal(signal.SIGTERM, lambda _sig, _frame: None)
    server.run()
    if exit_code:
        return exit_code
    return 0 if server.started else 1
