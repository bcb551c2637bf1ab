"""A registered multiclass model and a registered regressor, served over real HTTP."""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
import pytest

from keelson.registry.model import LoadedModel

from .conftest import TIERS
from .helpers import INFER, ROWS, in_process, invocation_bodies, v2_body

TIERS_INFER = "/v2/models/tiers/infer"
SPEND_INFER = "/v2/models/spend/infer"
INPUTS = [
    {"name": "age", "datatype": "INT64", "shape": [-1]},
    {"name": "income", "datatype": "FP64", "shape": [-1]},
    {"name": "plan", "datatype": "BYTES", "shape": [-1]},
]


def outputs_of(response: httpx.Response) -> dict[str, dict[str, Any]]:
    assert response.status_code == 200, response.text
    return {output["name"]: output for output in response.json()["outputs"]}


def test_loaded_models_know_their_task(
    model: LoadedModel, multiclass_model: LoadedModel, regressor: LoadedModel
) -> None:
    assert (model.task, multiclass_model.task, regressor.task) == (
        "binary",
        "multiclass",
        "regression",
    )


@pytest.mark.parametrize(
    ("fixture", "path", "outputs"),
    [
        (
            "multiclass_client",
            "/v2/models/tiers",
            [
                {"name": "label", "datatype": "BYTES", "shape": [-1]},
                {"name": "probabilities", "datatype": "FP64", "shape": [-1, 3]},
            ],
        ),
        (
            "regression_client",
            "/v2/models/spend",
            [{"name": "value", "datatype": "FP64", "shape": [-1]}],
        ),
    ],
)
def test_metadata_lists_the_outputs_the_model_has(
    request: pytest.FixtureRequest, fixture: str, path: str, outputs: list[dict[str, Any]]
) -> None:
    client: httpx.Client = request.getfixturevalue(fixture)

    metadata = client.get(path).json()

    assert metadata["inputs"] == INPUTS
    assert metadata["outputs"] == outputs


def test_multiclass_v2_infer_equals_in_process_prediction(
    multiclass_client: httpx.Client, multiclass_model: LoadedModel
) -> None:
    outputs = outputs_of(multiclass_client.post(TIERS_INFER, json=v2_body(multiclass_model, ROWS)))

    expected = in_process(multiclass_model, ROWS)
    assert outputs["label"]["data"] == expected.labels
    assert set(expected.labels) <= set(TIERS)
    probabilities = outputs["probabilities"]
    assert probabilities["shape"] == [len(ROWS), 3]
    matrix = np.reshape(probabilities["data"], probabilities["shape"])
    assert np.allclose(matrix, expected.probabilities, rtol=0, atol=1e-12)
    assert np.allclose(matrix.sum(axis=1), 1.0)
    assert expected.labels == [TIERS[i] for i in np.argmax(matrix, axis=1)]


@pytest.mark.parametrize("shape", list(invocation_bodies(ROWS)))
def test_multiclass_invocations_equal_in_process_prediction(
    multiclass_client: httpx.Client, multiclass_model: LoadedModel, shape: str
) -> None:
    response = multiclass_client.post("/invocations", json=invocation_bodies(ROWS)[shape])

    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    expected = in_process(multiclass_model, ROWS)
    assert [row["label"] for row in predictions] == expected.labels
    assert all(list(row["probabilities"]) == TIERS for row in predictions)
    served = [[row["probabilities"][tier] for tier in TIERS] for row in predictions]
    assert np.allclose(served, expected.probabilities, rtol=0, atol=1e-12)


def test_regression_v2_infer_answers_values(
    regression_client: httpx.Client, regressor: LoadedModel
) -> None:
    response = regression_client.post(SPEND_INFER, json=v2_body(regressor, ROWS, id="r-1"))

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["model_name"], body["model_version"], body["id"]) == ("spend", "1", "r-1")
    [output] = body["outputs"]
    assert {key: output[key] for key in ("name", "datatype", "shape")} == {
        "name": "value",
        "datatype": "FP64",
        "shape": [len(ROWS)],
    }
    expected = in_process(regressor, ROWS)
    assert expected.values is not None and len(np.unique(expected.values)) > 1
    assert np.allclose(output["data"], expected.values, rtol=0, atol=1e-12)


@pytest.mark.parametrize("shape", list(invocation_bodies(ROWS)))
def test_regression_invocations_answer_one_value_per_row(
    regression_client: httpx.Client, regressor: LoadedModel, shape: str
) -> None:
    response = regression_client.post("/invocations", json=invocation_bodies(ROWS)[shape])

    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert all(list(row) == ["value"] for row in predictions)
    expected = in_process(regressor, ROWS).values
    assert expected is not None
    assert np.allclose([row["value"] for row in predictions], expected, rtol=0, atol=1e-12)


def test_regression_honours_a_repeated_value_output(
    regression_client: httpx.Client, regressor: LoadedModel
) -> None:
    request = v2_body(regressor, ROWS, outputs=[{"name": "value"}, {"name": "value"}])

    outputs = regression_client.post(SPEND_INFER, json=request).json()["outputs"]

    assert [output["name"] for output in outputs] == ["value"]


@pytest.mark.parametrize(
    ("fixture", "path", "asked", "needles"),
    [
        ("regression_client", SPEND_INFER, ["probabilities"], ["outputs[0]", "'probabilities'"]),
        ("regression_client", SPEND_INFER, ["value", "label"], ["outputs[1]", "'label'"]),
        ("client", INFER, ["label", "value"], ["outputs[1]", "'value'", "binary"]),
        ("multiclass_client", TIERS_INFER, ["value"], ["outputs[0]", "'value'", "multiclass"]),
    ],
)
def test_asking_for_an_output_the_model_lacks_is_422_naming_it(
    request: pytest.FixtureRequest,
    regressor: LoadedModel,
    fixture: str,
    path: str,
    asked: list[str],
    needles: list[str],
) -> None:
    client: httpx.Client = request.getfixturevalue(fixture)
    body = v2_body(regressor, ROWS, outputs=[{"name": name} for name in asked])

    response = client.post(path, json=body)

    assert response.status_code == 422, response.text
    message = response.json()["error"]
    assert all(needle in message for needle in needles), message


def test_regression_rows_are_counted(regression_client: httpx.Client) -> None:
    def rows_predicted() -> float:
        for line in regression_client.get("/metrics").text.splitlines():
            if line.startswith('keelson_rows_predicted_total{variant="primary"} '):
                return float(line.split()[1])
        raise AssertionError("keelson_rows_predicted_total is not exposed")

    before = rows_predicted()
    regression_client.post("/invocations", json={"instances": ROWS})

    assert rows_predicted() - before == len(ROWS)
