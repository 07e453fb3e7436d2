"""Label Studio as a review tool, through its own REST API: projects, tasks, annotations.

What a reviewer sees: one project per ModelDeployment (found by its title, made
with a classification labelling config of the model's class names when it does
not exist), and one task per review case, with the model's answer already
selected as a Label Studio *prediction* (``model_version`` = the version,
``score`` = the confidence). The reviewer accepts it or picks another class and
submits; :mod:`kanaria.review.puller` reads the annotations back.

A case of several rows becomes one task per row (``row``/``rows`` in the task's
data): a class choice is about one row. The puller sends the request's labels
once every row has one.

Pure parts (the labelling config, a case's tasks, an annotation's class) are
functions; :class:`LabelStudioClient` is the thin I/O over httpx, and
:class:`LabelStudioSink` the sender's sink. Authentication is a Label Studio
access token sent as ``Authorization: Token <token>`` (a legacy token; Label
Studio 1.23 only accepts those once ``LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN`` is
true, see docs/review.md). Personal access tokens (JWT refresh tokens that must be
exchanged for short-lived access tokens) are not supported yet.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final
from xml.sax.saxutils import quoteattr

import httpx

from kanaria.review.case import ReviewCase
from kanaria.review.sender import DeliveryError

SINK_NAME: Final = "label-studio"
FROM_NAME: Final = "label"
"""The name of the Choices tag: what annotations and predictions refer to."""
TO_NAME: Final = "case"
"""The name of the Text tag that shows the case."""
TEXT_FIELD: Final = "text"
PAGE_SIZE: Final = 100
TITLE_PREFIX: Final = "Kanaria review: "
TITLE_MAX: Final = 50
"""Label Studio's longest project title (``PROJECT_TITLE_MAX_LEN``)."""


def project_title(model: str, namespace: str | None = None) -> str:
    """The title that names a ModelDeployment's review project (how it is found again).

    Label Studio allows 50 characters; a longer name keeps its start and ends in a
    hash of the whole, so two long names still get two projects.
    """
    where = f"{namespace}/{model}" if namespace else model
    title = f"{TITLE_PREFIX}{where}"
    if len(title) <= TITLE_MAX:
        return title
    digest = hashlib.blake2b(where.encode(), digest_size=4).hexdigest()
    return f"{title[: TITLE_MAX - len(digest) - 1]}~{digest}"


def check_class_names(class_names: Sequence[str]) -> list[str]:
    """The class names as a list, or ValueError: a choice needs a unique, non-empty name."""
    names = list(class_names)
    if len(names) < 2:
        raise ValueError("a classification review needs at least 2 class names")
    if any(not n.strip() for n in names) or len(set(names)) != len(names):
        raise ValueError(f"class names must be non-empty and unique, got {names}")
    return names


def label_config(model: str, class_names: Sequence[str]) -> str:
    """The labelling config: the case as text and one single choice among the classes."""
    names = check_class_names(class_names)
    choices = "\n".join(f"    <Choice value={quoteattr(n)}/>" for n in names)
    return (
        "<View>\n"
        f"  <Header value={quoteattr(f'Review: {model}')}/>\n"
        f'  <Text name="{TO_NAME}" value="${TEXT_FIELD}"/>\n'
        f'  <Choices name="{FROM_NAME}" toName="{TO_NAME}" choice="single-radio" '
        'showInline="true" required="true">\n'
        f"{choices}\n"
        "  </Choices>\n"
        "</View>\n"
    )


def class_name(class_names: Sequence[str], index: int) -> str:
    """The name of class ``index``, or a placeholder naming an index the model should not have."""
    return class_names[index] if 0 <= index < len(class_names) else f"<class {index}>"


def case_text(case: ReviewCase, class_names: Sequence[str], row: int) -> str:
    """What the reviewer reads: who predicted what, how sure, and the inputs."""
    rows = max(len(case.classes), 1)
    lines = [
        f"Request {case.requestId}" + (f", row {row + 1} of {rows}" if rows > 1 else ""),
        f"Model {case.model}, version {case.version}, at {case.time.isoformat()}",
    ]
    if case.classes:
        suggested = class_name(class_names, case.classes[row])
        sure = f" (confidence {case.confidence:.2f})" if case.confidence is not None else ""
        lines.append(f"The model suggests: {suggested}{sure}")
    lines.append("Inputs:")
    lines.extend(f"  {name}: {json.dumps(value)}" for name, value in case.inputs.items())
    return "\n".join(lines)


def case_tasks(case: ReviewCase, class_names: Sequence[str]) -> list[dict[str, Any]]:
    """The Label Studio tasks of a case: one per row, with the model's class as a prediction."""
    doc = case.as_json()
    rows = max(len(case.classes), 1)
    tasks: list[dict[str, Any]] = []
    for row in range(rows):
        data = {
            TEXT_FIELD: case_text(case, class_names, row),
            "request_id": case.requestId,
            "model": case.model,
            "namespace": case.namespace,
            "version": case.version,
            "time": doc["time"],
            "row": row,
            "rows": rows,
            "confidence": case.confidence,
            "spot_check": case.spotCheck,
            "inputs": doc["inputs"],
            "outputs": doc["outputs"],
        }
        task: dict[str, Any] = {"data": data}
        if case.classes and 0 <= case.classes[row] < len(class_names):
            prediction: dict[str, Any] = {
                "model_version": case.version,
                "result": [
                    {
                        "from_name": FROM_NAME,
                        "to_name": TO_NAME,
                        "type": "choices",
                        "value": {"choices": [class_names[case.classes[row]]]},
                    }
                ],
            }
            if case.confidence is not None:
                prediction["score"] = case.confidence
            task["predictions"] = [prediction]
        tasks.append(task)
    return tasks


