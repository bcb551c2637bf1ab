"""Arrow IPC and Parquet bodies: the same answers as JSON, clear 4xx for bad tables."""

from __future__ import annotations

import io

import httpx
import numpy as np
import polars as pl
import pytest

from keelson.registry.model import LoadedModel

from .helpers import INFER, ROWS, columns, in_process

ARROW = "application/vnd.apache.arrow.stream"
PARQUET = "application/vnd.apache.parquet"


def table(rows: list[dict[str, object]] = ROWS) -> pl.DataFrame:
    return pl.DataFrame(
        columns(rows), schema={"age": pl.Int64, "income": pl.Float64, "plan": pl.String}
    )


def encoded(frame: pl.DataFrame, media: str) -> bytes:
    buffer = io.BytesIO()
    if media == ARROW:
        frame.write_ipc_stream(buffer)
    else:
        frame.write_parquet(buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("media", [ARROW, PARQUET])
def test_columnar_bodies_score_like_json(
    client: httpx.Client, model: LoadedModel, media: str
) -> None:
    expected = in_process(model, ROWS)
    body = encoded(table().with_columns(pl.col("age").cast(pl.Int32), extra=pl.lit(1)), media)

    v2 = client.post(INFER, content=body, headers={"content-type": media, "x-request-id": "r1"})
    mlflow = client.post("/invocations", content=body, headers={"content-type": media})

    assert v2.status_code == 200, v2.text
    assert v2.json()["id"] == "r1" and v2.headers["x-model-version"] == "1"
    outputs = {o["name"]: o["data"] for o in v2.json()["outputs"]}
    np.testing.assert_allclose(outputs["probabilities"], expected.probabilities.ravel())
    assert outputs["label"] == expected.labels
    assert mlflow.status_code == 200, mlflow.text
    assert [p["label"] for p in mlflow.json()["predictions"]] == expected.labels


@pytest.mark.parametrize(
    ("frame", "needle"),
    [
        (table().drop("plan"), "missing input column(s) ['plan']"),
        (table().with_columns(pl.col("age").cast(pl.String)), "column 'age': String"),
        (table().with_columns(pl.lit(float("inf")).alias("income")), "column 'income'"),
    ],
)
def test_a_table_that_does_not_fit_the_signature_is_422(
    client: httpx.Client, frame: pl.DataFrame, needle: str
) -> None:
    response = client.post(INFER, content=encoded(frame, ARROW), headers={"content-type": ARROW})

    assert response.status_code == 422
    assert needle in response.json()["error"]


def test_a_broken_columnar_body_is_400(client: httpx.Client) -> None:
    response = client.post(INFER, content=b"not parquet", headers={"content-type": PARQUET})

    assert response.status_code == 400
    assert "not a valid application/vnd.apache.parquet document" in response.json()["error"]


def test_openapi_lists_the_columnar_media_types(client: httpx.Client) -> None:
    document = client.get("/openapi.json").json()
    content = document["paths"]["/invocations"]["post"]["requestBody"]["content"]

    assert {"application/json", ARROW, PARQUET} <= set(content)
