"""Traffic policies: canary and A/B shares within statistical tolerance, A/B sticky,
shadow copies scored but never returned; over real HTTP with two versions."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from keelson.registry.model import LoadedModel
from keelson.serve import Deployment, create_app
from keelson.serve.traffic import CHALLENGER, PRIMARY, TrafficPolicy, bucket
from keelson.spec import Serve, Traffic

from .conftest import serving
from .helpers import INFER, ROWS, v2_body


def within(count: int, total: int, percent: float, sigmas: float = 4.5) -> bool:
    """A binomial count within ``sigmas`` standard deviations of its expectation."""
    p = percent / 100
    return abs(count - total * p) <= sigmas * math.sqrt(total * p * (1 - p))


def test_canary_sends_its_share_to_the_challenger() -> None:
    policy = TrafficPolicy("canary", 20.0, seed=7)

    routed = Counter(policy.route().answer for _ in range(20_000))

    assert within(routed[CHALLENGER], 20_000, 20.0)


def test_ab_is_sticky_by_key_and_splits_keys_by_its_share() -> None:
    policy = TrafficPolicy("ab", 30.0)
    keys = [f"customer-{i}" for i in range(20_000)]

    first = [policy.route(key).answer for key in keys]

    assert first == [policy.route(key).answer for key in keys]  # the same caller, the same side
    assert within(first.count(CHALLENGER), len(keys), 30.0)
    assert 0 <= bucket("x") < 100


def test_shadow_answers_from_the_primary_and_copies_to_the_challenger() -> None:
    assert TrafficPolicy("shadow").route("k").answer == PRIMARY
    assert TrafficPolicy("shadow").route().shadow == CHALLENGER


def test_policy_refuses_a_share_out_of_range() -> None:
    with pytest.raises(ValueError, match="'percent' parameter"):
        TrafficPolicy("canary", 120.0)


def two_versions(model: LoadedModel, traffic: Traffic) -> Deployment:
    challenger = LoadedModel(model.name, 2, model.pipeline, model.signature, model.threshold)
    return Deployment(
        models={PRIMARY: model, CHALLENGER: challenger}, settings=Serve(traffic=traffic)
    )


@pytest.fixture()
def canary_client(model: LoadedModel) -> Iterator[httpx.Client]:
    deployment = two_versions(model, Traffic(policy="canary", challenger="toy@2", percent=25))
    with serving(create_app(deployment=deployment)) as url, httpx.Client(base_url=url) as http:
        yield http


def test_canary_over_http_answers_with_each_version_and_says_which(
    canary_client: httpx.Client, model: LoadedModel
) -> None:
    seen: Counter[tuple[str, str]] = Counter()
    for _ in range(400):
        response = canary_client.post(INFER, json=v2_body(model, ROWS[:1]))
        assert response.status_code == 200
        version = response.json()["model_version"]
        assert response.headers["x-model-version"] == version
        seen[(response.headers["x-model-variant"], version)] += 1

    assert set(seen) == {(PRIMARY, "1"), (CHALLENGER, "2")}
    assert within(seen[(CHALLENGER, "2")], 400, 25.0)
    metrics = canary_client.get("/metrics").text
    assert 'keelson_variant_requests_total{outcome="ok",variant="challenger"}' in metrics
    assert 'keelson_model_version{name="toy",variant="challenger"} 2.0' in metrics


def test_a_version_in_the_path_pins_the_variant(
    canary_client: httpx.Client, model: LoadedModel
) -> None:
    path = "/v2/models/toy/versions/2/infer"
    answers = {
        canary_client.post(path, json=v2_body(model, ROWS)).json()["model_version"]
        for _ in range(20)
    }

    assert answers == {"2"}
    assert (
        canary_client.post("/v2/models/toy/versions/9/infer", json=v2_body(model, ROWS)).status_code
        == 404
    )


def test_shadow_copies_are_scored_and_never_returned(model: LoadedModel) -> None:
    deployment = two_versions(model, Traffic(policy="shadow", challenger="toy@2"))
    with serving(create_app(deployment=deployment)) as url, httpx.Client(base_url=url) as http:
        versions = {
            http.post(INFER, json=v2_body(model, ROWS)).json()["model_version"] for _ in range(30)
        }
        metrics = http.get("/metrics").text

    assert versions == {"1"}
    assert 'keelson_rows_predicted_total{variant="shadow"}' in metrics