def annotation_class(annotation: dict[str, Any], class_names: Sequence[str]) -> int | None:
    """The class index a submitted annotation chose, or None (skipped, or no known class)."""
    if annotation.get("was_cancelled"):
        return None
    for item in annotation.get("result") or []:
        if item.get("from_name") != FROM_NAME or item.get("type") != "choices":
            continue
        chosen = (item.get("value") or {}).get("choices") or []
        if len(chosen) == 1 and chosen[0] in class_names:
            return list(class_names).index(chosen[0])
    return None


@dataclass(frozen=True)
class Connection:
    """How to reach a Label Studio: its URL and an access token."""

    url: str
    """Base URL, e.g. ``http://127.0.0.1:8080`` (no trailing ``/api``)."""
    token: str
    """A legacy access token (Account & Settings > Legacy Token), sent as
    ``Authorization: Token <token>``."""
    timeout_s: float = 30.0
    """Seconds one API call may take (an import of a batch of tasks included)."""

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Token {self.token}"}


class LabelStudioError(Exception):
    """A Label Studio API call failed; ``retryable`` says whether trying again may help."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class LabelStudioClient:
    """The few Label Studio API calls the review path makes."""

    def __init__(
        self, connection: Connection, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.connection = connection
        self._client = httpx.AsyncClient(
            base_url=connection.url.rstrip("/"),
            headers=connection.headers(),
            timeout=connection.timeout_s,
            transport=transport,
        )

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = await self._client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise LabelStudioError(
                f"Label Studio {self.connection.url}: {method} {path}: {type(exc).__name__}: {exc}",
                retryable=True,
            ) from exc
        if not 200 <= response.status_code < 300:
            status = response.status_code
            raise LabelStudioError(
                f"Label Studio {self.connection.url}: {method} {path} answered HTTP {status}: "
                f"{response.text[:300]}",
                retryable=status >= 500 or status in {408, 425, 429},
            )
        return response.json() if response.content else None

    async def find_project(self, title: str) -> int | None:
        """The id of the project titled ``title`` exactly, or None."""
        page = 1
        while True:
            doc = await self._call(
                "GET", "/api/projects", params={"page": page, "page_size": PAGE_SIZE}
            )
            results = doc.get("results", []) if isinstance(doc, dict) else doc
            for project in results:
                if project.get("title") == title:
                    return int(project["id"])
            if not isinstance(doc, dict) or not doc.get("next"):
                return None
            page += 1

    async def create_project(self, title: str, config: str, description: str = "") -> int:
        doc = await self._call(
            "POST",
            "/api/projects",
            json={"title": title, "label_config": config, "description": description},
        )
        return int(doc["id"])

    async def import_tasks(self, project: int, tasks: list[dict[str, Any]]) -> list[int]:
        """Create ``tasks`` (with their predictions) in one call; their ids."""
        doc = await self._call(
            "POST",
            f"/api/projects/{project}/import",
            params={"return_task_ids": "true"},
            json=tasks,
        )
        return [int(t) for t in doc.get("task_ids", [])]

    async def annotated_tasks(self, project: int) -> list[dict[str, Any]]:
        """Every task of ``project`` that has an annotation, with its annotations."""
        doc = await self._call(
            "GET",
            f"/api/projects/{project}/export",
            params={"exportType": "JSON", "download_all_tasks": "false"},
        )
        return list(doc or [])

    async def aclose(self) -> None:
        await self._client.aclose()


class LabelStudioSink:
    """Creates a task per case (per row) in the ModelDeployment's review project."""

    name = SINK_NAME

    def __init__(
        self,
        connection: Connection,
        model: str,
        class_names: Sequence[str],
        *,
        namespace: str | None = None,
        title: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.class_names = check_class_names(class_names)
        self.model = model
        self.title = title or project_title(model, namespace)
        self.client = LabelStudioClient(connection, transport)
        self.project: int | None = None

    async def ensure_project(self) -> int:
        """The review project's id: found by title, else created (once per sink)."""
        if self.project is None:
            found = await self.client.find_project(self.title)
            if found is None:
                found = await self.client.create_project(
                    self.title,
                    label_config(self.model, self.class_names),
                    f"Predictions of {self.model} for review, sent by Kanaria. Each "
                    "submitted choice goes back to Kanaria as the label of the request.",
                )
            self.project = found
        return self.project

    async def deliver(self, cases: Sequence[ReviewCase]) -> None:
        try:
            project = await self.ensure_project()
            tasks = [t for case in cases for t in case_tasks(case, self.class_names)]
            await self.client.import_tasks(project, tasks)
        except LabelStudioError as exc:
            raise DeliveryError(str(exc), retryable=exc.retryable) from exc

    async def aclose(self) -> None:
        await self.client.aclose()
