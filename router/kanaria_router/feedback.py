"""Delayed-label feedback: remember which version served each request id.

Labels arrive long after the prediction (a chargeback a week later), so the
router keeps a bounded memory of request id -> version (least recently used
ids are forgotten first) and forwards each label to the version that made the
prediction, where the model server scores it. Pure logic; no I/O.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any


class ServedBy:
    """Bounded LRU map of (model, request id) -> version."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[tuple[str, str], str] = OrderedDict()

    def record(self, model: str, request_id: str, version: str) -> None:
        key = (model, request_id)
        self._ids[key] = version
        self._ids.move_to_end(key)
        if len(self._ids) > self.capacity:
            self._ids.popitem(last=False)

    def lookup(self, model: str, request_id: str) -> str | None:
        return self._ids.get((model, request_id))

    def __len__(self) -> int:
        return len(self._ids)


def parse_feedback(body: Any) -> list[dict[str, Any]]:
    """Validate a feedback body: ``{"id", "label"}`` or a non-empty list of them.

    Raises ``ValueError`` naming the first bad item, so the client can fix it.
    """
    items = body if isinstance(body, list) else [body]
    if not items:
        raise ValueError("feedback list is empty")
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise ValueError(f"feedback item {i} must be an object with 'id' and 'label'")
        if not isinstance(item.get("id"), str) or not item["id"]:
            raise ValueError(f"feedback item {i} needs a non-empty string 'id' (the request id)")
        if "label" not in item:
            raise ValueError(f"feedback item {i} (id {item['id']!r}) has no 'label'")
    return items


def group_by_version(
    model: str, items: list[dict[str, Any]], served: ServedBy
) -> tuple[dict[str, list[dict[str, Any]]], list[str]]:
    """Split feedback items by the version that served them; also the unknown ids."""
    groups: dict[str, list[dict[str, Any]]] = {}
    unknown: list[str] = []
    for item in items:
        version = served.lookup(model, item["id"])
        if version is None:
            unknown.append(item["id"])
        else:
            groups.setdefault(version, []).append(item)
    return groups, unknown
