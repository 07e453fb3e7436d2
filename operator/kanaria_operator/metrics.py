"""The operator's Prometheus metrics: the shared control-loop metrics on the default registry.

Declared in :mod:`kanaria.loop_metrics` (one definition with ``kanaria up``, so
the dashboard and alerts read both alike); served by the handlers' metrics
endpoint and updated only by :mod:`kanaria_operator.reconcile`.
"""

from __future__ import annotations

from kanaria.loop_metrics import LoopMetrics

LOOP = LoopMetrics()
"""One per process: prometheus_client's default registry refuses a second declaration."""
