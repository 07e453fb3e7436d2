"""A review case: one prediction handed to a person, with the model's answer as a suggestion.

A case names the prediction the way the feedback API does (the request id is the
``x-request-id`` of the answer, so a reviewer's label comes back through
``POST /v2/models/{model}/feedback`` and is scored against the version that
made it), says which ModelDeployment and version made it and when, and carries
what a reviewer needs to decide: the inputs and outputs within the prediction
log's size rule (:mod:`kanaria.review.summary`), the suggested class per row and
the model's confidence. It is the body sinks send (a webhook gets it as JSON, as
written here), so field names are an interface like the metric names.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Literal

import pydantic_core
from pydantic import BaseModel, ConfigDict, Field

from kanaria.api import API_VERSION
from kanaria.review.summary import DEFAULT_MAX_VALUES, describe, describe_tensor

if TYPE_CHECKING:
    from kanaria.review.summary import Array

try:
    import orjson
except ImportError:  # a core-only install: pydantic_core's serialiser, the same JSON
    orjson = None  # type: ignore[assignment]

CASE_KIND: Final = "ReviewCase"
BATCH_KIND: Final = "ReviewCases"


class ReviewCase(BaseModel):
    """One prediction for review. Immutable: a sink may hold it while it retries."""

    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_inf_nan="null")

    apiVersion: Literal["kanaria.io/v1alpha1"] = API_VERSION
    kind: Literal["ReviewCase"] = CASE_KIND
    requestId: str = Field(min_length=1)
    """The prediction's ``x-request-id``: the ``id`` a label is posted with."""
    model: str = Field(min_length=1)
    """The ModelDeployment's name (the model name in the V2 path)."""
    namespace: str | None = None
    """The ModelDeployment's namespace; None outside Kubernetes (``kanaria up``)."""
    version: str = Field(min_length=1)
    """The model version that answered."""
    time: datetime
    """When the prediction was made (timezone-aware)."""
    confidence: float | None = Field(default=None, ge=0, le=1)
    """The model's confidence (max class probability); for several rows, the lowest,
    since one unsure row is enough to ask a person. None for models that have none."""
    spotCheck: bool = False
    """An automated answer sent for review as a spot check (spec.automation.spotCheck):
    the client acted on it; the reviewer's label measures agreement where the model
    decides alone."""
    classes: list[int] = Field(default_factory=list)
    """The suggested class index per row (argmax of the classifier output); empty for a
    model whose output is not a class."""
    inputs: dict[str, Any] = Field(default_factory=dict)
    """Input name -> its values, or a summary past the prediction log's cap."""
    outputs: dict[str, Any] = Field(default_factory=dict)
    """Output name -> its values (the suggestion in full), or a summary past the cap."""

    def as_json(self) -> dict[str, Any]:
        """The case as a JSON document (what a webhook receives); NaN and inf become null,
        since JSON has neither and receivers reject them."""
        doc: dict[str, Any] = _loads(_dumps(_doc(self)))
        return doc


def case_from_v2(
    request_id: str,
    model: str,
    version: str,
    time: datetime,
    inputs: Sequence[Mapping[str, Any]],
    outputs: Sequence[Mapping[str, Any]],
    *,
    confidence: float | None = None,
    classes: Sequence[int] = (),
    namespace: str | None = None,
    spot_check: bool = False,
    max_values: int = DEFAULT_MAX_VALUES,
) -> ReviewCase:
    """A case from the V2 JSON request's ``inputs`` and answer's ``outputs`` (the router's view).

    Each tensor is bounded by :func:`~kanaria.review.summary.describe_tensor`.
    Raises ValueError for a tensor whose data does not fill its shape.
    """
    return ReviewCase(
        requestId=request_id,
        model=model,
        namespace=namespace,
        version=version,
        time=time,
        confidence=confidence,
        spotCheck=spot_check,
        classes=list(classes),
        inputs={str(t.get("name")): describe_tensor(t, max_values) for t in inputs},
        outputs={str(t.get("name")): describe_tensor(t, max_values) for t in outputs},
    )


