"""What every handler shares: the loaded model, the batcher, monitoring, request ids.

Its own module so that the infer handler and the FastAPI app both depend on it
and not on each other (they used to import each other for this).
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from dataclasses import dataclass, field

from kanaria_server.batching import Batcher
from kanaria_server.errors import NotFoundError, NotReadyError
from kanaria_server.feedback import FeedbackStore
from kanaria_server.model import LoadedModel
from kanaria_server.monitoring import Monitor
from kanaria_server.predlog import PredictionLog
from kanaria_server.settings import Settings


class RequestIds:
    """Request ids for requests that bring none: unique per process (a counter) and
    across replicas (a random prefix), and cheap enough for the hot path."""

    def __init__(self) -> None:
        self._prefix = uuid.uuid4().hex[:12]
        self._ids = itertools.count(1)

    def new(self) -> str:
        return f"{self._prefix}-{next(self._ids)}"


@dataclass
class ServerState:
    """The handlers' shared state: ``model`` and ``batcher`` are set once the model has loaded."""

    settings: Settings
    monitor: Monitor
    feedback: FeedbackStore
    model: LoadedModel | None = None
    batcher: Batcher | None = None
    predlog: PredictionLog | None = None
    load_error: str | None = None
    ids: RequestIds = field(default_factory=RequestIds)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def check_model(self, name: str, version: str | None) -> LoadedModel:
        """The model if ``name``/``version`` are the ones served and it is ready, else 404/503."""
        s = self.settings
        if name != s.name:
            raise NotFoundError(f"unknown model {name!r}; this server serves {s.name!r}")
        if version is not None and version != s.version:
            raise NotFoundError(
                f"model {name!r} has no version {version!r}; "
                f"this server serves version {s.version!r}"
            )
        if self.model is None or self.batcher is None:
            reason = self.load_error or "loading and warming up"
            raise NotReadyError(f"model {name!r} is not ready: {reason}")
        return self.model
