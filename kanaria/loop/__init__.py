"""The control loop around the rollout engine, written once for every actuator.

``kanaria up`` (:mod:`kanaria.local.runtime`) and the operator
(``kanaria_operator.reconcile``) are adapters: they read the world (readiness, a
command, measurements, what runs) and write it (start, scale, route, stop, status).
What a pass does, and in which order, lives here:

- :mod:`kanaria.loop.cycle` -- one observe -> decide -> act pass (``run_pass``);
- :mod:`kanaria.loop.effects` -- what to do, planned from the decided status against
  what actually runs, in a fixed order;
- :mod:`kanaria.loop.routes` -- the one routes builder and revision;
- :mod:`kanaria.loop.identity` -- what counts as the same artifact, and the server
  settings a version runs with;
- :mod:`kanaria.loop.actuator` -- the adapter protocol.
"""

from kanaria.loop.actuator import Actuator, Reading
from kanaria.loop.cycle import PassOutcome, run_pass
from kanaria.loop.effects import RoutesSeen, RunningVersion, World
from kanaria.loop.identity import artifact_of, server_of
from kanaria.loop.routes import build_routes

__all__ = [
    "Actuator",
    "PassOutcome",
    "Reading",
    "RoutesSeen",
    "RunningVersion",
    "World",
    "artifact_of",
    "build_routes",
    "run_pass",
    "server_of",
]
