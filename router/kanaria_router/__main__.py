"""``python -m kanaria_router``: the same as ``kanaria route``."""

from __future__ import annotations

import sys

from kanaria_router.cli import main

if __name__ == "__main__":
    sys.exit(main())
