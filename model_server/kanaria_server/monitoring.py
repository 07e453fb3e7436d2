"""Prometheus metrics of one served model: software, input, drift and output.

Names come from :mod:`kanaria.metric_names` (the interface the rollout gates and
dashboards read). Per-batch statistics are computed in the inference thread on
the merged batch, vectorised, so monitoring costs little per request; drift PSI
is computed when Prometheus scrapes, from bin counts over a sliding window.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from kanaria import metric_names as m
from kanaria_server.model import Signature, TensorSpec
from kanaria_server.profile import InputProfile, psi

Array = np.ndarray[Any, Any]
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
CONFIDENCE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)


def classifier_outputs(signature: Signature) -> list[TensorSpec]:
    """Outputs treated as class scores: float, [batch, classes] with at least 2 classes."""
    return [
        t
        for t in signature.outputs
        if t.datatype in ("FP16", "FP32", "FP64") and len(t.shape) == 2 and t.shape[1] >= 2
    ]


def confidences(scores: Array) -> Array:
    """Max class probability per row; scores that are not probabilities go through softmax."""
    s = scores.astype(np.float64, copy=False)
    if s.min() >= 0 and s.max() <= 1 and np.abs(s.sum(axis=1) - 1.0).max() <= 1e-3:
        return np.asarray(s.max(axis=1))
    shifted = np.exp(s - s.max(axis=1, keepdims=True))
    return np.asarray((shifted / shifted.sum(axis=1, keepdims=True)).max(axis=1))


class DriftWindow:
    """Bin counts of the last ``window`` rows of one input, for PSI against its profile."""

    def __init__(self, profile: InputProfile, window: int) -> None:
        self.profile = profile
        self.window = window
        self._chunks: deque[tuple[int, Array]] = deque()
        self._rows = 0
        self._total = np.zeros_like(profile.expected, dtype=np.int64)
        self._lock = threading.Lock()

    def add(self, values: Array) -> None:
        counts = self.profile.counts(values)
        rows = int(values.shape[0])
        with self._lock:
            self._chunks.append((rows, counts))
            self._total += counts
            self._rows += rows
            while self._chunks and self._rows - self._chunks[0][0] >= self.window:
                old_rows, old = self._chunks.popleft()
                self._total -= old
                self._rows -= old_rows

    def value(self) -> float:
        with self._lock:
            total = self._total.copy()
        return psi(self.profile.expected, total)


class _DriftCollector(Collector):
    def __init__(self, model: str, version: str, windows: dict[str, DriftWindow]) -> None:
        self._labels = (model, version)
        self._windows = windows

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            m.INPUT_DRIFT,
            "PSI of the input over a sliding window against the reference profile (worst feature)",
            labels=["model", "version", "input"],
        )
        for name, window in self._windows.items():
            family.add_metric([*self._labels, name], window.value())
        yield family


class Monitor:
    """All metrics of one model version, in their own registry."""

    def __init__(self, model: str, version: str, drift_window: int = 1000) -> None:
        self.model = model
        self.version = version
        self.drift_window = drift_window
        self.registry = CollectorRegistry()
        r = self.registry
        # CPU and memory of the server process: the dashboard's software row.
        ProcessCollector(registry=r)
        mv = ["model", "version"]
        self.requests = Counter(
            m.SERVER_REQUESTS,
            "Requests by endpoint and code",
            [*mv, "endpoint", "code"],
            registry=r,
        )
        self.latency = Histogram(
            m.SERVER_LATENCY,
            "Infer request time in the server",
            mv,
            buckets=m.LATENCY_BUCKETS,
            registry=r,
        ).labels(model, version)
        self.queue = Histogram(
            m.SERVER_QUEUE,
            "Time waiting for a batch slot",
            mv,
            buckets=m.LATENCY_BUCKETS,
            registry=r,
        ).labels(model, version)
        self.inference = Histogram(
            m.SERVER_INFERENCE,
            "onnxruntime time per batch",
            mv,
            buckets=m.LATENCY_BUCKETS,
            registry=r,
        ).labels(model, version)
        self.batch_size = Histogram(
            m.SERVER_BATCH_SIZE, "Rows per executed batch", mv, buckets=BATCH_BUCKETS, registry=r
        ).labels(model, version)
        self.inflight = Gauge(
            m.SERVER_INFLIGHT, "Infer requests in progress", mv, registry=r
        ).labels(model, version)
        self.ready = Gauge(m.SERVER_READY, "1 once loaded and warmed up", mv, registry=r).labels(
            model, version
        )
        mvi = [*mv, "input"]
        self.input_values = Counter(m.INPUT_VALUES, "Input values received", mvi, registry=r)
        self.input_missing = Counter(m.INPUT_MISSING, "Input values that were NaN", mvi, registry=r)
        mvo = [*mv, "output"]
        self.output_classes = Counter(
            m.OUTPUT_CLASSES, "Argmax class of classifier outputs", [*mvo, "class"], registry=r
        )
        self.output_nulls = Counter(m.OUTPUT_NULLS, "Rows with NaN/inf outputs", mvo, registry=r)
        self.confidence = Histogram(
            m.OUTPUT_CONFIDENCE,
            "Max class probability",
            mvo,
            buckets=CONFIDENCE_BUCKETS,
            registry=r,
        )
        self.feedback = Counter(m.FEEDBACK, "Delayed labels by result", [*mv, "result"], registry=r)
        self.feedback_children = {
            result: self.feedback.labels(model, version, result)
            for result in ("correct", "incorrect", "unknown")
        }
        self.decisions = Counter(
            m.AUTOMATION_DECISIONS,
            "Predictions by automation decision",
            [*mv, "decision"],
            registry=r,
        )
        self._decision_children = {
            d: self.decisions.labels(model, version, d) for d in ("automated", "review")
        }
        self.spot_checks = Counter(
            m.SPOT_CHECKS,
            "Automated answers also sent for review as spot checks",
            mv,
            registry=r,
        )
        self._spot_child = self.spot_checks.labels(model, version)
        self.review_agreement = Counter(
            m.REVIEW_AGREEMENT,
            "Reviewers' labels on review cases against the suggestion, by confidence band",
            [*mv, "band", "result"],
            registry=r,
        )
        self._request_children: dict[tuple[str, int], Any] = {}
        self._float_inputs: list[str] = []
        self._numeric_inputs: list[str] = []
        self._numeric_outputs: list[str] = []
        self.classifiers: list[str] = []
        self._input_children: dict[str, tuple[Any, Any]] = {}
        self._class_children: dict[tuple[str, int], Any] = {}
        self._conf_children: dict[str, Any] = {}
        self._null_children: dict[str, Any] = {}
        self.drift: dict[str, DriftWindow] = {}

    def bind(self, signature: Signature, profiles: dict[str, InputProfile] | None = None) -> None:
        """Set up the per-input and per-output series once the model's signature is known."""
        model, version = self.model, self.version
        floats = ("FP16", "FP32", "FP64")
        self._float_inputs = [t.name for t in signature.inputs if t.datatype in floats]
        self._numeric_inputs = [t.name for t in signature.inputs if t.datatype != "BYTES"]
        self._numeric_outputs = [t.name for t in signature.outputs if t.datatype != "BYTES"]
        self.classifiers = [t.name for t in classifier_outputs(signature)]
        self._input_children = {
            n: (
                self.input_values.labels(model, version, n),
                self.input_missing.labels(model, version, n),
            )
            for n in self._numeric_inputs
        }
        self._conf_children = {
            n: self.confidence.labels(model, version, n) for n in self.classifiers
        }
        self._null_children = {
            n: self.output_nulls.labels(model, version, n) for n in self._numeric_outputs
        }
        self.drift = {
            name: DriftWindow(prof, self.drift_window) for name, prof in (profiles or {}).items()
        }
        if self.drift:
            self.registry.register(_DriftCollector(model, version, self.drift))

    def count_decision(self, decision: str, spot_check: bool = False) -> None:
        """One answer under a confidence policy: automated or review (and a spot check)."""
        self._decision_children[decision].inc()
        if spot_check:
            self._spot_child.inc()

    def count_agreement(self, bands: dict[str, tuple[int, int]]) -> None:
        """Reviewers' labels on review cases: (agree, disagree) rows per confidence band."""
        for band, (agree, disagree) in bands.items():
            if agree:
                self.review_agreement.labels(self.model, self.version, band, "agree").inc(agree)
            if disagree:
                self.review_agreement.labels(self.model, self.version, band, "disagree").inc(
                    disagree
                )

    def count_request(self, endpoint: str, code: int) -> None:
        key = (endpoint, code)
        child = self._request_children.get(key)
        if child is None:
            child = self.requests.labels(self.model, self.version, endpoint, str(code))
            self._request_children[key] = child
        child.inc()

    def observe_batch(
        self, inputs: dict[str, Array], outputs: dict[str, Array], seconds: float
    ) -> None:
        """Inference thread: statistics of one executed batch (merged rows)."""
        self.inference.observe(seconds)
        first = next(iter(inputs.values()))
        self.batch_size.observe(first.shape[0] if first.ndim else 1)
        for name in self._numeric_inputs:
            values, missing = self._input_children[name]
            arr = inputs[name]
            values.inc(arr.size)
            if name in self._float_inputs:
                nans = int(np.count_nonzero(np.isnan(arr)))
                if nans:
                    missing.inc(nans)
        for name, window in self.drift.items():
            if name in inputs and inputs[name].ndim >= 1:
                window.add(inputs[name])
        for name in self._numeric_outputs:
            arr = outputs[name]
            if arr.dtype.kind == "f" and arr.ndim >= 1 and arr.size:
                bad_rows = ~np.isfinite(arr.reshape(arr.shape[0], -1)).all(axis=1)
                nulls = int(np.count_nonzero(bad_rows))
                if nulls:
                    self._null_children[name].inc(nulls)
        for name in self.classifiers:
            scores = outputs[name]
            if scores.ndim != 2 or not scores.size:
                continue
            finite = np.isfinite(scores).all(axis=1)
            scores = scores[finite]
            if not scores.size:
                continue
            classes = np.bincount(scores.argmax(axis=1), minlength=scores.shape[1])
            for cls in np.flatnonzero(classes):
                key = (name, int(cls))
                child = self._class_children.get(key)
                if child is None:
                    child = self.output_classes.labels(self.model, self.version, name, str(cls))
                    self._class_children[key] = child
                child.inc(int(classes[cls]))
            hist = self._conf_children[name]
            for value in confidences(scores):
                hist.observe(float(value))
