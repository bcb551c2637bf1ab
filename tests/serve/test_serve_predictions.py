"""Both protocols answer exactly what the model predicts in process."""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
import pytest

from keelson.registry.model import LoadedModel

from .helpers import INFER, ROWS, in_process, invocation_bodies, v2_body


def probabilities_of(response: dict[str, Any]) -> tuple[list[str], np.ndarray]:
    outputs = {output["name"]: output for output in response["outputs"]}
    probabilities = outputs["probabilities"]
    matrix = np.asarray(probabilities["data"], dtype=np.float64).reshape(probabilities["shape"])
    return outputs["label"]["data"], matrix


@pytest.mark.parametrize("path", [INFER, "/v2/models/toy/versions/1/infer"])
def test_v2_infer_equals_in_process_prediction(
    client: httpx.Client, model: LoadedModel, path: str
) -> None:
    response = client.post(path, json=v2_body(model, ROWS, id="req-7"))

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["model_name"], body["model_version"], body["id"]) == ("toy", "1", "req-7")
    labels, probabilities = probabilities_of(body)
    expected = in_process(model, ROWS)
    assert labels == expected.labels
    assert probabilities.shape == (len(ROWS), 2)
    assert np.allclose(probabilities, expected.probabilities, rtol=0, atol=1e-12)
    assert body["outputs"][0] == {
        "name": "label",
        "datatype": "BYTES",
        "shape": [len(ROWS)],
        "data": expected.labels,
    }


def test_v2_accepts_flat_data_narrower_datatypes_and_ints_for_floats(
    client: httpx.Client, model: LoadedModel
) -> None:
    rows = [{"age": 33, "income": 40, "plan": "pro"}, {"age": 70, "income": 81, "plan": "basic"}]
    inputs = [
        {"name": "age", "shape": [2], "datatype": "INT32", "data": [33, 70]},
        {"name": "income", "shape": [2], "datatype": "INT64", "data": [40, 81]},
        {"name": "plan", "shape": [2, 1], "datatype": "BYTES", "data": ["pro", "basic"]},
        {"name": "ignored", "shape": [1], "datatype": "FP32", "data": [1.5]},
    ]

    body = client.post(INFER, json={"inputs": inputs}).json()

    labels, probabilities = probabilities_of(body)
    expected = in_process(model, rows)
    assert labels == expected.labels
    assert np.allclose(probabilities, expected.probabilities, rtol=0, atol=1e-12)
    assert body["id"]  # generated when the request has none


def test_v2_honours_the_requested_outputs(client: httpx.Client, model: LoadedModel) -> None:
    request = v2_body(model, ROWS, outputs=[{"name": "probabilities"}])

    outputs = client.post(INFER, json=request).json()["outputs"]

    assert [output["name"] for output in outputs] == ["probabilities"]
    assert outputs[0]["datatype"] == "FP64"
    assert outputs[0]["shape"] == [len(ROWS), 2]


@pytest.mark.parametrize("shape", list(invocation_bodies(ROWS)))
def test_invocations_formats_equal_in_process_prediction(
    client: httpx.Client, model: LoadedModel, shape: str
) -> None:
    response = client.post("/invocations", json=invocation_bodies(ROWS)[shape])

    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    expected = in_process(model, ROWS)
    assert [row["label"] for row in predictions] == expected.labels
    probabilities = np.array(
        [[row["probabilities"][c] for c in expected.classes] for row in predictions]
    )
    assert np.allclose(probabilities, expected.probabilities, rtol=0, atol=1e-12)
