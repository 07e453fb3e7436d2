"""``python -m kanaria_server ...`` is ``kanaria serve-model ...``."""

from __future__ import annotations

import sys

from kanaria.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["serve-model", *sys.argv[1:]]))
