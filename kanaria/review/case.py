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
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from kanaria.api import API_VERSION
from kanaria.review.summary import DEFAULT_MAX_VALUES, describe, describe_tensor

if TYPE_CHECKING:
    from kanaria.review.summary import Array

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
        doc: dict[str, Any] = json.loads(self.model_dump_json())
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
        classes=list(classes),
        inputs={str(t.get("name")): describe_tensor(t, max_values) for t in inputs},
        outputs={str(t.get("name")): describe_tensor(t, max_values) for t in outputs},
    )


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
    ``{"apiVersion", "kind": "ReviewCases", "cases": [case, ...]}``."""
    head = json.dumps({"apiVersion": API_VERSION, "kind": BATCH_KIND})[:-1]
    return f'{head}, "cases": [{", ".join(c.model_dump_json() for c in cases)}]}}'.encode()
