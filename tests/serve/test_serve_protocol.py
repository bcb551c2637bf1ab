"""Health, metadata, OpenAPI and every client error: a clear {"error"} and never a 5xx."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from keelson import __version__
from keelson.registry.model import LoadedModel
from keelson.spec import Serve

from .helpers import INFER, ROWS, v2_body

TEN_MB = 10 * 1024 * 1024


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v2/health/live", {"live": True}),
        ("/v2/health/ready", {"ready": True}),
        ("/v2/models/toy/ready", {"name": "toy", "ready": True}),
        ("/v2/models/toy/versions/1/ready", {"name": "toy", "ready": True}),
        ("/v2", {"name": "keelson", "version": __version__, "extensions": []}),
        ("/ping", {"status": "ok"}),
        ("/health", {"status": "ok"}),
    ],
)
def test_health_and_server_metadata(client: httpx.Client, path: str, body: Any) -> None:
    response = client.get(path)

    assert response.status_code == 200
    assert response.json() == body


@pytest.mark.parametrize("path", ["/v2/models/toy", "/v2/models/toy/versions/1"])
def test_model_metadata_comes_from_the_signature(client: httpx.Client, path: str) -> None:
    assert client.get(path).json() == {
        "name": "toy",
        "versions": ["1"],
        "platform": "keelson-sklearn",
        "inputs": [
            {"name": "age", "datatype": "INT64", "shape": [-1]},
            {"name": "income", "datatype": "FP64", "shape": [-1]},
            {"name": "plan", "datatype": "BYTES", "shape": [-1]},
        ],
        "outputs": [
            {"name": "label", "datatype": "BYTES", "shape": [-1]},
            {"name": "probabilities", "datatype": "FP64", "shape": [-1, 2]},
        ],
    }


def test_openapi_documents_typed_bodies(client: httpx.Client) -> None:
    document = client.get("/openapi.json").json()

    infer = document["paths"]["/v2/models/{name}/infer"]["post"]
    assert infer["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/InferenceRequest"
    )
    assert "/invocations" in document["paths"]
    assert "InvocationsResponse" in document["components"]["schemas"]


@pytest.mark.parametrize(
    ("method", "path", "needle"),
    [
        ("GET", "/v2/models/nope", "'nope' not found"),
        ("GET", "/v2/models/toy/versions/2", "no version '2'"),
        ("GET", "/v2/models/nope/ready", "'nope' not found"),
        ("POST", "/v2/models/nope/infer", "'nope' not found"),
        ("POST", "/v2/models/toy/versions/9/infer", "no version '9'"),
        ("GET", "/no/such/route", "/no/such/route"),
    ],
)
def test_unknown_model_version_or_route_is_404(
    client: httpx.Client, model: LoadedModel, method: str, path: str, needle: str
) -> None:
    response = client.request(method, path, json=v2_body(model, ROWS))

    assert response.status_code == 404
    assert needle in response.json()["error"]


def post_v2(client: httpx.Client, inputs: list[dict[str, Any]]) -> httpx.Response:
    return client.post(INFER, json={"inputs": inputs})


def tensor(name: str, datatype: str, data: list[Any], shape: list[int] | None = None) -> dict:
    return {"name": name, "datatype": datatype, "shape": shape or [len(data)], "data": data}


GOOD = [
    tensor("age", "INT64", [30]),
    tensor("income", "FP64", [1.5]),
    tensor("plan", "BYTES", ["pro"]),
]


@pytest.mark.parametrize(
    ("inputs", "needles"),
    [
        (GOOD[:2], ["missing", "plan"]),
        ([tensor("age", "INT64", ["thirty"]), *GOOD[1:]], ["age", "row 0", "int64"]),
        ([tensor("age", "BYTES", ["30"]), *GOOD[1:]], ["inputs[0]", "BYTES", "int64"]),
        ([tensor("age", "INT64", [30, 31], [3]), *GOOD[1:]], ["inputs[0]", "shape [3]"]),
        ([tensor("age", "INT64", [30], [1, 2]), *GOOD[1:]], ["inputs[0]", "[rows, 1]"]),
        ([tensor("age", "INT64", [{"x": 1}]), *GOOD[1:]], ["inputs[0]", "object"]),
        ([*GOOD, tensor("age", "INT64", [30])], ["inputs[3]", "twice"]),
        ([tensor("age", "INT64", [30, 31]), *GOOD[1:]], ["different lengths"]),
        (
            [tensor("age", "INT64", []), tensor("income", "FP64", []), tensor("plan", "BYTES", [])],
            ["no rows"],
        ),
        ([{"name": "age", "datatype": "INT64", "data": [1]}], ["inputs.0.shape", "required"]),
        ([tensor("age", "INT128", [30])], ["inputs.0.datatype"]),
        ([tensor("age", "INT64", [30], [-1])], ["inputs.0.shape.0"]),
    ],
)
def test_v2_body_errors_are_422_naming_the_field(
    client: httpx.Client, inputs: list[dict[str, Any]], needles: list[str]
) -> None:
    response = post_v2(client, inputs)

    assert response.status_code == 422, response.text
    message = response.json()["error"]
    assert all(needle in message for needle in needles), message


@pytest.mark.parametrize(
    ("body", "needles"),
    [
        ({"inputs": []}, ["inputs"]),
        ({}, ["inputs", "required"]),
        ({"inputs": "age"}, ["inputs"]),
        ({"inputs": GOOD, "outputs": [{"name": "scores"}]}, ["outputs.0.name"]),
        ([1, 2], ["body"]),
    ],
)
def test_v2_request_shape_errors_are_422(
    client: httpx.Client, body: Any, needles: list[str]
) -> None:
    response = client.post(INFER, json=body)

    assert response.status_code == 422
    assert all(needle in response.json()["error"] for needle in needles)


@pytest.mark.parametrize(
    ("body", "needles"),
    [
        ({"instances": ROWS, "dataframe_records": ROWS}, ["exactly one of"]),
        ({"params": {}}, ["exactly one of"]),
        ({"dataframe_split": {"columns": ["age"], "data": 3}}, ["dataframe_split.data"]),
        ({"dataframe_split": {"columns": ["age", "plan"], "data": [[1]]}}, ["data[0]", "2"]),
        ({"dataframe_split": {"columns": ["age", "age"], "data": [[1, 2]]}}, ["duplicate"]),
        ({"dataframe_records": [ROWS[0], {"age": 3, "plan": "pro"}]}, ["[1]", "'income'"]),
        ({"instances": [{"age": 1}]}, ["missing", "income", "plan"]),
        ({"inputs": {"age": [1], "income": [2.0], "plan": [7]}}, ["'plan' row 0", "string"]),
        ({"inputs": {"age": [1], "income": ["Infinity"], "plan": ["pro"]}}, ["'income'"]),
        ({"dataframe_records": []}, ["no rows"]),
    ],
)
def test_invocations_body_errors_are_422(
    client: httpx.Client, body: Any, needles: list[str]
) -> None:
    response = client.post("/invocations", json=body)

    assert response.status_code == 422, response.text
    message = response.json()["error"]
    assert all(needle in message for needle in needles), message


@pytest.mark.parametrize("path", [INFER, "/invocations"])
def test_infinity_is_refused_as_422(client: httpx.Client, path: str) -> None:
    body = (
        '{"inputs": [{"name": "age", "shape": [1], "datatype": "INT64", "data": [1]},'
        '{"name": "income", "shape": [1], "datatype": "FP64", "data": [Infinity]},'
        '{"name": "plan", "shape": [1], "datatype": "BYTES", "data": ["pro"]}]}'
        if path == INFER
        else '{"inputs": {"age": [1], "income": [-Infinity], "plan": ["pro"]}}'
    )

    response = client.post(path, content=body, headers={"content-type": "application/json"})

    assert response.status_code == 422
    assert "column 'income' row 0: expected a finite float64" in response.json()["error"]


@pytest.mark.parametrize("path", [INFER, "/invocations"])
def test_invalid_json_is_400(client: httpx.Client, path: str) -> None:
    response = client.post(
        path, content=b'{"inputs": [', headers={"content-type": "application/json"}
    )

    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]


@pytest.mark.parametrize(
    "content_type", ["text/plain", "text/csv", "application/x-www-form-urlencoded", None]
)
@pytest.mark.parametrize("path", [INFER, "/invocations"])
def test_wrong_content_type_is_415(
    client: httpx.Client, model: LoadedModel, path: str, content_type: str | None
) -> None:
    headers = {"content-type": content_type} if content_type else {}

    response = client.post(path, content=b'{"inputs": {}}', headers=headers)

    assert response.status_code == 415
    assert "application/json" in response.json()["error"]


def test_json_content_type_with_charset_is_accepted(
    client: httpx.Client, model: LoadedModel
) -> None:
    headers = {"content-type": "application/json; charset=utf-8"}

    response = client.post(INFER, content=json.dumps(v2_body(model, ROWS)), headers=headers)

    assert response.status_code == 200


@pytest.mark.parametrize("path", [INFER, "/invocations"])
def test_body_over_the_limit_with_content_length_is_413(client: httpx.Client, path: str) -> None:
    response = client.post(
        path, content=b" " * TEN_MB, headers={"content-type": "application/json"}
    )

    assert response.status_code == 413
    assert str(5 * 1024 * 1024) in response.json()["error"]


def chunks(total: int, size: int = 1024 * 1024) -> Iterator[bytes]:
    for _ in range(total // size):
        yield b" " * size


@pytest.mark.parametrize("path", [INFER, "/invocations"])
def test_streamed_body_over_the_limit_is_413(client: httpx.Client, path: str) -> None:
    request = client.build_request(
        "POST", path, content=chunks(TEN_MB), headers={"content-type": "application/json"}
    )
    assert "content-length" not in request.headers
    assert request.headers["transfer-encoding"] == "chunked"

    response = client.send(request)

    assert response.status_code == 413
    assert "limit" in response.json()["error"]


def test_the_server_keeps_serving_after_a_refused_body(client: httpx.Client) -> None:
    client.post(INFER, content=chunks(TEN_MB), headers={"content-type": "application/json"})

    assert client.get("/v2/health/ready").status_code == 200


@pytest.mark.parametrize("path", [INFER, "/invocations"])
def test_too_many_rows_is_413_naming_the_limit(
    client: httpx.Client, model: LoadedModel, path: str
) -> None:
    rows = [ROWS[0]] * 10_001
    body = v2_body(model, rows) if path == INFER else {"dataframe_records": rows}

    response = client.post(path, json=body)

    assert response.status_code == 413
    assert "10001 rows" in response.json()["error"]
    assert "10000" in response.json()["error"]


def test_wrong_method_is_405_with_allow_header(client: httpx.Client) -> None:
    response = client.get(INFER)

    assert response.status_code == 405
    assert "POST" in response.headers["allow"]
    assert "error" in response.json()


@pytest.mark.parametrize(
    ("name", "value"), [("max_rows", 0), ("max_body_bytes", -1), ("timeout_seconds", 0)]
)
def test_serve_settings_refuse_bad_limits(name: str, value: Any) -> None:
    with pytest.raises(ValidationError, match=name):
        Serve(**{name: value})


def test_openapi_documents_the_error_body(client: httpx.Client) -> None:
    document = client.get("/openapi.json").json()

    responses = document["paths"]["/invocations"]["post"]["responses"]
    for status in ("400", "413", "415", "422"):
        schema = responses[status]["content"]["application/json"]["schema"]
        assert schema["$ref"].endswith("/ErrorBody")
    assert "HTTPValidationError" not in document["components"]["schemas"]
