"""The review path: predictions handed to people, and their decisions back as labels.

Issue 13's middle degrees of automation (assist, partial) send some predictions
to a person with the model's answer as a suggestion. This package is that path,
independent of where it is called from (the router, the model server, ``kanaria
up``):

- :mod:`~kanaria.review.case`: the review case (request id, inputs within the
  prediction log's size rule, the suggestion, the confidence, version, time);
- :mod:`~kanaria.review.sender`: a bounded buffer per sink that never slows the
  caller (``offer`` is O(1); full means dropped and counted) and a delivery task
  with bounded, backed-off retries;
- sinks: :mod:`~kanaria.review.webhook` (POST JSON) and
  :mod:`~kanaria.review.labelstudio` (tasks with the prediction pre-filled);
- :mod:`~kanaria.review.puller`: reviewers' annotations back to the feedback API;
- :mod:`~kanaria.review.metrics`: queue depth and what became of each case.

docs/review.md describes it from the reviewer's side.
"""

from __future__ import annotations

from kanaria.review.case import (
    PendingCase,
    ReviewCase,
    batch_body,
    case_from_arrays,
    case_from_v2,
)
from kanaria.review.labelstudio import Connection, LabelStudioClient, LabelStudioSink
from kanaria.review.metrics import ReviewMetrics
from kanaria.review.puller import LabelPuller, PullResult
from kanaria.review.sender import Counts, DeliveryError, Retry, ReviewSender, Sink
from kanaria.review.webhook import WebhookSink

__all__ = [
    "Connection",
    "Counts",
    "DeliveryError",
    "LabelPuller",
    "LabelStudioClient",
    "LabelStudioSink",
    "PendingCase",
    "PullResult",
    "Retry",
    "ReviewCase",
    "ReviewMetrics",
    "ReviewSender",
    "Sink",
    "WebhookSink",
    "batch_body",
    "case_from_arrays",
    "case_from_v2",
]
