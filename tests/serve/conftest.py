"""A real fitted model served by a real uvicorn server on a free loopback port."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import numpy as np
import polars as pl
import pytest
import uvicorn
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.model_selection import FixedThresholdClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from starlette.types import ASGIApp

from keelson.registry.model import LoadedModel
from keelson.registry.signature import Signature
from keelson.serve import create_app

ROWS = 300


def toy_frame(rows: int, seed: int) -> tuple[pl.DataFrame, np.ndarray]:
    """An int column, a float column with nulls, a string category; target "yes"/"no"."""
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
    return frame, np.where(score > 0, "yes", "no")


def toy_pipeline() -> FixedThresholdClassifier:
    preprocess = ColumnTransformer(
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
    model = HistGradientBoostingClassifier(max_iter=30, random_state=0)
    return FixedThresholdClassifier(
        Pipeline([("preprocess", preprocess), ("model", model)]),
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
