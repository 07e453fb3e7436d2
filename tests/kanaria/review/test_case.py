"""Review cases carry what the prediction log would: the same size rule, the same output.

The rule lives in :mod:`kanaria.review.summary`; the model server's prediction
log (a component the core may not import) must say the same for every tensor,
and these tests hold the two to that until the log calls the core's function.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import numpy as np
import pytest
from kanaria_server.datatypes import V2_TO_NUMPY
from kanaria_server.predlog import describe as predlog_describe

from kanaria.review import (
    PendingCase,
    ReviewCase,
    batch_body,
    case_from_arrays,
    case_from_v2,
    summary,
)
from kanaria.review.summary import describe, describe_tensor, numpy_dtype

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

TENSORS: list[tuple[str, Any]] = [
    ("small floats", np.arange(6, dtype=np.float32).reshape(2, 3)),
    ("at the cap", np.ones(8, dtype=np.int64)),
    ("past the cap", np.linspace(-1, 1, 9, dtype=np.float64)),
    ("NaN and inf past the cap", np.array([np.nan, np.inf, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0])),
    ("all NaN past the cap", np.full(9, np.nan, dtype=np.float16)),
    ("bytes", np.array([b"a", b"\xff", "c"], dtype=object)),
    ("bytes past the cap", np.array([b"x"] * 9, dtype=object)),
    ("bool past the cap", np.array([True, False] * 5)),
    ("uint8 past the cap", np.arange(12, dtype=np.uint8).reshape(3, 4)),
]


def test_the_prediction_log_uses_this_one_rule() -> None:
    assert predlog_describe is describe


@pytest.mark.parametrize(("what", "arr"), TENSORS, ids=[t[0] for t in TENSORS])
def test_values_up_to_the_cap_and_a_summary_past_it(what: str, arr: Any) -> None:
    out = describe(arr, 8)
    json.dumps(out)  # always serialisable, whatever the dtype
    if arr.size <= 8:
        assert isinstance(out, list), what
        assert np.asarray(out, dtype=object).size == arr.size, what
    else:
        assert out["summary"] is True, what
        assert out["shape"] == list(arr.shape), what
        assert out["dtype"] == str(arr.dtype), what
        if arr.dtype.kind in "fiub":
            assert out["nan"] == int(np.count_nonzero(np.isnan(arr.astype(np.float64)))), what


def test_every_v2_datatype_maps_to_the_servers_numpy_dtype() -> None:
    for datatype, dtype in V2_TO_NUMPY.items():
        assert np.dtype(numpy_dtype(datatype)) == dtype, datatype
    with pytest.raises(ValueError, match="not a V2 datatype"):
        numpy_dtype("FP8")


def test_a_v2_json_tensor_is_described_as_its_array_would_be() -> None:
    data = [float(i) for i in range(300)]
    tensor = {"name": "x", "shape": [3, 100], "datatype": "FP32", "data": data}
    arr = np.asarray(data, dtype=np.float32).reshape(3, 100)
    assert describe_tensor(tensor) == predlog_describe(arr, 256)
    assert describe_tensor(tensor)["summary"] is True
    small = {"name": "s", "shape": [1, 2], "datatype": "BYTES", "data": ["a", "b"]}
    assert describe_tensor(small) == ["a", "b"]
    with pytest.raises(ValueError, match="does not match its shape"):
        describe_tensor({"name": "bad", "shape": [2, 2], "datatype": "FP32", "data": [1.0]})


def test_a_case_from_the_routers_json_and_from_the_servers_arrays_agree() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 300)).astype(np.float32)
    probs = np.array([[0.1, 0.7, 0.2]], dtype=np.float32)
    from_json = case_from_v2(
        "r1", "fraud", "v2", NOW,
        [{"name": "x", "shape": [1, 300], "datatype": "FP32", "data": x.ravel().tolist()}],
        [{"name": "probs", "shape": [1, 3], "datatype": "FP32", "data": probs.ravel().tolist()}],
        confidence=0.7, classes=[1], namespace="ml",
    )  # fmt: skip
    from_arrays = case_from_arrays(
        "r1", "fraud", "v2", NOW, {"x": x}, {"probs": probs},
        confidence=0.7, classes=[1], namespace="ml",
    )  # fmt: skip
    assert from_json == from_arrays
    doc = from_json.as_json()
    assert doc["apiVersion"] == "kanaria.io/v1alpha1"
    assert doc["kind"] == "ReviewCase"
    assert doc["inputs"]["x"]["summary"] is True  # 300 values: past the log's cap of 256
    assert doc["outputs"]["probs"] == probs.tolist()
    assert doc["time"] == "2026-03-01T12:00:00Z"


def test_nan_and_inf_become_null_in_json() -> None:
    c = ReviewCase(
        requestId="r", model="m", version="v", time=NOW,
        inputs={"x": [math.nan, math.inf, 1.0]}, outputs={},
    )  # fmt: skip
    assert c.as_json()["inputs"]["x"] == [None, None, 1.0]
    body = json.loads(batch_body([c, c]))
    assert body["kind"] == "ReviewCases"
    assert [d["inputs"]["x"] for d in body["cases"]] == [[None, None, 1.0]] * 2


def test_a_case_is_checked() -> None:
    with pytest.raises(ValueError, match="confidence"):
        ReviewCase(requestId="r", model="m", version="v", time=NOW, confidence=1.5)
    with pytest.raises(ValueError, match="requestId"):
        ReviewCase(requestId="", model="m", version="v", time=NOW)


SMALL_TENSORS: list[tuple[str, list[int], list[Any]]] = [
    ("FP32", [1, 5], [0.1234, -1.5, 3, 1e-8, True]),  # rounded to float32, ints and bools too
    ("FP32", [2, 2, 2], [float(i) / 7 for i in range(8)]),
    ("FP32", [3], [1e39, 0.0, 1.0]),  # past float32: numpy says inf
    ("FP64", [2, 3], [0.1, 2, -3.5, 1e300, 5e-324, 0.0]),
    ("INT64", [1, 3], [2**62, -(2**63), 7]),
    ("INT64", [2], [1.5, 2.0]),  # floats in an INT tensor: numpy truncates
    ("INT32", [1, 2], [2**31 - 1, -(2**31)]),
    ("INT32", [1], [2**40]),  # out of range: numpy refuses
    ("FP32", [1, 3], [[1.0, 2.0, 3.0]]),  # nested data: numpy reshapes it
    ("FP32", [2, -1], [1.0, 2.0]),  # a shape numpy resolves
    ("FP32", [0, 3], []),
]


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
@pytest.mark.parametrize(("datatype", "shape", "data"), SMALL_TENSORS)
def test_small_tensors_are_described_as_numpy_describes_them(
    datatype: str, shape: list[int], data: list[Any]
) -> None:
    """describe_tensor skips numpy for small flat FP32/FP64/INT32/INT64 tensors (a case is
    made per review answer); whatever it returns or raises is what numpy's path does."""
    tensor = {"name": "x", "shape": shape, "datatype": datatype, "data": data}

    def via_numpy() -> Any:
        arr = np.asarray(data, dtype=np.dtype(numpy_dtype(datatype))).reshape(shape)
        return describe(arr)

    try:
        expected = via_numpy()
    except (TypeError, ValueError, OverflowError) as exc:
        with pytest.raises(type(exc) if isinstance(exc, OverflowError) else ValueError):
            describe_tensor(tensor)
        return
    got = describe_tensor(tensor)
    assert got == expected
    if datatype == "FP32" and shape == [2, 2, 2]:
        assert summary._flat_values("f", data, shape) == expected  # numpy was not needed
    assert json.dumps(got) == json.dumps(expected)  # the same types, not only equal values


