"""Real fitted models served by a real uvicorn server on a free loopback port.

``model`` is a binary classifier built in process; ``multiclass_model`` and ``regressor``
are registered in a real store and loaded back, as ``keelson serve`` does.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import numpy as np
import polars as pl
import pytest
import uvicorn
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.impute import SimpleImputer
from sklearn.model_selection import FixedThresholdClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from starlette.types import ASGIApp

from keelson.registry import versions as registry
from keelson.registry.model import LoadedModel
from keelson.registry.signature import Signature
from keelson.serve import create_app
from keelson.store.store import locate, open_store

ROWS = 300
TIERS = ["bronze", "gold", "silver"]  # the multiclass model's labels, codes 0, 1, 2


def toy_frame(rows: int, seed: int) -> tuple[pl.DataFrame, np.ndarray]:
    """An int column, a float column with nulls, a string category; target "yes"/"no"."""
    frame, score = toy_features(rows, seed)
    return frame, np.where(score > 0, "yes", "no")


def toy_features(rows: int, seed: int) -> tuple[pl.DataFrame, np.ndarray]:
    """The toy features and a noisy score that depends on all three."""
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 80, rows)
    income = rng.normal(50.0, 15.0, rows)
    plan = rng.choice(["basic", "plus", "pro"], rows)
    score = (age - 45) / 15 + (income - 50) / 15 + (plan == "pro") + rng.normal(0, 0.5, rows)
    income_with_nulls = [None if i % 10 == 0 else float(v) for i, v in enumerate(income)]
    frame = pl.DataFrame(
        {"age": age, "income": income_with_nulls, "plan": plan},
        schema={"age": pl.Int64, "income": pl.Float64, "plan": pl.String},
    )
    return frame, score


def toy_preprocess() -> ColumnTransformer:
    return ColumnTransformer(
        [
            ("numbers", make_pipeline(SimpleImputer(), StandardScaler()), ["age", "income"]),
            (
                "category",
                make_pipeline(
                    SimpleImputer(strategy="most_frequent"),
                    OneHotEncoder(handle_unknown="ignore"),
                ),
                ["plan"],
            ),
        ]
    )


def toy_pipeline() -> FixedThresholdClassifier:
    model = HistGradientBoostingClassifier(max_iter=30, random_state=0)
    return FixedThresholdClassifier(
        Pipeline([("preprocess", toy_preprocess()), ("model", model)]),
        threshold=0.4,
        response_method="predict_proba",
        pos_label="yes",
    )


@pytest.fixture(scope="session")
def model() -> LoadedModel:
    frame, target = toy_frame(ROWS, seed=0)
    pipeline = toy_pipeline().fit(frame, target)
    signature = Signature.from_frame(frame, classes=[str(c) for c in pipeline.classes_])
    return LoadedModel(name="toy", version=1, pipeline=pipeline, signature=signature, threshold=0.4)


def register_and_load(
    tmp_path_factory: pytest.TempPathFactory,
    name: str,
    pipeline: Any,
    frame: pl.DataFrame,
    classes: list[str],
    task: str,
) -> LoadedModel:
    """Register a fitted pipeline in a fresh store and load it back by reference."""
    store = open_store(locate(tmp_path_factory.mktemp(name)))
    registry.register(
        store,
        registry.NewVersion(
            name=name,
            pipeline=pipeline,
            signature=Signature.from_frame(frame, classes),
            threshold=None,
            family="hist_gradient_boosting",
            metrics={},
            lineage={},
            dataset_version_id=None,
            run_id=None,
            task=task,
        ),
    )
    return registry.load(store, f"{name}@1")


@pytest.fixture(scope="session")
def multiclass_model(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    """Three tiers by score, encoded 0..2 as training encodes a multiclass target."""
    frame, score = toy_features(ROWS, seed=1)
    codes = np.digitize(score, [-0.5, 0.5])
    model = HistGradientBoostingClassifier(max_iter=30, random_state=0)
    pipeline = Pipeline([("preprocess", toy_preprocess()), ("model", model)]).fit(frame, codes)
    return register_and_load(tmp_path_factory, "tiers", pipeline, frame, TIERS, "multiclass")


@pytest.fixture(scope="session")
def regressor(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    frame, score = toy_features(ROWS, seed=2)
    model = HistGradientBoostingRegressor(max_iter=30, random_state=0)
    pipeline = Pipeline([("preprocess", toy_preprocess()), ("model", model)])
    pipeline.fit(frame, 100.0 + 10.0 * score)
    return register_and_load(tmp_path_factory, "spend", pipeline, frame, [], "regression")


@contextmanager
def serving(app: ASGIApp) -> Iterator[str]:
    """Run ``app`` under uvicorn on a free loopback port in a thread; yield its base URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def base_url(model: LoadedModel) -> Iterator[str]:
    with serving(create_app(model)) as url:
        yield url


@pytest.fixture(scope="session")
def client(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=30) as http:
        yield http


@pytest.fixture(scope="session")
def multiclass_client(multiclass_model: LoadedModel) -> Iterator[httpx.Client]:
    with (
        serving(create_app(multiclass_model)) as url,
        httpx.Client(base_url=url, timeout=30) as http,
    ):
        yield http


@pytest.fixture(scope="session")
def regression_client(regressor: LoadedModel) -> Iterator[httpx.Client]:
    with serving(create_app(regressor)) as url, httpx.Client(base_url=url, timeout=30) as http:
        yield http
