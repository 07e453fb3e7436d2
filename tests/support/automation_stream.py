"""The degrees-of-automation scenario, written once and run through both actuators.

tests/kanaria/local/test_automation.py runs it under ``kanaria up`` (reviewers work
from the review webhook) and tests/kanaria_operator/test_node_product.py on real
pods (reviewers work from the answers marked for review, as a client application
holding review cases would). Either way the labels come back through the router's
feedback API, and the ramp is judged on reviewer agreement.

- A model that is right when confident ramps from assist (every answer reviewed)
  through threshold 0.97 to partial at the configured 0.9 and is promoted there.
- A model that is confidently wrong on one slice (x2 = 1: it answers class 0 at
  0.90-0.95 confidence where the truth is 1) passes assist on the top band, but
  reviewers disagree on the band 0.97 would automate next: the threshold moves back
  to assist in one move and the rollout pauses.
- No client request fails through any of it.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

FLOOR = 0.9
RAMP = {
    "automation": {
        "steps": [
            {"analysis": {"rounds": 2}},
            {"setThreshold": 0.97},
            {"analysis": {"rounds": 2}},
            {"setThreshold": FLOOR},
            {"analysis": {"rounds": 1}},
        ]
    }
}
GATES = [
    {"name": "agreement", "builtin": "reviewerAgreement", "min": 0.9},
    {"name": "success-rate", "builtin": "successRate", "min": 0.95},
    {"name": "automated", "builtin": "automationRate", "min": 0.0},
]
POLICY = {"mode": "partial", "threshold": FLOOR}
SLICE_SHARE = 0.2
CLIENTS = 3


def linear_classifier(path: Path, width: int, slice_weight: float) -> Path:
    """Two classes from logits (2(x0 - x1), -2(x0 - x1)) plus ``slice_weight`` * x2 on
    class 0: right whenever x2 = 0, confident as |x0 - x1| grows; with a slice weight,
    confidently class 0 on the slice x2 = 1 even where x0 < x1."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.zeros((width, 2), dtype=np.float32)
    w[0] = (2.0, -2.0)
    w[1] = (-2.0, 2.0)
    w[2] = (slice_weight / 2, -slice_weight / 2)
    nodes = [
        helper.make_node("Gemm", ["input", "W", "B"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "linear",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 2])],
        initializer=[
            numpy_helper.from_array(w, "W"),
            numpy_helper.from_array(np.zeros(2, dtype=np.float32), "B"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def classifiers(directory: Path, width: int) -> dict[str, Path]:
    """``good`` (right when confident) and ``sliced`` (confidently wrong on a slice)."""
    return {
        "good": linear_classifier(directory / "good.onnx", width, 0.0),
        "sliced": linear_classifier(directory / "sliced.onnx", width, 4.0),
    }


def row(rng: random.Random, width: int) -> tuple[list[float], int]:
    """Features and the true class. The slice: x2 = 1 and x1 = x0 + 0.3 (truth 1)."""
    x = [rng.gauss(0.0, 1.0) for _ in range(width)]
    x[2] = 0.0
    if rng.random() < SLICE_SHARE:
        x[2] = 1.0
        x[1] = x[0] + 0.3
    return x, 0 if x[0] > x[1] else 1


CaseSource = Callable[[], list[str]]
"""New review cases (their request ids) since the last call."""


@dataclass
class Stream:
    """Clients with known labels, and a reviewer labelling review cases.

    The reviewer takes cases from ``cases`` (a review webhook's bodies), or, when it
    is None, from the answers the clients got marked ``review``. Each is labelled
    0.2-0.8 s after it arrived, as the true class, through the feedback API.
    """

    url: str
    model: str
    width: int
    cases: CaseSource | None = None
    truth: dict[str, int] = field(default_factory=dict)
    answered: int = 0
    failures: list[str] = field(default_factory=list)
    decisions: dict[str, int] = field(default_factory=dict)
    labelled: int = 0
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _marked: list[str] = field(default_factory=list)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> Stream:
        self._threads = [
            threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(CLIENTS)
        ]
        self._threads.append(threading.Thread(target=self._reviewer, daemon=True))
        for t in self._threads:
            t.start()
        return self

    def close(self) -> None:
        self.stop.set()
        for t in self._threads:
            t.join(timeout=35)

    def _client(self, seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=self.url, timeout=30) as c:
            n = 0
            while not self.stop.is_set():
                n += 1
                rid = f"c{seed}-{n}"
                x, label = row(rng, self.width)
                with self.lock:
                    self.truth[rid] = label
                body = {"inputs": [{"name": "input", "shape": [1, self.width],
                                    "datatype": "FP32", "data": x}]}  # fmt: skip
                try:
                    answer = c.post(
                        f"/v2/models/{self.model}/infer", json=body, headers={"x-request-id": rid}
                    )
                except httpx.HTTPError as exc:
                    with self.lock:
                        self.failures.append(f"{rid}: {exc!r}")
                    continue
                with self.lock:
                    self.answered += 1
                    if answer.status_code != 200:
                        self.failures.append(f"{rid}: {answer.status_code} {answer.text[:200]}")
                        continue
                    decision = answer.headers.get("x-kanaria-automation", "none")
                    self.decisions[decision] = self.decisions.get(decision, 0) + 1
                    if decision == "review":
                        self._marked.append(rid)
                self.stop.wait(0.03)

    def _new_cases(self) -> list[str]:
        if self.cases is not None:
            return self.cases()
        with self.lock:
            out, self._marked = self._marked, []
        return out

    def _reviewer(self) -> None:
        rng = random.Random(99)
        pending: list[tuple[float, str]] = []
        with httpx.Client(base_url=self.url, timeout=30) as c:
            while not self.stop.is_set():
                now = time.monotonic()
                pending += [(now + rng.uniform(0.2, 0.8), rid) for rid in self._new_cases()]
                due = [rid for at, rid in pending if at <= now]
                pending = [(at, rid) for at, rid in pending if at > now]
                with self.lock:
                    labels = [{"id": r, "label": self.truth[r]} for r in due if r in self.truth]
                if labels:  # the feedback API is part of the product: a failure counts
                    problem: str | None
                    try:
                        posted = c.post(f"/v2/models/{self.model}/feedback", json=labels)
                        ok = posted.status_code == 200
                        problem = None if ok else f"{posted.status_code} {posted.text[:200]}"
                    except httpx.HTTPError as exc:
                        problem = repr(exc)
                    with self.lock:
                        if problem is None:
                            self.labelled += len(labels)
                        else:
                            self.failures.append(f"feedback: {problem}")
                self.stop.wait(0.1)


Apply = Callable[[str, str], None]
"""Apply the ModelDeployment at ``version`` with model file ``good`` or ``sliced``
(under POLICY and the RAMP strategy with GATES)."""
Wait = Callable[[Callable[[dict[str, Any]], bool], str], dict[str, Any]]
"""Wait (bounded) until the status meets the check; return it."""


def automation_points(
    version: str, seen: list[tuple[str, float]]
) -> Callable[[dict[str, Any]], None]:
    """Record each new (mode, threshold) of ``version``'s automation into ``seen``."""

    def note(status: dict[str, Any]) -> None:
        auto = status.get("automation") or {}
        if auto.get("version") == version:
            point = (auto.get("mode"), auto.get("threshold"))
            if not seen or seen[-1] != point:
                seen.append(point)  # type: ignore[arg-type]

    return note


def ramps_to_partial(apply: Apply, wait: Wait, stream: Stream, version: str) -> None:
    """A model right when confident ramps assist -> 0.97 -> partial at FLOOR, promoted."""
    seen: list[tuple[str, float]] = []
    note = automation_points(version, seen)

    def promoted_at_floor(status: dict[str, Any]) -> bool:
        note(status)
        auto = status.get("automation") or {}
        return (
            status.get("phase") == "Healthy"
            and (status.get("stable") or {}).get("version") == version
            and (auto.get("mode"), auto.get("threshold")) == ("partial", FLOOR)
        )

    apply(version, "good")
    wait(promoted_at_floor, f"{version} ramped to partial at the floor and promoted")
    assert seen[0] == ("assist", 1.0), seen
    assert ("partial", 0.97) in seen, seen
    assert stream.labelled > 0
    assert stream.decisions.get("review", 0) > 0
    assert stream.decisions.get("automated", 0) > 0


def sliced_model_moves_back(apply: Apply, wait: Wait, version: str) -> dict[str, Any]:
    """A model confidently wrong on a slice is moved back to assist in one move and
    paused (not rolled back: it still takes all traffic, every answer reviewed)."""
    seen: list[tuple[str, float]] = []
    note = automation_points(version, seen)

    def moved_back(status: dict[str, Any]) -> bool:
        note(status)
        auto = status.get("automation") or {}
        return (
            auto.get("version") == version
            and auto.get("fallbacks", 0) >= 1
            and status.get("pauseReason") == "ThresholdMovedBack"
        )

    apply(version, "sliced")
    status = wait(moved_back, f"{version}'s threshold moved back")
    assert ("partial", 0.97) in seen, seen  # it had been ramped before the slice showed
    assert (status["automation"]["mode"], status["automation"]["threshold"]) == ("assist", 1.0)
    assert "agreement" in status["message"], status["message"]
    assert status["weights"].get(version) == 100  # moved back, not rolled back
    return status
