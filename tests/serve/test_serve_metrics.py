"""Prometheus metrics: a registry per app, counters that move with the traffic."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from keelson.registry.model import LoadedModel
from keelson.serve import create_app

from .helpers import INFER, ROWS, v2_body

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: httpx.Client) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, metric: str, **labels: str) -> float:
    return samples.get((metric, frozenset(labels.items())), 0.0)


def test_metrics_count_requests_rows_errors_and_name_the_model(
    client: httpx.Client, model: LoadedModel
) -> None:
    before = scrape(client)

    client.post(INFER, json=v2_body(model, ROWS))
    client.post("/invocations", json={"instances": ROWS})
    client.post(INFER, content=b"{", headers={"content-type": "application/json"})
    client.post(
        INFER, content=b" " * (6 * 1024 * 1024), headers={"content-type": "application/json"}
    )
    client.get("/v2/models/nope")
    after = scrape(client)

    def delta(metric: str, **labels: str) -> float:
        return value(after, metric, **labels) - value(before, metric, **labels)

    infer = "/v2/models/{name}/infer"
    assert delta("keelson_requests_total", endpoint=infer, status="200") == 1
    assert delta("keelson_requests_total", endpoint="/invocations", status="200") == 1
    assert delta("keelson_requests_total", endpoint=infer, status="400") == 1
    assert delta("keelson_request_duration_seconds_count", endpoint=infer) >= 2
    assert delta("keelson_rows_predicted_total", variant="primary") == 2 * len(ROWS)
    assert delta("keelson_variant_requests_total", variant="primary", outcome="ok") == 2
    assert delta("keelson_errors_total", reason="invalid_json") == 1
    assert delta("keelson_errors_total", reason="body_too_large") == 1
    assert delta("keelson_errors_total", reason="model_not_found") == 1
    assert value(after, "keelson_model_version", variant="primary", name="toy") == 1
    labels = sum(
        delta("keelson_predicted_labels_total", variant="primary", label=label)
        for label in ("yes", "no")
    )
    assert labels == 2 * len(ROWS)


def test_unmatched_paths_share_one_label(client: httpx.Client) -> None:
    client.get("/random/path/1")
    client.get("/random/path/2")

    samples = scrape(client)

    endpoints = {dict(labels).get("endpoint") for _, labels in samples}
    assert "unmatched" in endpoints
    assert not any(endpoint and endpoint.startswith("/random") for endpoint in endpoints)


def test_each_app_has_its_own_registry(model: LoadedModel) -> None:
    first, second = create_app(model), create_app(model)  # no "Duplicated timeseries" error

    assert first is not second
