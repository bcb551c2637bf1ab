"""``POST /v2/models/{name}/feedback`` over real HTTP, and the feedback log it writes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from keelson.registry.model import LoadedModel
from keelson.serve import create_app
from keelson.serve.feedback import FeedbackEntry, FeedbackLog, feedback_router, read_feedback

from .conftest import serving

FEEDBACK = "/v2/models/toy/feedback"


@contextmanager
def feedback_server(
    model: LoadedModel, log: FeedbackLog, with_classes: bool = True
) -> Iterator[httpx.Client]:
    """The served app with the feedback route, as the lead wires it into create_app."""
    app = create_app(model)
    classes = (lambda: model.signature.classes) if with_classes else None
    app.include_router(
        feedback_router(
            log, lambda: model.name, classes=classes, key_name=lambda request: "analyst"
        )
    )
    with serving(app) as url, httpx.Client(base_url=url, timeout=30) as http:
        yield http


def test_every_form_is_recorded_by_request_and_row(model: LoadedModel, tmp_path: Path) -> None:
    log = FeedbackLog(str(tmp_path), flush_seconds=3600)
    with feedback_server(model, log) as http:
        one_request = http.post(FEEDBACK, json={"id": "r1", "labels": ["yes", "no", "no"]})
        one_row = http.post(FEEDBACK, json={"id": "r2", "row": 4, "label": "yes"})
        batch = http.post(
            FEEDBACK,
            json={
                "feedback": [{"id": "r3", "labels": ["no"]}, {"id": "r1", "row": 2, "label": "yes"}]
            },
        )
    log.close()

    assert [r.status_code for r in (one_request, one_row, batch)] == [202, 202, 202]
    assert [r.json() for r in (one_request, one_row, batch)] == [
        {"accepted": 3}, {"accepted": 1}, {"accepted": 2},
    ]  # fmt: skip
    recorded = read_feedback(str(tmp_path), "toy")
    assert recorded.select("request_id", "row", "label").rows() == [
        ("r1", 0, "yes"), ("r1", 1, "no"), ("r1", 2, "no"), ("r2", 4, "yes"), ("r3", 0, "no"),
        ("r1", 2, "yes"),
    ]  # fmt: skip
    assert recorded["value"].null_count() == recorded.height
    assert set(recorded["received_by"]) == {"analyst"}
    assert set(recorded["model"]) == {"toy"}
    assert all(path.parent.parent.name == "feedback" for path in tmp_path.rglob("part-*"))


def test_a_regressor_gets_numbers(regressor: LoadedModel, tmp_path: Path) -> None:
    log = FeedbackLog(str(tmp_path), flush_seconds=3600)
    url = f"/v2/models/{regressor.name}/feedback"
    with feedback_server(regressor, log) as http:
        accepted = http.post(url, json={"id": "r1", "labels": [12.5, 100]})
        refused = http.post(url, json={"id": "r2", "row": 0, "label": "high"})
    log.close()

    assert accepted.status_code == 202
    assert refused.status_code == 422
    assert refused.json()["error"] == (
        "label[0] (request 'r2'): model 'spend' is a regressor; send the target as a number, "
        "not 'high'."
    )
    recorded = read_feedback(str(tmp_path), regressor.name)
    assert recorded.select("request_id", "row", "value").rows() == [
        ("r1", 0, 12.5),
        ("r1", 1, 100.0),
    ]
    assert recorded["label"].null_count() == 2


def test_without_classes_strings_are_labels_and_numbers_values(
    model: LoadedModel, tmp_path: Path
) -> None:
    log = FeedbackLog(str(tmp_path), flush_seconds=3600)
    with feedback_server(model, log, with_classes=False) as http:
        http.post(
            FEEDBACK,
            json={"feedback": [{"id": "a", "labels": ["maybe"]}, {"id": "b", "labels": [1]}]},
        )
    log.close()

    recorded = read_feedback(str(tmp_path), "toy").sort("request_id")
    assert recorded.select("request_id", "label", "value").rows() == [
        ("a", "maybe", None),
        ("b", None, 1.0),
    ]


def test_an_unknown_model_is_404(model: LoadedModel, tmp_path: Path) -> None:
    with FeedbackLog(str(tmp_path)) as log, feedback_server(model, log) as http:
        response = http.post("/v2/models/other/feedback", json={"id": "r1", "labels": ["yes"]})
    assert response.status_code == 404
    assert response.json() == {"error": "model 'other' not found; this server serves 'toy'."}
    assert read_feedback(str(tmp_path), "other").height == 0


BAD_BODIES: list[tuple[Any, str]] = [
    (
        {"id": "a"},
        "body: give 'labels' (one per row of the request, in row order), or 'row' and 'label'.",
    ),
    ({"labels": ["yes"]}, "body: 'id' is required"),
    ({"id": "a", "labels": []}, "labels: List should have at least 1 item"),
    ({"id": "", "labels": ["yes"]}, "id: String should have at least 1 character"),
    ({"id": "a", "row": -1, "label": "yes"}, "row: Input should be greater than or equal to 0"),
    ({"id": "a", "row": "1", "label": "yes"}, "row: Input should be a valid integer"),
    ({"id": "a", "row": 2**40, "label": "yes"}, "row: Input should be less than or equal to"),
    ({"id": "a", "labels": ["yes", 1]}, "'labels' mixes strings and numbers"),
    ({"id": "a", "labels": ["yes", None]}, "labels.1: a label must be a class name"),
    ({"id": "a", "labels": ["yes"], "row": 0}, "give either 'labels' (every row) or 'row'"),
    ({"id": "a", "labels": ["yes"], "extra": 1}, "extra: Extra inputs are not permitted"),
    (
        {"id": "a", "labels": ["maybe"]},
        "labels[0] (request 'a'): 'maybe' is not a class of model 'toy'",
    ),
    ({"feedback": [{"id": "a", "labels": ["yes"]}, {"id": "b"}]}, "feedback.1: give 'labels'"),
    ({"feedback": [{"id": "a", "labels": ["yes"]}], "id": "b"}, "give either 'feedback' (a batch)"),
    ({"feedback": []}, "feedback: List should have at least 1 item"),
    (
        {"feedback": [{"id": "a", "labels": ["yes"]}, {"id": "b", "row": 1, "label": True}]},
        "feedback.1.label: a label must be a class name",
    ),
    (
        {"feedback": [{"id": "a", "labels": ["yes"]}, {"id": "b", "labels": ["no", "perhaps"]}]},
        "feedback[1].labels[1] (request 'b'): 'perhaps' is not a class",
    ),
    (["a", "b"], "body: Input should be a valid dictionary"),
]


def test_bad_bodies_are_422_naming_the_field_and_nothing_is_recorded(
    model: LoadedModel, tmp_path: Path
) -> None:
    log = FeedbackLog(str(tmp_path), flush_seconds=3600)
    with feedback_server(model, log) as http:
        answers = [http.post(FEEDBACK, json=body) for body, _ in BAD_BODIES]
        not_json = http.post(FEEDBACK, content=b"id=a", headers={"content-type": "text/plain"})
    log.close()

    for (body, message), answer in zip(BAD_BODIES, answers, strict=True):
        assert answer.status_code == 422, body
        assert message in answer.json()["error"], (body, answer.json())
    assert not_json.status_code == 415
    assert log.written_rows == 0
    assert read_feedback(str(tmp_path), "toy").height == 0


def test_a_full_log_answers_503_and_keeps_what_it_accepted(
    model: LoadedModel, tmp_path: Path
) -> None:
    blocker = tmp_path / "toy"
    blocker.write_text("a file where the model's folder should be: writes fail")
    log = FeedbackLog(str(tmp_path), flush_rows=2, flush_seconds=0.05, max_pending_rows=2)
    with feedback_server(model, log) as http:
        accepted = http.post(FEEDBACK, json={"id": "a", "labels": ["yes", "no"]})
        refused = http.post(FEEDBACK, json={"id": "b", "labels": ["yes"]})
    blocker.unlink()
    log.close()

    assert accepted.status_code == 202
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "1"
    assert "send this feedback again" in refused.json()["error"]
    assert read_feedback(str(tmp_path), "toy")["request_id"].to_list() == ["a", "a"]


def test_the_route_is_documented(model: LoadedModel, tmp_path: Path) -> None:
    with FeedbackLog(str(tmp_path)) as log, feedback_server(model, log) as http:
        document = http.get("/openapi.json").json()
    operation = document["paths"]["/v2/models/{name}/feedback"]["post"]
    assert {"202", "404", "422", "503"} <= set(operation["responses"])
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/FeedbackBody"}
    fields = document["components"]["schemas"]["FeedbackBody"]["properties"]
    assert set(fields) == {"id", "labels", "row", "label", "feedback"}


def test_feedback_entries_are_checked_when_appended(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    with FeedbackLog(str(tmp_path)) as log:
        with pytest.raises(ValueError, match="at least one label"):
            log.append([FeedbackEntry("a", "toy", [], now)])
        with pytest.raises(ValueError, match="first_row must be between 0 and"):
            log.append([FeedbackEntry("a", "toy", ["yes"], now, first_row=-1)])
        with pytest.raises(ValueError, match="'model' of a FeedbackEntry"):
            log.append([FeedbackEntry("a", "a/b", ["yes"], now)])
