"""``python -m kanaria.monitoring [--check] [--root DIR]``: regenerate the monitoring pack."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kanaria.monitoring.render import stale_files, write_all


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m kanaria.monitoring",
        description="Write the dashboard, alert rules and monitors into manifests/ and the chart.",
    )
    parser.add_argument(
        "--root", type=Path, default=Path.cwd(), help="repository root (default: current dir)"
    )
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if a file is out of date"
    )
    args = parser.parse_args(argv)
    root: Path = args.root
    if not (root / "kanaria" / "monitoring").is_dir():
        print(f"error: {root} is not the Kanaria repository root (use --root)", file=sys.stderr)
        return 2
    if args.check:
        stale = stale_files(root)
        for path in stale:
            print(f"out of date: {path} (run: python -m kanaria.monitoring)", file=sys.stderr)
        return 1 if stale else 0
    try:
        changed = write_all(root)
    except OSError as exc:
        print(f"error: cannot write the monitoring files under {root}: {exc}", file=sys.stderr)
        return 1
    for path in changed:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
