"""``python -m kanaria`` is the ``kanaria`` command."""

from kanaria.cli import main

raise SystemExit(main())