class PendingCase:
    """A review case not built yet: the V2 JSON request and answer as the router holds
    them, and who made the answer when.

    Making one is O(1) (no parsing), so the serving path can offer it while it
    answers; the review sender builds it with :meth:`build` on its own task, a
    batch at a time, after the client has its answer. ``version`` is there for the
    sender's counters.
    """

    __slots__ = (
        "_built", "answer", "at", "confidence", "model", "namespace", "request",
        "requestId", "spot_check", "version",
    )  # fmt: skip

    def __init__(
        self,
        request_id: str,
        model: str,
        version: str,
        at: float,
        request: bytes,
        answer: bytes,
        *,
        confidence: str | None = None,
        namespace: str | None = None,
        spot_check: bool = False,
    ) -> None:
        self.requestId = request_id
        self.model = model
        self.version = version
        self.at = at
        """When the answer was made: seconds since the epoch (``time.time()``)."""
        self.request = request
        self.answer = answer
        self.confidence = confidence
        """The ``x-kanaria-confidence`` header as received."""
        self.namespace = namespace
        self.spot_check = spot_check
        self._built: ReviewCase | None = None

    def build(self, max_values: int = DEFAULT_MAX_VALUES) -> ReviewCase:
        """The case (:func:`case_from_v2` of the parsed bodies), made once: senders of
        several sinks share it. Raises ValueError when a body is not V2 JSON (binary
        tensors, a malformed tensor) or the confidence is not a number in [0, 1]."""
        if self._built is None:
            try:
                req = _loads(self.request)
                ans = _loads(self.answer)
                outputs = ans.get("outputs", [])
                self._built = case_from_v2(
                    self.requestId,
                    self.model,
                    self.version,
                    datetime.fromtimestamp(self.at, UTC),
                    req.get("inputs", []),
                    outputs,
                    confidence=float(self.confidence) if self.confidence else None,
                    classes=suggested_classes(outputs),
                    namespace=self.namespace,
                    spot_check=self.spot_check,
                    max_values=max_values,
                )
            except (ValueError, TypeError, AttributeError, ArithmeticError) as exc:
                # ArithmeticError: numpy's OverflowError for a value past an INT datatype
                raise ValueError(f"review case of request {self.requestId}: {exc}") from exc
        return self._built


def suggested_classes(outputs: Sequence[Mapping[str, Any]]) -> list[int]:
    """Argmax per row of the first ``[batch, classes]`` output of a V2 JSON answer
    (the suggestion); empty when no output is one."""
    for out in outputs:
        shape = out.get("shape")
        data = out.get("data")
        if (
            isinstance(shape, list)
            and len(shape) == 2
            and isinstance(data, list)
            and shape[1]
            and isinstance(shape[1], int)
            and shape[1] >= 2
        ):
            width = shape[1]
            rows = [data[i : i + width] for i in range(0, len(data), width)]
            return [_argmax(r) for r in rows if r]
    return []


def _argmax(row: list[object]) -> int:
    best = 0
    for i, value in enumerate(row):
        if isinstance(value, int | float) and value > row[best]:  # type: ignore[operator]
            best = i
    return best


def _loads(body: bytes | str) -> Any:
    return json.loads(body) if orjson is None else orjson.loads(body)


def _dumps(doc: Any) -> bytes:
    """JSON as ``ReviewCase.model_dump_json`` writes it (datetimes in UTC as ``...Z``, NaN
    and inf as null): orjson where installed (the router and the model server have it),
    about 3x cheaper per case than the model's serialiser; pydantic_core's writes what
    orjson cannot (an int past 64 bits) and serves a core-only install."""
    if orjson is not None:
        try:
            body: bytes = orjson.dumps(doc, option=orjson.OPT_UTC_Z)
        except TypeError:  # orjson.JSONEncodeError
            pass
        else:
            return body
    return pydantic_core.to_json(doc, inf_nan_mode="null")


def case_from_arrays(
    request_id: str,
    model: str,
    version: str,
    time: datetime,
    inputs: Mapping[str, Array],
    outputs: Mapping[str, Array],
    *,
    confidence: float | None = None,
    classes: Sequence[int] = (),
    namespace: str | None = None,
    max_values: int = DEFAULT_MAX_VALUES,
) -> ReviewCase:
    """A case from decoded arrays (the model server's view), bounded the same way."""
    return ReviewCase(
        requestId=request_id,
        model=model,
        namespace=namespace,
        version=version,
        time=time,
        confidence=confidence,
        classes=list(classes),
        inputs={n: describe(a, max_values) for n, a in inputs.items()},
        outputs={n: describe(a, max_values) for n, a in outputs.items()},
    )


def batch_body(cases: Sequence[ReviewCase]) -> bytes:
    """The JSON body of one delivery of several cases (a webhook POST):
    ``{"apiVersion", "kind": "ReviewCases", "cases": [case, ...]}``.

    One serialisation of the whole batch (:func:`_dumps`)."""
    return _dumps(
        {"apiVersion": API_VERSION, "kind": BATCH_KIND, "cases": [_doc(c) for c in cases]}
    )


def _doc(case: ReviewCase) -> dict[str, Any]:
    """The case's fields in the order ``model_dump_json`` writes them, as a dict that
    :func:`_dumps` writes the way pydantic does (no validation or model walk per case)."""
    return {
        "apiVersion": case.apiVersion,
        "kind": case.kind,
        "requestId": case.requestId,
        "model": case.model,
        "namespace": case.namespace,
        "version": case.version,
        "time": case.time,
        "confidence": case.confidence,
        "spotCheck": case.spotCheck,
        "classes": case.classes,
        "inputs": case.inputs,
        "outputs": case.outputs,
    }
