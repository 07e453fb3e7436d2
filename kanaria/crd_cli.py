"""``kanaria crd``: print (or write) the ModelDeployment CRD generated from kanaria.api."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kanaria.crd import crd_yaml


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        help="write the CRD to this file instead of standard output "
        "(`make crd` writes manifests/crds/modeldeployments.kanaria.io.yaml)",
    )


def run(args: argparse.Namespace) -> int:
    text = crd_yaml()
    out: Path | None = args.output
    if out is None:
        sys.stdout.write(text)
        return 0
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        print(f"kanaria crd: cannot write {out}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0
