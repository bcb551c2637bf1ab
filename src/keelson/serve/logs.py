"""A server's two logs: every scored request, and the ground truth sent back for them.

Appending never blocks a request: a background thread writes Parquet parts (see
:mod:`keelson.serve.prediction_log`), and the app's shutdown flushes both logs after
the last request in flight was answered.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from fastapi import FastAPI
from prometheus_client import Gauge

from keelson.serve.auth import principal_of
from keelson.serve.feedback import FeedbackLog, feedback_router
from keelson.serve.metrics import ServeMetrics
from keelson.serve.prediction_log import LogEntry, PredictionLog
from keelson.serve.scoring import Scored, Scorer
from keelson.spec import Serve


@dataclass
class Logs:
    predictions: PredictionLog
    feedback: FeedbackLog

    @classmethod
    def open(cls, url: str, settings: Serve) -> Logs:
        spec = settings.prediction_log
        return cls(
            PredictionLog(url, spec.flush_rows, spec.flush_seconds),
            FeedbackLog(url, spec.flush_rows, spec.flush_seconds),
        )

    def attach(self, app: FastAPI, scorer: Scorer, metrics: ServeMetrics) -> None:
        """Log every scored request; add the feedback route; expose dropped rows."""
        scorer.listeners.append(lambda scored: self.predictions.append(log_entry(scored)))
        app.include_router(
            feedback_router(
                self.feedback,
                lambda: scorer.primary.name,
                classes=lambda: scorer.primary.signature.classes,
                key_name=lambda request: getattr(principal_of(request.scope), "name", None),
            )
        )
        dropped = Gauge(
            "keelson_prediction_log_dropped_rows",
            "Rows the prediction log could not keep (its writer fell too far behind).",
            registry=metrics.registry,
        )
        dropped.set_function(lambda: self.predictions.dropped)

    def close(self) -> None:
        self.predictions.close()
        self.feedback.close()


def log_entry(scored: Scored) -> LogEntry:
    prediction = scored.prediction
    outputs: dict[str, np.ndarray | Sequence[Any]] = (
        {"value": prediction.values}
        if prediction.values is not None
        else {"label": prediction.labels, "probabilities": prediction.probabilities}
    )
    return LogEntry(
        request_id=scored.request_id,
        time=datetime.now(UTC) - timedelta(seconds=scored.seconds),
        model=scored.model.name,
        version=scored.model.version,
        variant=scored.variant,
        inputs=scored.frame,
        outputs=outputs,
        latency_ms=scored.seconds * 1000,
        status=200,
        classes=tuple(prediction.classes),
        rows=scored.rows,
    )
