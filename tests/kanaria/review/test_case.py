"""Review cases carry what the prediction log would: the same size rule, the same output.

The rule lives in :mod:`kanaria.review.summary`; the model server's prediction
log (a component the core may not import) must say the same for every tensor,
and these tests hold the two to that until the log calls the core's function.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from kanaria_server.datatypes import V2_TO_NUMPY
from kanaria_server.predlog import describe as predlog_describe

from kanaria.review import ReviewCase, batch_body, case_from_arrays, case_from_v2
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
