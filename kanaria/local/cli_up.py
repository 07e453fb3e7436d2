"""``kanaria up -f md.yaml``: run a ModelDeployment on this machine, no cluster needed.

Starts one model server per live version, the router, and Prometheus (or the
embedded metric source), then drives the rollout engine until Ctrl-C/SIGTERM,
which stops every child by PID. State lives in ``<state-dir>/<name>/``:
running ``kanaria up`` again resumes the rollout where it was.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType

from kanaria.api import ManifestError


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--file", required=True, help="ModelDeployment YAML file")
    parser.add_argument(
        "--prometheus",
        default="auto",
        metavar="auto|PATH|off",
        help="metric source: a real Prometheus (auto: the `prometheus` on PATH, else "
        "embedded; PATH: that binary) or off (embedded scraper). Default auto",
    )
    parser.add_argument(
        "--state-dir",
        default=None,
        help="state root; the model's state goes to <root>/<name> "
        "(default: $KANARIA_STATE_DIR or ./.kanaria)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=None,
        help="router port on 127.0.0.1 (default: the previous run's, else 8080)",
    )


def run(args: argparse.Namespace) -> int:
    from kanaria.local import manifest  # noqa: PLC0415 (keeps `kanaria --help` fast)
    from kanaria.local.prometheus import PrometheusNotFoundError, find_binary  # noqa: PLC0415
    from kanaria.local.runtime import Options, Runtime, UpError  # noqa: PLC0415
    from kanaria.local.statedir import StateDir, StateError, state_root  # noqa: PLC0415

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stdout
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per health check is noise
    if args.port is not None and not 1 <= args.port <= 65535:
        print(f"kanaria up: --port {args.port}: must be 1-65535", file=sys.stderr)
        return 2
    try:
        md, document = manifest.load(args.file)
        binary = find_binary(args.prometheus)
    except (ManifestError, PrometheusNotFoundError) as exc:
        print(f"kanaria up: {exc}", file=sys.stderr)
        return 2
    try:
        state_dir = StateDir.for_model(state_root(args.state_dir), md.metadata.name)
    except StateError as exc:
        print(f"kanaria up: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        runtime = Runtime(
            state_dir, md, document, Options(prometheus=binary, router_port=args.port)
        )
    except (UpError, StateError) as exc:
        print(f"kanaria up: {exc}", file=sys.stderr)
        return 1
    try:
        runtime.start()
        runtime.pass_once()
        name = md.metadata.name
        print(
            f"{name}: serving at {runtime.state.routerUrl}/v2/models/{name}/infer\n"
            f"  state and logs in {state_dir.path}\n"
            f"  watch it:  kanaria status {name} -w"
            + (f" --state-dir {args.state_dir}" if args.state_dir else "")
            + "\n  Ctrl-C stops everything",
            flush=True,
        )
        runtime.run(stop)
    except UpError as exc:
        print(f"kanaria up: {exc}", file=sys.stderr)
        return 1
    finally:
        runtime.shutdown()
    print(
        f"stopped every process; the rollout state is kept in {state_dir.path}: "
        f"`kanaria up -f {args.file}` resumes it",
        flush=True,
    )
    return 0
