from __future__ import annotations

from datetime import date, datetime

import numpy as np
import polars as pl
import pytest

from keelson.features.dates import DateParts
from keelson.features.preprocess import ColumnKinds
from keelson.registry.versions import MODEL_FORMAT, _safe_load
from keelson.train.candidates import Config, make_pipeline


def frame(rows: int = 400) -> pl.DataFrame:
    rng = np.random.default_rng(0)
    days = rng.integers(0, 730, rows)
    when = [datetime(2024, 1, 1, int(h)) for h in rng.integers(0, 24, rows)]
    return pl.DataFrame(
        {
            "day": [date.fromordinal(date(2023, 1, 1).toordinal() + int(d)) for d in days],
            "when": when,
            "x": rng.normal(size=rows),
        }
    ).with_columns(pl.when(pl.col("x") > 1.5).then(None).otherwise(pl.col("day")).alias("day"))


def test_calendar_parts_and_elapsed_days() -> None:
    parts = DateParts().fit_transform(pl.DataFrame({"d": [date(2024, 3, 5), None]}))
    assert parts[0].tolist() == [2024, 3, 5, 2, 0, 19787]  # a Tuesday; days since 1970
    assert np.isnan(parts[1]).all()


def test_dates_are_features_not_categories() -> None:
    kinds = ColumnKinds.of(frame())
    assert kinds.temporal == ["day", "when"] and kinds.categorical == []


@pytest.mark.parametrize("family", ["linear", "lightgbm"])
def test_a_pipeline_learns_from_dates_and_loads_from_the_registry(family: str) -> None:
    import skops.io as sio

    data = frame()
    labels = (data["day"].dt.month().fill_null(1).to_numpy() > 6).astype(int)  # season
    config = Config(family, {"C": 10.0} if family == "linear" else {"n_estimators": 50})
    pipeline = make_pipeline(config, ColumnKinds.of(data), "binary", 1, 0).fit(data, labels)
    assert pipeline.score(data, labels) > 0.75
    loaded = _safe_load(sio.dumps(pipeline), MODEL_FORMAT)
    assert np.allclose(loaded.predict_proba(data), pipeline.predict_proba(data))
