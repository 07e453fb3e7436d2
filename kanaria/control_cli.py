"""``kanaria status|promote|abort|pause|resume|retry NAME``: watch and steer a rollout.

Locally (the default) the verbs append to ``<state-dir>/<NAME>/commands.jsonl``
and ``kanaria up`` turns each line into an engine observation once. With
``-n/--namespace``, ``--kubeconfig`` or ``--context`` they act on a cluster
instead: they set the annotation ``kanaria.io/command: "<verb> <nonce>"`` on the
ModelDeployment (metadata, never ``spec``: GitOps tools own spec) and the
operator applies it once. ``status`` reads the state directory or the object's
status and prints the same view either way.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import time
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from kanaria.api import (
    COMMAND_ANNOTATION,
    GROUP,
    PLURAL,
    VERSION,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
)
from kanaria.local import view
from kanaria.local.statedir import StateDir, StateError, append_command, state_root
from kanaria.local.supervisor import pid_alive

CONFIRM_TIMEOUT_S = 15.0
"""How long a local verb waits for ``kanaria up`` to acknowledge it."""


class ControlError(Exception):
    """A verb that cannot be carried out; the message says what to do."""


def configure(parser: argparse.ArgumentParser) -> None:
    command = parser.get_default("command")
    parser.add_argument("name", metavar="NAME", help="the ModelDeployment's name")
    if command == "status":
        parser.add_argument(
            "-w", "--watch", action="store_true", help="refresh in place until Ctrl-C"
        )
        parser.add_argument(
            "--interval", type=float, default=1.0, help="seconds between refreshes with -w"
        )
    if command == "promote":
        parser.add_argument(
            "--full", action="store_true", help="skip the remaining steps: promote to 100%% now"
        )
    if command != "status":
        parser.add_argument(
            "--no-wait",
            action="store_true",
            help="do not wait for `kanaria up` to acknowledge the command (local mode)",
        )
    parser.add_argument(
        "--state-dir",
        default=None,
        help="local mode: state root of `kanaria up` (default: $KANARIA_STATE_DIR or ./.kanaria)",
    )
    cluster = parser.add_argument_group("cluster mode (any of these selects it)")
    cluster.add_argument("-n", "--namespace", help="namespace of the ModelDeployment")
    cluster.add_argument("--kubeconfig", help="kubeconfig file (default: the usual lookup)")
    cluster.add_argument("--context", help="kubeconfig context")


def _verb(args: argparse.Namespace) -> str:
    command: str = args.command
    if command == "promote" and getattr(args, "full", False):
        return "promote-full"
    return command


def _cluster_mode(args: argparse.Namespace) -> bool:
    return bool(args.namespace or args.kubeconfig or args.context)


def run(args: argparse.Namespace) -> int:
    try:
        if _cluster_mode(args):
            return _run_cluster(args)
        return _run_local(args)
    except (ControlError, StateError) as exc:
        print(f"kanaria {args.command}: {exc}", file=sys.stderr)
        return 1


# ---------------------------------------------------------------------- local


def _local_view(state_dir: StateDir) -> str:
    state = state_dir.load()
    try:
        spec = ModelDeploymentSpec.model_validate(state.spec.get("spec", {}))
        status = ModelDeploymentStatus.model_validate(state.status or {})
    except ValidationError as exc:
        raise StateError(f"{state_dir.state_file} holds an unreadable spec/status: {exc}") from exc
    running = state.upPid is not None and pid_alive(state.upPid)
    where = (
        f"kanaria up pid {state.upPid}, router {state.routerUrl}"
        if running
        else "kanaria up is not running"
    )
    endpoints = {
        v: f"127.0.0.1:{r.process.port} {r.health}".rstrip()
        for v, r in state.versions.items()
        if r.process is not None and running
    }
    problems = state.problems if running else []
    return view.render(state.name, spec, status, where, endpoints, problems=problems)


def _run_local(args: argparse.Namespace) -> int:
    state_dir = StateDir.for_model(state_root(args.state_dir), args.name)
    if args.command == "status":
        return _watch(lambda: _local_view(state_dir), args)
    state = state_dir.load()
    verb = _verb(args)
    nonce = append_command(state_dir, verb)
    running = state.upPid is not None and pid_alive(state.upPid)
    if not running:
        print(
            f"{verb} queued for {args.name} (nonce {nonce}); kanaria up is not running, "
            "it applies the command when it starts"
        )
        return 0
    if args.no_wait:
        print(f"{verb} sent to {args.name} (nonce {nonce})")
        return 0
    deadline = time.monotonic() + CONFIRM_TIMEOUT_S
    while time.monotonic() < deadline:
        outcome = state_dir.load().commandOutcome
        if outcome.get("nonce") == nonce:
            if outcome.get("outcome") == "ignored":
                print(f"{args.name}: {outcome.get('message')}", file=sys.stderr)
                return 1
            print(f"{verb} applied to {args.name}: {outcome.get('message')}")
            return 0
        time.sleep(0.2)
    print(
        f"{verb} sent to {args.name} (nonce {nonce}) but not acknowledged within "
        f"{CONFIRM_TIMEOUT_S:g}s; check `kanaria status {args.name}`",
        file=sys.stderr,
    )
    return 1


def _watch(render: Any, args: argparse.Namespace) -> int:
    if not args.watch:
        print(render())
        return 0
    tty = sys.stdout.isatty()
    try:
        while True:
            try:
                text = render()
            except StateError as exc:
                text = f"{args.name}: {exc}"
            stamp = datetime.now(UTC).strftime("%H:%M:%S UTC")
            if tty:
                sys.stdout.write("\x1b[H\x1b[J" + text + f"\n\n  {stamp}  (Ctrl-C to stop)\n")
            else:
                sys.stdout.write(f"--- {stamp}\n{text}\n")
            sys.stdout.flush()
            time.sleep(max(0.2, args.interval))
    except (KeyboardInterrupt, BrokenPipeError):  # Ctrl-C, or piped into `head`
        return 0


# ---------------------------------------------------------------------- cluster


def _custom_objects(args: argparse.Namespace) -> Any:
    try:
        from kubernetes import client, config  # noqa: PLC0415 (only cluster mode needs it)
        from kubernetes.config.config_exception import ConfigException  # noqa: PLC0415
    except ModuleNotFoundError as exc:
        raise ControlError(
            "cluster mode needs the Kubernetes client: pip install 'kanaria[operator]'"
        ) from exc
    try:
        api_client = config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=args.kubeconfig, context=args.context
        )
    except (ConfigException, OSError) as exc:
        raise ControlError(f"cannot load kubeconfig: {exc}") from exc
    return client.CustomObjectsApi(api_client)


def _api_call(what: str, call: Any) -> Any:
    from kubernetes.client.exceptions import ApiException  # noqa: PLC0415

    try:
        return call()
    except ApiException as exc:
        if exc.status == 404:
            raise ControlError(f"{what}: not found") from exc
        if exc.status in (401, 403):
            raise ControlError(f"{what}: not allowed ({exc.reason})") from exc
        raise ControlError(f"{what}: API server answered {exc.status} {exc.reason}") from exc
    except OSError as exc:
        raise ControlError(f"{what}: cannot reach the API server: {exc}") from exc


def _run_cluster(args: argparse.Namespace) -> int:
    api = _custom_objects(args)
    namespace = args.namespace or "default"
    what = f"ModelDeployment {namespace}/{args.name}"
    if args.command == "status":

        def render() -> str:
            obj = _api_call(
                what,
                lambda: api.get_namespaced_custom_object(
                    GROUP, VERSION, namespace, PLURAL, args.name
                ),
            )
            try:
                spec = ModelDeploymentSpec.model_validate(obj.get("spec", {}))
                status = ModelDeploymentStatus.model_validate(obj.get("status") or {})
            except ValidationError as exc:
                raise ControlError(f"{what} has a spec/status this CLI cannot read: {exc}") from exc
            return view.render(args.name, spec, status, f"namespace {namespace}")

        return _watch(render, args)
    verb = _verb(args)
    nonce = secrets.token_hex(6)
    body = {"metadata": {"annotations": {COMMAND_ANNOTATION: f"{verb} {nonce}"}}}
    _api_call(
        what,
        lambda: api.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, args.name, body
        ),
    )
    print(f"{verb} sent to {what} (nonce {nonce})")
    if args.no_wait:
        return 0
    deadline = time.monotonic() + CONFIRM_TIMEOUT_S
    while time.monotonic() < deadline:
        obj = _api_call(
            what,
            lambda: api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, args.name),
        )
        status = obj.get("status") or {}
        if status.get("lastCommand") == nonce:
            print(f"applied: {status.get('phase')} {status.get('message', '')}")
            return 0
        time.sleep(0.5)
    print(
        f"not acknowledged within {CONFIRM_TIMEOUT_S:g}s: is the operator running? "
        f"(kanaria status {args.name} -n {namespace})",
        file=sys.stderr,
    )
    return 1
