"""The ``kanaria`` command.

Each subcommand lives in the module that owns it and is loaded only when it is
run, so ``kanaria --help`` stays fast and a laptop without the operator extra
can still run ``kanaria up``. A command module exposes two functions::

    def configure(parser: argparse.ArgumentParser) -> None: ...
    def run(args: argparse.Namespace) -> int: ...

and keeps heavy imports (FastAPI, onnxruntime, kopf) inside ``run``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType

from kanaria import __version__


@dataclass(frozen=True)
class Command:
    """A subcommand: where it lives and one line for ``--help``."""

    module: str
    help: str
    extra: str
    """The pip extra that provides the module's dependencies, for error messages."""


COMMANDS: dict[str, Command] = {
    "serve-model": Command(
        "kanaria_server.cli", "serve one ONNX model version (Open Inference Protocol V2)", "server"
    ),
    "profile": Command(
        "kanaria_server.profile_cli",
        "build a model's reference input profile for drift detection",
        "server",
    ),
    "route": Command(
        "kanaria_router.cli", "run the traffic router (split, stick, mirror, compare)", "router"
    ),
    "operator": Command("kanaria_operator.cli", "run the Kubernetes operator", "operator"),
    "crd": Command(
        "kanaria.crd_cli", "print the ModelDeployment CRD generated from kanaria.api", ""
    ),
    "up": Command(
        "kanaria.local.cli_up",
        "run a ModelDeployment locally: servers, router, Prometheus, engine",
        "local",
    ),
    "apply": Command(
        "kanaria.local.cli_apply",
        "apply a changed ModelDeployment file to a running `kanaria up`",
        "",
    ),
    "status": Command(
        "kanaria.control_cli", "show a rollout: versions, weights, step, measurements", ""
    ),
    "promote": Command("kanaria.control_cli", "promote the candidate one step (or --full)", ""),
    "abort": Command("kanaria.control_cli", "abort the rollout: 100% back to stable", ""),
    "pause": Command("kanaria.control_cli", "pause the rollout where it is", ""),
    "resume": Command("kanaria.control_cli", "resume a paused rollout", ""),
    "retry": Command("kanaria.control_cli", "restart a rolled-back candidate", ""),
    "report": Command(
        "kanaria.local.report", "plot weights and gate metrics of a rollout to a PNG", "local"
    ),
}


def _load(name: str, command: Command) -> ModuleType | None:
    try:
        return importlib.import_module(command.module)
    except ModuleNotFoundError as exc:
        hint = f" (pip install 'kanaria[{command.extra}]')" if command.extra else ""
        print(f"kanaria {name}: missing dependency {exc.name!r}{hint}", file=sys.stderr)
        return None


def build_parser(argv: Sequence[str]) -> tuple[argparse.ArgumentParser, ModuleType | None]:
    """Build the parser, configuring only the subcommand that was asked for."""
    parser = argparse.ArgumentParser(
        prog="kanaria",
        description="Progressive delivery of ONNX models: shadow, canary and blue-green.",
    )
    parser.add_argument("--version", action="version", version=f"kanaria {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = next((a for a in argv if not a.startswith("-")), None)
    module: ModuleType | None = None
    for name, command in COMMANDS.items():
        # `help` is %-formatted by argparse (in `kanaria --help`), `description` is printed as is
        p = sub.add_parser(name, help=command.help.replace("%", "%%"), description=command.help)
        p.set_defaults(command=name)
        if name == chosen:
            module = _load(name, command)
            if module is not None:
                module.configure(p)
    return parser, module


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser, module = build_parser(args_list)
    args = parser.parse_args(args_list)
    if args.command is None:
        parser.print_help()
        return 2
    if module is None:
        return 2
    try:
        code: int = module.run(args)
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    raise SystemExit(main())
