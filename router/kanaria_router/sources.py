"""Where routes come from: a file (polled) or a Kubernetes ConfigMap (watched).

Both hand the document's text to one callback on the event loop; the router
validates it there and keeps its old routes when the text is invalid.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kanaria.routes import CONFIGMAP_KEY

log = logging.getLogger("kanaria.router.sources")

Deliver = Callable[[str, str], object]
"""Callback ``(text, source)`` run on the event loop for every new document."""


def read_text_file(path: Path, what: str = "routes") -> str:
    """The file's text, or ``ValueError`` saying why the ``what`` file cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ValueError(f"{what} file {path} does not exist") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{what} file {path} cannot be read: {exc}") from exc


def read_routes_file(path: Path) -> str:
    """The routes file's text, or ``ValueError`` saying why it cannot be read."""
    return read_text_file(path, "routes")


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


async def watch_file(path: Path, interval_s: float, deliver: Deliver, what: str = "routes") -> None:
    """Poll the file's stat every ``interval_s`` seconds; deliver its text when it changed.

    A stat call per interval is cheap and works on every filesystem, including
    the symlink swaps Kubernetes uses for mounted ConfigMaps and Secrets (inode
    changes). ``what`` names the file's content in log lines ("routes", "bearer tokens").
    """
    last = _signature(path)
    missing_logged = False
    while True:
        await asyncio.sleep(interval_s)
        sig = _signature(path)
        if sig is None:
            if not missing_logged:
                log.error("%s file %s disappeared; keeping the current %s", what, path, what)
                missing_logged = True
            continue
        missing_logged = False
        if sig == last:
            continue
        last = sig
        try:
            text = read_text_file(path, what)
        except ValueError as exc:
            log.error("%s; keeping the current %s", exc, what)
            continue
        deliver(text, str(path))


def parse_configmap_ref(ref: str) -> tuple[str, str]:
    """``NAMESPACE/NAME`` -> (namespace, name), or ``ValueError`` with the expected form."""
    namespace, sep, name = ref.partition("/")
    if not sep or not namespace or not name or "/" in name:
        raise ValueError(f"--configmap must be NAMESPACE/NAME, got {ref!r}")
    return namespace, name


class ConfigMapWatcher:
    """Watch one ConfigMap from a thread and hand its ``routes.yaml`` to the loop.

    The Kubernetes client is blocking, so the list+watch loop runs in a daemon
    thread; every ADDED/MODIFIED event is passed to the event loop with
    ``call_soon_threadsafe``. A watch sees a change as soon as the API server
    stores it, far sooner than the kubelet refreshes a mounted volume.
    """

    def __init__(
        self,
        namespace: str,
        name: str,
        kubeconfig: Path | None,
        loop: asyncio.AbstractEventLoop,
        deliver: Deliver,
        watch_timeout_s: int = 60,
    ) -> None:
        self.namespace = namespace
        self.name = name
        self.kubeconfig = kubeconfig
        self.loop = loop
        self.deliver = deliver
        self.watch_timeout_s = watch_timeout_s
        self.source = f"configmap {namespace}/{name}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="configmap-watch", daemon=True)
        self._watch: Any = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._watch is not None:
            with contextlib.suppress(Exception):
                self._watch.stop()

    def _hand_over(self, obj: Any) -> None:
        data = getattr(obj, "data", None) or {}
        text = data.get(CONFIGMAP_KEY)
        if text is None:
            log.error("%s has no %r key; keeping the current routes", self.source, CONFIGMAP_KEY)
            return
        self.loop.call_soon_threadsafe(self.deliver, text, self.source)

    def _client(self) -> Any:
        from kubernetes import client, config  # noqa: PLC0415 (only in ConfigMap mode)

        if self.kubeconfig is not None:
            api_client = config.new_client_from_config(  # type: ignore[no-untyped-call]
                config_file=str(self.kubeconfig)
            )
        else:
            try:
                config.load_incluster_config()  # type: ignore[no-untyped-call]
                api_client = client.ApiClient()
            except config.ConfigException:
                api_client = config.new_client_from_config()  # type: ignore[no-untyped-call]
        return client.CoreV1Api(api_client)

    def _run(self) -> None:
        from kubernetes import watch  # noqa: PLC0415
        from kubernetes.client.exceptions import ApiException  # noqa: PLC0415

        backoff = 0.5
        api = None
        selector = f"metadata.name={self.name}"
        while not self._stop.is_set():
            try:
                if api is None:
                    api = self._client()
                listing = api.list_namespaced_config_map(
                    self.namespace, field_selector=selector, _request_timeout=10
                )
                if listing.items:
                    self._hand_over(listing.items[0])
                else:
                    log.error("%s not found; waiting for it to be created", self.source)
                version = listing.metadata.resource_version
                self._watch = watch.Watch()  # type: ignore[no-untyped-call]
                for event in self._watch.stream(
                    api.list_namespaced_config_map,
                    self.namespace,
                    field_selector=selector,
                    resource_version=version,
                    timeout_seconds=self.watch_timeout_s,
                    _request_timeout=self.watch_timeout_s + 10,
                ):
                    if self._stop.is_set():
                        return
                    kind = event.get("type")
                    if kind in ("ADDED", "MODIFIED"):
                        self._hand_over(event["object"])
                    elif kind == "DELETED":
                        log.error("%s was deleted; keeping the current routes", self.source)
                backoff = 0.5
            except ApiException as exc:
                if exc.status != 410:  # 410 Gone: history expired, just list again
                    log.error("watching %s failed: %s %s", self.source, exc.status, exc.reason)
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, 10.0)
            except Exception as exc:  # the API server may be restarting: retry, never die
                if self._stop.is_set():
                    return
                log.error("watching %s failed: %s; retrying in %.1fs", self.source, exc, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)
                api = None
