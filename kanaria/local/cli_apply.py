"""``kanaria apply -f md.yaml``: hand a changed ModelDeployment to a running ``kanaria up``.

The file is validated here, with field-path errors, and written atomically as
``spec.json`` into the model's state directory; ``kanaria up`` compares it with
the spec it runs on every pass, so a new ``spec.model`` starts a rollout and an
unchanged file changes nothing.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from kanaria.api import ManifestError
from kanaria.local import manifest
from kanaria.local.statedir import StateDir, StateError, state_root
from kanaria.local.supervisor import pid_alive


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--file", required=True, help="ModelDeployment YAML file")
    parser.add_argument(
        "--state-dir",
        default=None,
        help="state root of `kanaria up` (default: $KANARIA_STATE_DIR or ./.kanaria)",
    )


def _state_dir_flag(state_dir: str | None) -> str:
    """The ``--state-dir`` a suggested command needs to find the same state (quoted for a shell)."""
    return f" --state-dir {shlex.quote(state_dir)}" if state_dir else ""


def run(args: argparse.Namespace) -> int:
    try:
        md, document = manifest.load(args.file)
    except ManifestError as exc:
        print(f"kanaria apply: {exc}", file=sys.stderr)
        return 2
    name = md.metadata.name
    try:
        state_dir = StateDir.for_model(state_root(args.state_dir), name)
        state = state_dir.load()
    except StateError as exc:
        print(f"kanaria apply: {exc}", file=sys.stderr)
        return 1
    if manifest.digest(document) == state.specDigest:
        print(f"{name}: unchanged (running version {md.spec.model.version})")
        return 0
    state_dir.write_spec(document)
    running = state.upPid is not None and pid_alive(state.upPid)
    before = state.spec.get("spec", {}).get("model", {}).get("version")
    change = (
        f"model {before} -> {md.spec.model.version}: a rollout starts"
        if before != md.spec.model.version
        else "spec updated"
    )
    print(f"{name}: {change}")
    if not running:
        print(
            f"note: no `kanaria up` is running for {name}; the change applies when it starts "
            f"(kanaria up -f {args.file})",
            file=sys.stderr,
        )
    print(f"watch it: kanaria status {name} -w{_state_dir_flag(args.state_dir)}")
    return 0
