"""The BentoML service of the serving bench: the exported pipeline behind two APIs.

``bentoml serve bentoml_service:TabularModel`` (from this folder, in the BentoML venv).
The harness sets ``BENCH_MODEL`` (the joblib file it exported from keelson's registry),
``BENCH_COLUMNS`` (the signature's column names, comma-separated) and ``BENCH_WORKERS``.

- ``POST /predict``: ``{"rows": [{column: value, ...}, ...]}`` → ``[[p0, p1], ...]``, a
  plain synchronous API;
- ``POST /predict_batched``: the same body and answer, with BentoML's adaptive batching
  at its defaults (concurrent requests' rows are joined into one ``predict_proba``).
"""

from __future__ import annotations

import os
from typing import Any

import bentoml
import joblib
import pandas as pd

COLUMNS = os.environ.get("BENCH_COLUMNS", "").split(",")


@bentoml.service(workers=int(os.environ.get("BENCH_WORKERS", "1")))
class TabularModel:
    def __init__(self) -> None:
        self.pipeline = joblib.load(os.environ["BENCH_MODEL"])

    def _proba(self, rows: list[dict[str, Any]]) -> list[list[float]]:
        frame = pd.DataFrame.from_records(rows, columns=COLUMNS)
        return self.pipeline.predict_proba(frame).tolist()

    @bentoml.api
    def predict(self, rows: list[dict[str, Any]]) -> list[list[float]]:
        return self._proba(rows)

    @bentoml.api(batchable=True)
    def predict_batched(self, rows: list[dict[str, Any]]) -> list[list[float]]:
        return self._proba(rows)
