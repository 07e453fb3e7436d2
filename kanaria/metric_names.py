"""Prometheus metric names: an interface, not an implementation detail.

Dashboards, alerts and the rollout gates read these names, so they live in one
place that every component imports. Every data-plane series carries at least
the ``model`` and ``version`` labels. Counters end in ``_total``; durations are
in seconds; weights are percentages (0-100).
"""

from __future__ import annotations

from typing import Final

PREFIX: Final = "kanaria_"

LATENCY_BUCKETS: Final = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
"""Histogram buckets (seconds) of every latency histogram, router and model server
alike: the latency gates and panels compute quantiles from them, so both sides of a
comparison must have the same resolution (fine at the low end, where added latency lives)."""

# --- Router (one series set per model and version the router sends traffic to)
ROUTER_REQUESTS = "kanaria_router_requests_total"
"""Counter {model, version, code}: client requests answered, by HTTP status code."""
ROUTER_LATENCY = "kanaria_router_request_duration_seconds"
"""Histogram {model, version}: client-observed latency through the router."""
ROUTER_WEIGHT = "kanaria_router_weight_percent"
"""Gauge {model, version}: the weight (0-100) currently configured for a version."""
ROUTER_MIRROR = "kanaria_router_mirror_requests_total"
"""Counter {model, version, outcome}: mirrored copies; outcome is sent|dropped|failed."""
SHADOW_COMPARISONS = "kanaria_shadow_comparisons_total"
"""Counter {model, version, baseline, result}: shadow answers compared with the
primary's; ``version`` is the shadow, ``baseline`` the version that answered the
client, result is agree|disagree."""
ROUTER_CONFIG_RELOADS = "kanaria_router_config_reloads_total"
"""Counter {result}: route reloads, result is applied|rejected."""
ROUTER_ROUTES_REVISION = "kanaria_router_routes_revision_info"
"""Gauge {revision}, always 1: the revision of the routes document the router runs.
The control loop stops a dropped version only once every router reports routes
without it (kanaria.loop.effects)."""
ROUTER_MIRROR_WORKER_CPU = "kanaria_router_mirror_worker_cpu_seconds_total"
"""Counter: CPU time (user + system) of the router's mirror worker process, which
the router's own ``process_cpu_seconds_total`` does not include; starts again at
0 when a new worker is started. Absent while no worker runs."""
ROUTER_MIRROR_WORKER_MEMORY = "kanaria_router_mirror_worker_resident_memory_bytes"
"""Gauge: resident memory of the mirror worker process. Absent while no worker runs."""

# --- Model server
SERVER_REQUESTS = "kanaria_server_requests_total"
"""Counter {model, version, endpoint, code}: requests by endpoint (infer, feedback, ...)."""
SERVER_LATENCY = "kanaria_server_request_duration_seconds"
"""Histogram {model, version}: total time of an infer request inside the server."""
SERVER_QUEUE = "kanaria_server_queue_duration_seconds"
"""Histogram {model, version}: time an infer request waited for a batch slot."""
SERVER_INFERENCE = "kanaria_server_inference_duration_seconds"
"""Histogram {model, version}: onnxruntime time per executed batch."""
SERVER_BATCH_SIZE = "kanaria_server_batch_size"
"""Histogram {model, version}: rows per executed batch."""
SERVER_INFLIGHT = "kanaria_server_inflight_requests"
"""Gauge {model, version}: infer requests currently being handled."""
SERVER_READY = "kanaria_server_ready"
"""Gauge {model, version}: 1 once the model loaded and warmed up, else 0."""
INPUT_VALUES = "kanaria_input_values_total"
"""Counter {model, version, input}: scalar input values received."""
INPUT_MISSING = "kanaria_input_missing_values_total"
"""Counter {model, version, input}: of those, values that were NaN (missing)."""
INPUT_DRIFT = "kanaria_input_drift_psi"
"""Gauge {model, version, input}: population stability index of the input over a
sliding window against the reference profile shipped with the model."""
OUTPUT_CLASSES = "kanaria_output_class_total"
"""Counter {model, version, output, class}: argmax class of classifier outputs."""
OUTPUT_NULLS = "kanaria_output_null_total"
"""Counter {model, version, output}: rows whose output held NaN or inf."""
OUTPUT_CONFIDENCE = "kanaria_output_confidence"
"""Histogram {model, version, output}: max probability of classifier outputs."""
FEEDBACK = "kanaria_feedback_total"
"""Counter {model, version, result}: delayed labels; result is correct|incorrect|unknown."""

# --- Degrees of automation (issue 13; the review queue's own series are in kanaria.review.metrics)
AUTOMATION_DECISIONS = "kanaria_automation_decisions_total"
"""Counter {model, version, decision}: predictions answered under a confidence policy, by
decision: automated (the model decided) or review (sent to a person with the suggestion)."""
SPOT_CHECKS = "kanaria_automation_spot_checks_total"
"""Counter {model, version}: automated answers also sent for review as spot checks
(spec.automation.spotCheck), so agreement keeps being measured where the model decides."""
REVIEW_AGREEMENT = "kanaria_review_agreement_total"
"""Counter {model, version, band, result}: reviewers' labels on review cases (and spot
checks) scored against
the model's suggestion; result is agree|disagree, band the lower edge of the prediction's
confidence band (0.05 wide: "0.90" is [0.90, 0.95)). reviewerAgreement sums the bands the
next setThreshold step automates."""
AUTOMATION_THRESHOLD = "kanaria_automation_threshold"
"""Gauge {model, version}: the confidence threshold the router currently applies to a
version (1 in assist: nothing automated; 0 in full)."""
REVIEW_QUEUE_DEPTH = "kanaria_review_queue_depth"
"""Gauge {model, sink}: review cases waiting in a sink's buffer (kanaria.review)."""
REVIEW_CASES = "kanaria_review_cases_total"
"""Counter {model, version, sink, outcome}: review cases offered to a sink; outcome is
sent|failed|dropped (dropped: the buffer was full; a client never waits for it)."""

# --- Operator and local runtime (the rollout control loop)
ROLLOUT_PHASE = "kanaria_rollout_phase"
"""Gauge {namespace, model, phase}: 1 for the current phase of a ModelDeployment."""
ROLLOUT_WEIGHT = "kanaria_rollout_weight_percent"
"""Gauge {namespace, model, version, role}: weight decided by the engine; role is
stable|candidate|shadow (shadow: mirrored percent)."""
ROLLOUT_STEP = "kanaria_rollout_step"
"""Gauge {namespace, model}: index of the current canary step."""
ROLLOUT_LAST_TRANSITION = "kanaria_rollout_last_transition_timestamp_seconds"
"""Gauge {namespace, model}: unix time of the last phase/step change (stuck alert)."""
ANALYSIS_MEASUREMENTS = "kanaria_analysis_measurements_total"
"""Counter {namespace, model, metric, verdict}: gate measurements by verdict
(Successful|Failed|Inconclusive|Error)."""
ANALYSIS_COMPARISON = "kanaria_analysis_comparison"
"""Gauge {namespace, model, metric, version, quantity}: a compare gate's last look at
the candidate; quantity estimate (the compared quantity: candidate minus or over the
stable), lower and upper (its confidence-sequence interval) and limit (what the
interval is held against: above it Failed, at or below Successful). Removed once the
version is no longer the candidate."""
ROLLOUT_TRANSITIONS = "kanaria_rollout_transitions_total"
"""Counter {namespace, model, event}: engine events (Promoted, RolledBack, ...)."""
DECISION_LATENCY = "kanaria_decision_duration_seconds"
"""Histogram {}: time to gather observations, decide and apply one pass."""
