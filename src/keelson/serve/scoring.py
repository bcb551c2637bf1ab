"""Score request columns with the loaded model: limits, the signature's frame, then predict.

Both protocols (v2 and ``/invocations``) turn their body into columns and call
:meth:`Scorer.score`; everything after that is shared. Building the frame and
predicting run in a worker thread so the event loop keeps answering health checks.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.concurrency import run_in_threadpool

from keelson.registry.model import LoadedModel, Prediction
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
        self.metrics.count_rows(prediction.rows)
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
        try:
            return self.model.predict(frame)
        except Exception as exc:
            logger.exception(
                "prediction failed for model '%s' version %s", self.model.name, self.model.version
            )
            raise ServeError(
                500, "prediction_failed", "prediction failed; the server log has the details."
            ) from exc
