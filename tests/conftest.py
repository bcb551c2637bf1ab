"""Fixtures shared across the suite: a generated project and real database servers."""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl
import pytest

PG_ADMIN_URL = os.environ.get("KEELSON_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")

SPEC = """\
name: churn-demo
sources:
  customers: {kind: csv, path: data/customers.csv}
  usage: {kind: sql, url: "sqlite:///data/usage.db", query: "SELECT * FROM usage"}
  months: {kind: parquet, path: data/months.parquet}
contracts:
  customers:
    unique: [customer_id]
    max_quarantine_share: 0.05
    columns:
      customer_id: {type: int, nullable: false}
      age: {type: int, nullable: false, min: 18, max: 99}
      plan: {type: str, allowed: [basic, plus, pro]}
  usage:
    unique: [usage_id]
    columns:
      usage_id: {type: int, nullable: false}
      churn: {type: str, nullable: false, allowed: ["yes", "no"]}
integrate:
  base: usage
  joins:
    - {source: customers, keys: [customer_id], validate: "m:1"}
    - {source: months, keys: [month], validate: "m:1"}
  drop: [usage_id, customer_id]
target: {column: churn, positive: "yes"}
split: {test: 0.25, seed: 7}
train:
  candidates: [linear, hist_gradient_boosting, lightgbm]
  budget: {seconds: 60, max_trials: 4}
  cv_folds: 2
  bootstrap: 100
registry: {name: churn-demo, alias: production}
"""


def write_project(folder: Path, rows: int = 1200, seed: int = 0) -> Path:
    """A small three-source project with a learnable target and a few dirty rows."""
    rng = np.random.default_rng(seed)
    data = folder / "data"
    data.mkdir(parents=True, exist_ok=True)
    customers = rows // 2
    plans = rng.choice(["basic", "plus", "pro"], customers)
    ages = rng.integers(18, 90, customers)
    lines = ["customer_id,age,plan,region"]
    lines += [
        f"{i},{ages[i]},{plans[i]},{rng.choice(['north', 'south'])}" for i in range(customers)
    ]
    lines += ["9001,abc,basic,north", "9002,40,gold,south", "9003,41,basic,north,extra"]
    (data / "customers.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    months = pl.DataFrame(
        {"month": [f"2024-{m:02d}" for m in range(1, 13)], "index": rng.normal(100, 5, 12)}
    )
    months.write_parquet(data / "months.parquet")
    owner = rng.integers(0, customers, rows)
    spend = rng.gamma(2.0, 30.0, rows)
    calls = rng.poisson(3, rows)
    logit = (
        -2.0
        + 0.04 * calls * 3
        - 0.01 * spend
        + (plans[owner] == "basic") * 1.2
        + (ages[owner] < 30) * 0.8
    )
    churn = np.where(rng.random(rows) < 1 / (1 + np.exp(-logit)), "yes", "no")
    month = rng.choice(months["month"].to_list(), rows)
    with sqlite3.connect(data / "usage.db") as db:
        db.execute(
            "CREATE TABLE usage (usage_id INTEGER, customer_id INTEGER, month TEXT, "
            "spend REAL, calls INTEGER, churn TEXT)"
        )
        db.executemany(
            "INSERT INTO usage VALUES (?, ?, ?, ?, ?, ?)",
            [
                (i, int(owner[i]), month[i], float(spend[i]), int(calls[i]), churn[i])
                for i in range(rows)
            ],
        )
    (folder / "keelson.yaml").write_text(SPEC, encoding="utf-8")
    return folder


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("KEELSON_STORE_URL", raising=False)
    monkeypatch.delenv("KEELSON_ARTIFACTS", raising=False)
    return write_project(tmp_path / "churn")


def _postgres_or_skip() -> None:
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(
            PG_ADMIN_URL.replace("postgresql://", "postgresql+psycopg://")
        )
        with engine.connect():
            pass
        engine.dispose()
    except Exception as exc:  # the server is absent or refuses us
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL at {PG_ADMIN_URL} is required in CI: {exc}")
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc}")


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    import sqlalchemy

    _postgres_or_skip()
    name = f"keelson_test_{uuid.uuid4().hex[:12]}"
    admin = sqlalchemy.create_engine(
        PG_ADMIN_URL.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as connection:
        connection.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
