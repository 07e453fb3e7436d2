"""The compiled routing table: pure logic, no I/O, rebuilt on every reload.

The routes document is turned into an immutable :class:`RouteTable` once per
reload, so the per-request path only does a dict lookup and a bisect. The
handler takes one reference to the table when a request starts, which is what
makes a swap atomic: in-flight requests finish on the routes they started with.

Bucket layout (why it is this way): each version owns an interval of the line
[0, 100) as wide as its weight. Versions are laid out in *natural order of
their names* (``v2`` before ``v10``; digits compare as numbers), an order that
does not depend on weights or on the order a writer happened to serialise the
document in. A sticky key hashes to a fixed point on the line, so when the
operator moves weight from one version to another only the points inside the
shrinking interval change version, and they all move the same way: as a canary
ramps up users move from stable to canary, never back and forth. (Ordering by
weight would flip the layout at 50/50 and reshuffle half the users.)

Versions marked ``ready: false`` get no traffic: the ready weighted versions
share the line in proportion to their weights until the version is ready again.
"""

from __future__ import annotations

import bisect
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from kanaria.routes import AutomationPolicy, Comparison, ModelRoutes, ReviewRoute, RoutesConfig

_DIGITS = re.compile(r"(\d+)")


def natural_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key that compares digit runs as numbers: v2 < v10, 2024-9 < 2024-10."""
    return tuple(
        (0, int(part)) if part.isdigit() else (1, part) for part in _DIGITS.split(name) if part
    )


def bucket_of(model: str, key: str) -> float:
    """Fixed point in [0, 100) for a sticky key (stable across processes and restarts).

    Python's ``hash`` is salted per process, so a cryptographic hash is used; the
    model name is mixed in so a user's bucket in one model says nothing about
    their bucket in another.
    """
    digest = hashlib.blake2b(f"{model}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") * 100.0 / 2.0**64


@dataclass(frozen=True)
class Version:
    """One routable version of a model."""

    name: str
    base_url: str
    """Base URL without a trailing slash; request paths are appended to it."""
    weight: float
    ready: bool
    policy: str | None = None
    """The x-kanaria-automation-policy value sent with each request (None: no policy)."""
    automation: AutomationPolicy | None = None


@dataclass(frozen=True)
class ModelTable:
    """Routes of one model, compiled for the request path."""

    name: str
    versions: dict[str, Version]
    order: tuple[str, ...]
    """Ready weighted versions in layout order (natural order of their names)."""
    bounds: tuple[float, ...]
    """Upper bound of each version's interval on [0, 100), same order as ``order``."""
    mirror_version: str | None
    mirror_percent: float
    sticky_header: str | None
    sticky_cookie: str | None
    override_header: str
    comparison: Comparison = field(default_factory=Comparison)
    review: ReviewRoute | None = None

    @classmethod
    def build(cls, name: str, routes: ModelRoutes) -> ModelTable:
        versions = {
            v: Version(
                v,
                str(b.url).rstrip("/"),
                float(b.weight),
                b.ready,
                b.automation.header() if b.automation is not None else None,
                b.automation,
            )
            for v, b in routes.versions.items()
        }
        live = sorted(
            (v for v in versions.values() if v.weight > 0 and v.ready),
            key=lambda v: natural_key(v.name),
        )
        total = sum(v.weight for v in live)
        bounds: list[float] = []
        running = 0.0
        for v in live:
            running += v.weight * 100.0 / total
            bounds.append(running)
        if bounds:
            bounds[-1] = 100.0  # no gap at the top from float rounding
        mirror = routes.mirror
        # an unready shadow gets no copies either (it would only count failures)
        mirrored = mirror is not None and mirror.percent > 0 and versions[mirror.version].ready
        return cls(
            name=name,
            versions=versions,
            order=tuple(v.name for v in live),
            bounds=tuple(bounds),
            mirror_version=mirror.version if mirror is not None and mirrored else None,
            mirror_percent=float(mirror.percent) if mirror else 0.0,
            sticky_header=routes.stickyKey.header if routes.stickyKey else None,
            sticky_cookie=routes.stickyKey.cookie if routes.stickyKey else None,
            override_header=routes.overrideHeader,
            comparison=routes.comparison,
            review=routes.review,
        )

    def choose(self, point: float) -> Version | None:
        """The version that owns ``point`` in [0, 100); None when nothing is ready."""
        if not self.order:
            return None
        i = bisect.bisect_right(self.bounds, point)
        return self.versions[self.order[min(i, len(self.order) - 1)]]

    def fallback(self, failed: str, point: float) -> Version | None:
        """Another ready weighted version to retry on after ``failed`` refused a connection.

        The remaining versions share the line in proportion to their weights, so
        retries spread the way primary traffic does.
        """
        rest = [self.versions[v] for v in self.order if v != failed]
        if not rest:
            return None
        total = sum(v.weight for v in rest)
        target = point * total / 100.0
        running = 0.0
        for v in rest:
            running += v.weight
            if target < running:
                return v
        return rest[-1]


@dataclass(frozen=True)
class RouteTable:
    """All models of one routes document."""

    models: dict[str, ModelTable]
    revision: str

    @classmethod
    def build(cls, config: RoutesConfig) -> RouteTable:
        return cls(
            models={name: ModelTable.build(name, r) for name, r in config.models.items()},
            revision=config.revision,
        )

    @classmethod
    def empty(cls) -> RouteTable:
        return cls(models={}, revision="")

    def mirrors(self) -> bool:
        """Whether any model copies requests to a shadow (the mirror worker is needed)."""
        return any(m.mirror_version is not None for m in self.models.values())


def weights(table: RouteTable) -> Sequence[tuple[str, str, float]]:
    """(model, version, configured weight) for every version, for the weight gauge."""
    return [(m.name, v.name, v.weight) for m in table.models.values() for v in m.versions.values()]
