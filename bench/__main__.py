"""``make bench``: run every benchmark suite (or ``--only NAME``) and print tables.

Each suite is a module ``bench.<name>`` with ``main(argv) -> int``; suites
measure their own baselines in the same run, because absolute numbers on a
shared 2-core machine drift from one run to the next.
"""

from __future__ import annotations

import argparse
import importlib
import sys

SUITES = ["model_server", "router", "automation"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make bench", description=__doc__)
    parser.add_argument("--only", choices=SUITES, action="append", help="run only these suites")
    parser.add_argument(
        "--quick", action="store_true", help="short runs (smoke test of the harness)"
    )
    args, rest = parser.parse_known_args(argv)
    status = 0
    for name in args.only or SUITES:
        module = importlib.import_module(f"bench.{name}")
        print(f"\n=== bench {name} ===", flush=True)
        status |= module.main([*rest, *(["--quick"] if args.quick else [])])
    return status


if __name__ == "__main__":
    sys.exit(main())