def test_the_batch_body_is_what_the_models_serialiser_writes() -> None:
    """batch_body and as_json write each case with orjson (or pydantic_core where orjson
    cannot: an int past 64 bits); the document is the one model_dump_json writes."""
    times = [NOW, datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC),
             datetime(2026, 3, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))]  # fmt: skip
    inputs: list[dict[str, Any]] = [
        {"x": [math.nan, math.inf, -math.inf, 1.0, 1e-7, 2**64 - 1, -(2**63)], "s": ["é"]},
        {"x": {"shape": [300], "dtype": "float32", "summary": True, "nan": 0, "min": 0.5}},
        {"big": [2**70]},
    ]
    cases = [
        ReviewCase(
            requestId=f"r{i}",
            model="m",
            namespace=ns,
            version="v",
            time=t,
            confidence=conf,
            classes=[1, 0],
            inputs=ins,
            outputs={"p": [[0.25, 0.75]]},
        )
        for i, (t, ins, conf, ns) in enumerate(
            (t, ins, conf, ns)
            for t in times
            for ins in inputs
            for conf, ns in ((None, None), (1, "ml"), (0.5, None))
        )
    ]
    for c in cases:
        model_doc = json.loads(c.model_dump_json())
        body = json.loads(batch_body([c, c]))
        assert body == {"apiVersion": "kanaria.io/v1alpha1", "kind": "ReviewCases",
                        "cases": [model_doc, model_doc]}  # fmt: skip
        assert list(body["cases"][0]) == list(model_doc)  # the fields in the same order
        assert c.as_json() == model_doc
        assert repr(body["cases"][0]["confidence"]) == repr(model_doc["confidence"])


def test_a_pending_case_is_built_from_the_bodies_as_case_from_v2_builds_it() -> None:
    x = [0.125, -2.0, 3.5]
    request: dict[str, Any] = {
        "inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": x}]
    }
    answer: dict[str, Any] = {
        "model_name": "fraud",
        "outputs": [{"name": "probs", "shape": [2, 3], "datatype": "FP32",
                     "data": [0.1, 0.7, 0.2, 0.5, 0.2, 0.3]}],
    }  # fmt: skip
    pending = PendingCase(
        "r1", "fraud", "v2", NOW.timestamp(), json.dumps(request).encode(),
        json.dumps(answer).encode(), confidence="0.5", namespace="ml",
    )  # fmt: skip
    built = pending.build()
    assert built == case_from_v2(
        "r1", "fraud", "v2", NOW, request["inputs"], answer["outputs"],
        confidence=0.5, classes=[1, 0], namespace="ml",
    )  # fmt: skip
    assert pending.build() is built  # once, shared by the senders of several sinks
    assert pending.version == "v2"
    assert PendingCase("r", "m", "v", 0.0, b"{}", b"{}").build().inputs == {}


@pytest.mark.parametrize(
    ("request_body", "answer_body", "confidence"),
    [
        (b"\x00\x01binary tensors", b"{}", None),
        (b"[1, 2]", b"{}", None),
        (b'{"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [1.0]}]}',
         b"{}", None),
        (b'{"inputs": [{"name": "x", "shape": [1], "datatype": "INT32", "data": [1099511627776]}]}',
         b"{}", None),  # past INT32: numpy's OverflowError
        (b"{}", b"{}", "1.5"),
        (b"{}", b"{}", "high"),
    ],
)  # fmt: skip
def test_a_pending_case_that_cannot_be_built_raises_value_error(
    request_body: bytes, answer_body: bytes, confidence: str | None
) -> None:
    pending = PendingCase("r9", "m", "v", 0.0, request_body, answer_body, confidence=confidence)
    with pytest.raises(ValueError, match="r9"):
        pending.build()
