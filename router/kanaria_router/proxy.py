"""The request path: pick a version, forward, answer, mirror, count.

Everything a request needs is read from one reference to the current
:class:`RouteTable`, taken when it starts, so a reload swaps routes atomically
and in-flight requests finish on the routes they began with.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import random
import time
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from kanaria import __version__
from kanaria.review import ReviewMetrics
from kanaria.routes import RoutesConfig
from kanaria_router import errors
from kanaria_router.clients import client_address
from kanaria_router.feedback import ServedBy, group_by_version, parse_feedback
from kanaria_router.headers import REQUEST_DROP, RESPONSE_DROP, cookie_value, forwardable
from kanaria_router.metrics import UNROUTED, RouterMetrics
from kanaria_router.mirror import Mirrorer, MirrorJob
from kanaria_router.ratelimit import RateLimiter, retry_after
from kanaria_router.review import (
    CONFIDENCE_HEADER,
    DECISION_HEADER,
    POLICY_HEADER,
    SPOT_CHECK_HEADER,
    ReviewHub,
)
from kanaria_router.settings import RouterSettings
from kanaria_router.table import ModelTable, RouteTable, Version, bucket_of
from kanaria_router.tokens import expected_form, parse_tokens, presented_token

log = logging.getLogger("kanaria.router")

REQUEST_ID = "x-request-id"
FORWARDED_FOR = "x-forwarded-for"
VERSION_HEADER = "x-kanaria-version"
"""Response header naming the version that answered."""

ATTEMPTS = 2
"""Sends per request at most: the first, and one retry where the retry table allows it."""


class Upstream:
    """A backend answer, read in full."""

    __slots__ = ("body", "headers", "refused", "status", "version")

    def __init__(
        self, version: Version, status: int, headers: CIMultiDictProxy[str], body: bytes
    ) -> None:
        self.version = version
        self.status = status
        self.headers = headers
        self.body = body
        self.refused: str | None = None
        """Version that refused the connection before this answer came from a retry."""


class Router:
    """State of one router: current routes, client pool, mirror, limits, metrics."""

    def __init__(self, settings: RouterSettings, metrics: RouterMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.table = RouteTable.empty()
        self.loaded = False
        self.draining = False
        self.last_text: str | None = None
        self.session: aiohttp.ClientSession | None = None
        self.served = ServedBy(settings.feedback_ids)
        self.ejected: dict[tuple[str, str], float] = {}
        """(model, version) -> monotonic time until which weighted routing skips it."""
        self.static_tokens = [t.get_secret_value().encode() for t in settings.bearer_tokens]
        self.tokens = list(self.static_tokens)
        """Accepted tokens: the settings' plus the tokens file's (see :meth:`set_file_tokens`)."""
        self.auth = bool(self.tokens) or settings.bearer_tokens_file is not None
        """Whether model endpoints require a token; fixed for the process's life, so
        an emptied tokens file closes the router instead of opening it."""
        self.limiter = (
            RateLimiter(settings.rate_limit_rps, settings.rate_limit_burst)
            if settings.rate_limit_rps > 0
            else None
        )
        self.timeout = aiohttp.ClientTimeout(
            total=settings.backend_timeout_s, sock_connect=settings.connect_timeout_s
        )
        self.mirror = Mirrorer(
            metrics,
            settings.mirror_queue_size,
            settings.mirror_concurrency,
            settings.mirror_timeout_s,
            settings.disagreement_logs_per_minute,
            settings.mirror_priority,
            settings.mirror_queue_bytes,
        )
        self.review = ReviewHub(ReviewMetrics(metrics.registry))

    # --- tokens -----------------------------------------------------------

    def set_file_tokens(self, tokens: list[str]) -> None:
        """Accept the settings' tokens plus ``tokens`` (the tokens file's) from now on."""
        self.tokens = self.static_tokens + [t.encode() for t in tokens]

    def apply_tokens_text(self, text: str, source: str) -> None:
        """A changed tokens file: swap the accepted tokens (an empty file accepts none)."""
        tokens = parse_tokens(text)
        self.set_file_tokens(tokens)
        if tokens:
            log.info("bearer tokens reloaded from %s: %d token(s)", source, len(tokens))
        else:
            log.error(
                "bearer tokens file %s lists no tokens: refusing every token it listed before",
                source,
            )

    # --- routes -----------------------------------------------------------

    def apply(self, config: RoutesConfig, source: str) -> None:
        """Swap in new routes (one reference assignment: atomic for every request)."""
        table = RouteTable.build(config)
        self.table = table
        self.ejected = {}  # new routes, new chances (URLs may have changed)
        self.loaded = True
        self.metrics.set_weights(table)
        self.metrics.set_thresholds(table)
        self.review.sync(table)
        self.metrics.reloads.labels("applied").inc()
        self.metrics.set_revision(config.revision)
        if table.mirrors():
            self.mirror.ensure_started()
        summary = "; ".join(
            f"{m.name}: "
            + ", ".join(
                f"{v.name}={v.weight:g}%{'' if v.ready else ' (unready)'}"
                for v in m.versions.values()
            )
            + (f", mirror {m.mirror_version} {m.mirror_percent:g}%" if m.mirror_version else "")
            for m in table.models.values()
        )
        log.info(
            "routes applied from %s (revision %r): %s",
            source,
            config.revision,
            summary or "no models",
        )

    def apply_text(self, text: str, source: str) -> bool:
        """Parse and apply a routes document; on any problem keep the old routes and log why."""
        if text == self.last_text:
            return True
        self.last_text = text
        try:
            config = RoutesConfig.from_yaml(text)
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            self.metrics.reloads.labels("rejected").inc()
            detail = " ".join(str(exc).split())
            log.error(
                "routes from %s rejected, keeping the previous routes (revision %r): %s",
                source,
                self.table.revision,
                detail,
            )
            return False
        self.apply(config, source)
        return True

    # --- lifecycle ----------------------------------------------------------

    async def start(self) -> None:
        limit = self.settings.backend_connections
        connector = aiohttp.TCPConnector(
            limit=0, limit_per_host=limit, ttl_dns_cache=10, keepalive_timeout=30
        )
        self.session = aiohttp.ClientSession(
            connector=connector,
            timeout=self.timeout,
            auto_decompress=True,
            skip_auto_headers=("User-Agent",),
            # clients' Cookie headers are forwarded as they are; a jar would only cost time
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        if self.table.mirrors():
            await self.mirror.start()  # ready before the first copy, when routes mirror at boot
        host = self.settings.host if self.settings.host not in ("0.0.0.0", "::", "") else None
        token = (
            {self.settings.auth_header: f"Bearer {self.tokens[0].decode()}"} if self.tokens else {}
        )
        self.review.attach(f"http://{host or '127.0.0.1'}:{self.settings.port}", token)

    async def stop(self) -> None:
        await self.mirror.stop()
        await self.review.aclose()
        if self.session is not None:
            await self.session.close()

    # --- non-model endpoints ----------------------------------------------

    async def live(self, request: web.Request) -> web.Response:
        return web.json_response({"live": True})

    async def ready(self, request: web.Request) -> web.Response:
        if self.loaded and not self.draining:
            return web.json_response({"ready": True})
        reason = "shutting down" if self.draining else "no routes loaded yet"
        return web.json_response({"ready": False, "reason": reason}, status=503)

    async def server_metadata(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"name": "kanaria-router", "version": __version__, "extensions": []}
        )

    async def prometheus(self, request: web.Request) -> web.Response:
        return web.Response(
            body=self.metrics.exposition(),
            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
        )

    async def not_found(self, request: web.Request) -> web.Response:
        return errors.error_response(
            404,
            f"no route for {request.method} {request.path}: the router answers /v2, "
            "/v2/health/live, /v2/health/ready, /v2/models/{name}/... and /metrics",
        )

    # --- model endpoints ----------------------------------------------------

    def _guard(self, request: web.Request) -> None:
        """Authentication and rate limiting; raises the matching RouterError."""
        client = request.remote or "unknown"
        if self.settings.trusted_proxies:
            client = client_address(
                client, request.headers.getall(FORWARDED_FOR, ()), self.settings.trusted_proxies
            )
        if self.auth:
            header = self.settings.auth_header
            token = presented_token(header, request.headers.get(header, ""))
            presented = token.encode() if token is not None else b""
            if token is None or not any(hmac.compare_digest(presented, t) for t in self.tokens):
                raise errors.UnauthorizedError(
                    f"a valid bearer token is required ({expected_form(header)})",
                    {"WWW-Authenticate": 'Bearer realm="kanaria"'},
                )
            client = "token:" + token
        if self.limiter is not None:
            wait = self.limiter.take(client, time.monotonic())
            if wait > 0:
                after = retry_after(wait)
                raise errors.TooManyRequestsError(
                    f"rate limit of {self.settings.rate_limit_rps:g} requests/s exceeded; "
                    f"retry after {after}s",
                    {"Retry-After": after},
                )

    async def handle_model(self, request: web.Request) -> web.StreamResponse:
        """``/v2/models/{name}[/versions/{v}][/...]``: route to a version of the model."""
        started = time.perf_counter()
        table = self.table  # the one reference this request uses: atomic swaps
        tail = request.match_info["tail"]
        name, _, rest = tail.partition("/")
        model = table.models.get(name)
        is_infer = rest.endswith("infer") and request.method == "POST"
        version_name = UNROUTED
        request_id = request.headers.get(REQUEST_ID) or os.urandom(16).hex()
        try:
            self._guard(request)
            if model is None:
                known = ", ".join(sorted(table.models)) or "none"
                raise errors.NotFoundError(
                    f"model {name!r} is not routed here (known models: {known})"
                )
            if rest == "feedback" and request.method == "POST":
                return await self._feedback(request, model, request_id)
            pinned = self._pinned(request, model, rest)
            body = await self._body(request)
            point = self._point(request, model)
            version = pinned or model.choose(point)
            if version is None:
                raise errors.UnavailableError(f"model {name!r} has no ready version with weight")
            if pinned is None and self.ejected and self._is_ejected(name, version.name):
                alt = model.fallback(version.name, point)
                if alt is not None and not self._is_ejected(name, alt.name):
                    version = alt
            version_name = version.name
            headers = self._forward_headers(request, request_id)
            up = await self._forward(
                model, version, request.method, request.raw_path, headers, body, point, pinned
            )
            version_name = up.version.name
            if is_infer and up.refused is not None:
                # the client was served by another version, but the gates must see that
                # this one failed: a dead canary would otherwise look merely idle
                self.metrics.observe(name, up.refused, 503, time.perf_counter() - started)
            if is_infer:
                if up.status < 300:
                    self.served.record(name, request_id, version_name)
                    # a V2 body may carry its own "id", which the server then uses
                    backend_id = up.headers.get(REQUEST_ID)
                    if backend_id and backend_id != request_id:
                        self.served.record(name, backend_id, version_name)
                    spot_check = up.headers.get(SPOT_CHECK_HEADER) == "true"
                    if spot_check or up.headers.get(DECISION_HEADER) == "review":
                        self.review.offer(
                            name,
                            version_name,
                            backend_id or request_id,
                            up.headers.get(CONFIDENCE_HEADER),
                            body,
                            up.body,
                            spot_check,
                        )
                headers.popall(POLICY_HEADER, None)  # a shadow answers under no policy
                if model.mirror_version and model.mirror_version != version_name:
                    self._maybe_mirror(model, up, request.raw_path, headers, body, request_id)
            out = CIMultiDict(forwardable(up.headers.items(), RESPONSE_DROP, None))
            out[REQUEST_ID] = request_id
            out[VERSION_HEADER] = version_name
            response = web.Response(status=up.status, body=up.body, headers=out)
            status = up.status
        except errors.RouterError as exc:
            extra = {**exc.headers, REQUEST_ID: request_id}
            if version_name != UNROUTED:
                extra[VERSION_HEADER] = version_name  # which version timed out or refused
            response = errors.error_response(exc.status, exc.message, extra)
            status = exc.status
        if is_infer and model is not None:
            self.metrics.observe(name, version_name, status, time.perf_counter() - started)
        return response

    def _pinned(self, request: web.Request, model: ModelTable, rest: str) -> Version | None:
        """A version fixed by the path (``/versions/{v}``) or the override header."""
        if rest.startswith("versions/"):
            wanted = rest.split("/", 2)[1]
            version = model.versions.get(wanted)
            if version is None:
                raise errors.NotFoundError(
                    f"model {model.name!r} has no version {wanted!r} "
                    f"(versions: {', '.join(model.versions)})"
                )
        else:
            wanted = request.headers.get(model.override_header, "")
            if not wanted:
                return None
            version = model.versions.get(wanted)
            if version is None:
                raise errors.BadRequestError(
                    f"{model.override_header}: model {model.name!r} has no version {wanted!r} "
                    f"(versions: {', '.join(model.versions)})"
                )
        if not version.ready:
            raise errors.UnavailableError(
                f"version {wanted!r} of model {model.name!r} is not ready"
            )
        return version

    def _point(self, request: web.Request, model: ModelTable) -> float:
        """Where the request lands on [0, 100): its sticky key's bucket, else at random."""
        key = None
        if model.sticky_header:
            key = request.headers.get(model.sticky_header)
        if not key and model.sticky_cookie:
            key = cookie_value(request.headers, model.sticky_cookie)
        if key:
            return bucket_of(model.name, key)
        return random.random() * 100.0

    async def _body(self, request: web.Request) -> bytes:
        limit = self.settings.max_body_bytes
        length = request.content_length
        if length is not None and length > limit:
            raise errors.PayloadTooLargeError(
                f"request body of {length} bytes exceeds the limit of {limit} bytes"
            )
        try:
            return await request.read()
        except web.HTTPRequestEntityTooLarge as exc:
            raise errors.PayloadTooLargeError(
                f"request body exceeds the limit of {limit} bytes"
            ) from exc

    def _forward_headers(self, request: web.Request, request_id: str) -> CIMultiDict[str]:
        headers = CIMultiDict(
            forwardable(request.headers.items(), REQUEST_DROP, request.headers.get("Connection"))
        )
        if self.auth:
            headers.popall(self.settings.auth_header, None)
        headers[REQUEST_ID] = request_id
        headers.popall(POLICY_HEADER, None)  # the routes set a version's policy, never a client
        peer = request.remote
        if peer:
            prior = headers.get("X-Forwarded-For")
            headers["X-Forwarded-For"] = f"{prior}, {peer}" if prior else peer
        return headers

    async def _send(
        self, version: Version, method: str, path: str, headers: CIMultiDict[str], body: bytes
    ) -> Upstream:
        assert self.session is not None
        if version.policy is not None:
            headers[POLICY_HEADER] = version.policy
        else:
            headers.popall(POLICY_HEADER, None)
        async with self.session.request(
            method, version.base_url + path, headers=headers, data=body or None
        ) as resp:
            data = await resp.read()
            return Upstream(version, resp.status, resp.headers, data)

    async def _forward(
        self,
        model: ModelTable,
        version: Version,
        method: str,
        path: str,
        headers: CIMultiDict[str],
        body: bytes,
        point: float,
        pinned: Version | None,
    ) -> Upstream:
        """Send to ``version``; on failure, do what the retry table says.

        :data:`kanaria_router.errors.FORWARD_FAILURES` decides, for each kind of
        failure, whether to send once more (to another ready weighted version; a
        pinned request stays on its version), whether to eject the version, and
        the error the client gets once no retry is left. One dead replica set
        does not fail requests while the operator notices.
        """
        target = version
        tried: list[str] = []
        for attempt in range(1, ATTEMPTS + 1):
            try:
                up = await self._send(target, method, path, headers, body)
            except errors.FORWARD_ERRORS as exc:
                failure = errors.forward_failure(exc)
                rule = errors.FORWARD_FAILURES[failure]
                if rule.eject:
                    self._eject(model, target)
                tried.append(target.name)
                if not rule.retry or attempt == ATTEMPTS:
                    raise rule.error(
                        rule.reason.format(
                            model=model.name,
                            version=target.name,
                            tried=", ".join(sorted(set(tried))),
                            exc=exc,
                            timeout=self.settings.backend_timeout_s,
                        )
                    ) from exc
                target = (None if pinned else model.fallback(version.name, point)) or version
                log.warning(
                    "version %s of model %s unreachable (%s); retrying on %s",
                    version.name,
                    model.name,
                    exc,
                    target.name,
                )
                continue
            if attempt > 1:
                up.refused = version.name
            return up
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _eject(self, model: ModelTable, version: Version) -> None:
        """Skip ``version`` in weighted routing for ``eject_s`` after a connect timeout."""
        if self.settings.eject_s <= 0:
            return
        self.ejected[(model.name, version.name)] = time.monotonic() + self.settings.eject_s
        log.warning(
            "version %s of model %s: connection timed out; weighted traffic skips it for %gs",
            version.name,
            model.name,
            self.settings.eject_s,
        )

    def _is_ejected(self, model: str, version: str) -> bool:
        until = self.ejected.get((model, version))
        if until is None:
            return False
        if until <= time.monotonic():
            del self.ejected[(model, version)]
            return False
        return True

    def _maybe_mirror(
        self,
        model: ModelTable,
        up: Upstream,
        path: str,
        headers: CIMultiDict[str],
        body: bytes,
        request_id: str,
    ) -> None:
        if model.mirror_percent < 100 and random.random() * 100 >= model.mirror_percent:
            return
        assert model.mirror_version is not None
        if self.mirror.full():
            # counted as before, without building a copy that would be thrown away
            self.mirror.count(model.name, model.mirror_version, "dropped")
            return
        shadow = model.versions[model.mirror_version]
        self.mirror.offer(
            MirrorJob(
                model=model.name,
                shadow=shadow.name,
                url=shadow.base_url + path,
                baseline=up.version.name,
                headers=headers,
                body=body,
                request_id=request_id,
                primary_status=up.status,
                primary_body=up.body,
                comparison=model.comparison,
            )
        )

    async def _feedback(
        self, request: web.Request, model: ModelTable, request_id: str
    ) -> web.Response:
        """Forward each label to the version that served its request id."""
        raw = await self._body(request)
        try:
            items = parse_feedback(orjson.loads(raw))
        except orjson.JSONDecodeError as exc:
            raise errors.BadRequestError(f"feedback body is not valid JSON: {exc}") from exc
        except ValueError as exc:
            raise errors.BadRequestError(str(exc)) from exc
        groups, unknown = group_by_version(model.name, items, self.served)
        if not groups:
            raise errors.NotFoundError(
                f"no prediction with id(s) {', '.join(unknown[:10])} is remembered for model "
                f"{model.name!r} (ids are the x-request-id of infer answers; the router keeps "
                f"the last {self.settings.feedback_ids})"
            )
        headers = self._forward_headers(request, request_id)
        headers["Content-Type"] = "application/json"
        path = f"/v2/models/{model.name}/feedback"

        async def one(version_name: str, group: list[dict[str, Any]]) -> tuple[str, int, str]:
            version = model.versions.get(version_name)
            if version is None:
                return version_name, 410, f"version {version_name!r} is no longer routed"
            try:
                up = await self._send(version, "POST", path, headers, orjson.dumps(group))
            except (aiohttp.ClientError, TimeoutError) as exc:
                return version_name, 502, f"unreachable: {exc or type(exc).__name__}"
            return version_name, up.status, up.body.decode(errors="replace")[:500]

        results = await asyncio.gather(*(one(v, g) for v, g in groups.items()))
        status = max((s for _, s, _ in results if s >= 300), default=200)
        body = {
            "forwarded": {v: len(g) for v, g in groups.items()},
            "unknown": unknown,
            "errors": {v: {"status": s, "body": b} for v, s, b in results if s >= 300},
        }
        return web.Response(
            status=status,
            body=orjson.dumps(body),
            content_type="application/json",
            headers={REQUEST_ID: request_id},
        )
