"""The only 5xx: the model itself fails. Generic message to the client, details in the log."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import httpx
import pytest

from keelson.registry.model import LoadedModel
from keelson.serve import create_app

from .conftest import serving
from .helpers import INFER, ROWS, v2_body


class BrokenPipeline:
    """A fitted pipeline whose artifact went bad: every prediction raises."""

    def predict_proba(self, frame: Any) -> Any:
        raise RuntimeError("secret internal detail")

    predict = predict_proba


def test_a_failing_model_is_a_logged_500_with_a_generic_message(
    model: LoadedModel, caplog: pytest.LogCaptureFixture
) -> None:
    broken = dataclasses.replace(model, pipeline=BrokenPipeline())

    with serving(create_app(broken)) as url, caplog.at_level(logging.ERROR, "keelson.serve"):
        response = httpx.post(url + INFER, json=v2_body(model, ROWS))
        ready = httpx.get(url + "/v2/health/ready")
        metrics = httpx.get(url + "/metrics").text

    assert response.status_code == 500
    assert response.json() == {"error": "prediction failed; the server log has the details."}
    assert "secret" not in response.text
    assert "secret internal detail" in caplog.text
    assert ready.status_code == 200
    assert 'keelson_errors_total{reason="prediction_failed"} 1.0' in metrics
