"""Score request columns with the loaded model: limits, the signature's frame, then predict.

Both protocols (v2 and ``/invocations``) turn their body into columns and call
:meth:`Scorer.score`; everything after that is shared. Building the frame and
predicting run in a worker thread so the event loop keeps answering health checks.
"""

from __future__ import annotations

import logging
from typing import Any

import polars as pl
from starlette.concurrency import run_in_threadpool

from keelson.registry.model import LoadedModel, Prediction
from keelson.registry.signature import SignatureError
from keelson.serve.errors import ServeError
from keelson.serve.metrics import ServeMetrics

logger = logging.getLogger(__name__)


class Scorer:
    """The model behind both protocols, with the per-request row limit."""

    def __init__(self, model: LoadedModel, max_rows: int, metrics: ServeMetrics) -> None:
        self.model = model
        self.max_rows = max_rows
        self.metrics = metrics

    async def score(self, columns: dict[str, list[Any]]) -> Prediction:
        """Predict for ``columns`` (name → values); 413/422 for what the client got wrong."""
        self._check_row_limit(columns)
        prediction = await run_in_threadpool(self._score, columns)
        self.metrics.count_rows(len(prediction.labels))
        return prediction

    def _check_row_limit(self, columns: dict[str, list[Any]]) -> None:
        rows = max((len(values) for values in columns.values()), default=0)
        if rows > self.max_rows:
            raise ServeError(
                413,
                "too_many_rows",
                f"the request has {rows} rows; the limit is {self.max_rows} rows per request. "
                "Split it into smaller batches.",
            )

    def _score(self, columns: dict[str, list[Any]]) -> Prediction:
        frame = self.model.signature.frame(columns)
        if frame.height == 0:
            raise ServeError(422, "no_rows", "the request has no rows; send at least one.")
        _check_finite(frame)
        try:
            return self.model.predict(frame)
        except Exception as exc:
            logger.exception(
                "prediction failed for model '%s' version %s", self.model.name, self.model.version
            )
            raise ServeError(
                500, "prediction_failed", "prediction failed; the server log has the details."
            ) from exc


def _check_finite(frame: pl.DataFrame) -> None:
    """Infinity passes the signature's float check but no scikit-learn transformer takes it."""
    for name, dtype in frame.schema.items():
        if not dtype.is_float():
            continue
        rows = frame[name].is_infinite().arg_true()
        if rows.len():
            row = rows[0]
            raise SignatureError(
                f"column '{name}' row {row}: expected a finite float64, got {frame[name][row]}."
            )
