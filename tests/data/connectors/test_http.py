"""The HTTP connector against a real JSON API on loopback: pages, auth, retries, failures."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from keelson.data.connectors.http import retry_wait
from keelson.data.sources import read_source
from keelson.errors import SourceError
from keelson.spec import HttpSource, Pagination, Retry

from .api import Call, JsonApi, Reply, by_cursor, by_offset, by_page, failing_first

RECORDS = [{"id": i, "name": f"n{i}", "score": i / 2} for i in range(1, 8)]
FAST = Retry(attempts=4, backoff_seconds=0.001, max_backoff_seconds=0.01)


def _read(api: JsonApi, path: str, name: str = "api", **options: Any) -> Any:
    spec = HttpSource(kind="http", url=api.url(path), retry=options.pop("retry", FAST), **options)
    return read_source(name, spec, Path())


def test_page_pagination_with_dotted_records_path_and_bearer_token(
    api: JsonApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_API_TOKEN", "t0k3n-value")
    route = by_page(RECORDS, "data.items")

    def authorised(call: Call) -> Reply:
        if call.headers.get("Authorization") != "Bearer t0k3n-value":
            return Reply({"error": "unauthorised"}, 401)
        return route(call)

    api.routes["/items"] = authorised
    read = _read(
        api,
        "/items",
        headers={"Authorization": "Bearer ${TEST_API_TOKEN}"},
        params={"kind": "all"},
        records_path="data.items",
        pagination=Pagination(style="page", size=3),
    )
    assert read.frame.to_dicts() == RECORDS
    assert [c.query for c in api.calls] == [
        {"kind": "all", "page": str(page), "per_page": "3"} for page in (1, 2, 3)
    ]
    canonical = json.dumps(RECORDS, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    location = f"{api.url('/items')}?kind=all"
    assert read.fingerprint == {
        "kind": "http",
        "location": location,
        "sha256": hashlib.sha256(f"{location}\n{canonical}".encode()).hexdigest(),
        "rows": 7,
        "pages": 3,
    }


def test_page_pagination_stops_on_an_empty_page(api: JsonApi) -> None:
    api.routes["/items"] = by_page(RECORDS[:6], "data.items")
    paging = Pagination(style="page", size=3, first_page=1)
    read = _read(api, "/items", records_path="data.items", pagination=paging)
    assert read.frame.height == 6 and len(api.calls) == 3
    assert read.fingerprint["pages"] == 3


def test_page_pagination_without_size_param_reads_until_empty(api: JsonApi) -> None:
    api.routes["/items"] = by_page(RECORDS, "items")  # the server's own page size: 3
    paging = Pagination(style="page", size_param=None, size=100)
    read = _read(api, "/items", records_path="items", pagination=paging)
    assert read.frame.height == 7 and len(api.calls) == 4
    assert "per_page" not in api.calls[0].query


def test_offset_pagination(api: JsonApi) -> None:
    api.routes["/rows"] = by_offset(RECORDS)
    paging = Pagination(style="offset", size=2, offset_param="offset", limit_param="limit")
    read = _read(api, "/rows", records_path="results", pagination=paging)
    assert read.frame["id"].to_list() == list(range(1, 8))
    assert [c.query["offset"] for c in api.calls] == ["0", "2", "4", "6"]


def test_cursor_pagination(api: JsonApi) -> None:
    api.routes["/feed"] = by_cursor(RECORDS, size=3)
    paging = Pagination(style="cursor", cursor_param="cursor", cursor_path="meta.next")
    read = _read(api, "/feed", records_path="items", pagination=paging)
    assert read.frame["id"].to_list() == list(range(1, 8))
    assert [c.query.get("cursor") for c in api.calls] == [None, "c3", "c6"]


def test_no_pagination_body_is_the_list(api: JsonApi) -> None:
    api.routes["/all"] = lambda call: Reply(RECORDS)
    assert _read(api, "/all").frame.height == 7 and len(api.calls) == 1


def test_server_errors_are_retried_until_the_page_comes(api: JsonApi) -> None:
    failures = [
        Reply({"error": "boom"}, 500),
        Reply({"error": "busy"}, 503),
        Reply({"error": "slow down"}, 429, headers={"Retry-After": "0"}),
    ]
    api.routes["/items"] = failing_first(by_page(RECORDS, "data.items"), failures)
    paging = Pagination(style="page", size=3)
    read = _read(api, "/items", records_path="data.items", pagination=paging)
    assert read.frame.to_dicts() == RECORDS
    assert [c.number for c in api.calls] == [1, 2, 3, 4] * 3  # 3 failures then success, per page
    assert [c.query["page"] for c in api.calls[::4]] == ["1", "2", "3"]


def test_an_api_that_always_fails_stops_after_the_attempts(
    api: JsonApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_KEY", "k3y")
    api.routes["/down"] = lambda call: Reply({"error": "down"}, 503)
    retry = Retry(attempts=3, backoff_seconds=0.001)
    with pytest.raises(SourceError) as err:
        _read(api, "/down", name="crm", retry=retry, params={"api_key": "${TEST_KEY}", "q": "x"})
    message = str(err.value)
    assert len(api.calls) == 3
    assert "'crm'" in message and "failed after 3 attempts" in message and "HTTP 503" in message
    assert f"GET {api.url('/down')}?api_key=***&q=x" in message


def test_a_client_error_fails_at_once_with_status_and_body(api: JsonApi) -> None:
    api.routes["/secret"] = lambda call: Reply({"error": "token " + "x" * 300}, 403)
    with pytest.raises(SourceError) as err:
        _read(api, "/secret", name="crm")
    message = str(err.value)
    assert len(api.calls) == 1
    assert "HTTP 403" in message and '{"error": "token xxx' in message
    assert "x" * 200 not in message and "sources.crm.headers" in message


def test_a_timeout_is_retried_then_reported(api: JsonApi) -> None:
    api.routes["/slow"] = lambda call: Reply(RECORDS, delay=1.0)
    retry = Retry(attempts=2, backoff_seconds=0.001)
    with pytest.raises(SourceError) as err:
        _read(api, "/slow", retry=retry, timeout_seconds=0.1)
    assert len(api.calls) == 2
    assert "failed after 2 attempts" in str(err.value) and "ReadTimeout" in str(err.value)


def test_a_timeout_then_an_answer_recovers(api: JsonApi) -> None:
    api.routes["/slow"] = failing_first(lambda call: Reply(RECORDS), [Reply(delay=1.0)])
    read = _read(api, "/slow", timeout_seconds=0.1)
    assert read.frame.height == 7 and len(api.calls) == 2


def test_an_unreachable_api_is_retried_then_reported() -> None:
    retry = Retry(attempts=2, backoff_seconds=0.001)
    spec = HttpSource(kind="http", url="http://127.0.0.1:1/x", retry=retry)
    with pytest.raises(SourceError, match=r"'api'.*failed after 2 attempts; last: ConnectError"):
        read_source("api", spec, Path())


def test_a_body_that_is_not_json(api: JsonApi) -> None:
    html = b"<html><body>Maintenance</body></html>"
    api.routes["/html"] = lambda call: Reply(raw=html, headers={"Content-Type": "text/html"})
    with pytest.raises(SourceError) as err:
        _read(api, "/html")
    assert "not JSON (text/html" in str(err.value) and "Maintenance" in str(err.value)
    assert len(api.calls) == 1


def test_max_pages_stops_a_cursor_that_never_ends(api: JsonApi) -> None:
    api.routes["/loop"] = lambda call: Reply({"items": [{"a": 1}], "next": "again"})
    paging = Pagination(style="cursor", cursor_path="next", max_pages=5)
    with pytest.raises(SourceError, match=r"more pages after pagination.max_pages=5"):
        _read(api, "/loop", records_path="items", pagination=paging)
    assert len(api.calls) == 5


def test_records_path_problems_name_the_path_and_the_keys(api: JsonApi) -> None:
    api.routes["/obj"] = lambda call: Reply({"results": [], "total": 0})
    with pytest.raises(SourceError, match=r"records_path 'data.items' is missing .*'results'"):
        _read(api, "/obj", records_path="data.items")
    with pytest.raises(SourceError, match=r"the body is a JSON dict, not a list"):
        _read(api, "/obj")


def test_records_nested_missing_and_not_objects(api: JsonApi) -> None:
    body = [{"id": 1, "address": {"city": "Oslo"}, "tags": ["a"]}, {"id": 2}, 3, {"id": "x"}]
    api.routes["/mixed"] = lambda call: Reply(body)
    read = _read(api, "/mixed")
    assert read.frame.schema == {
        "id": pl.String,
        "address": pl.Struct({"city": pl.String}),
        "tags": pl.List(pl.String),
    }
    assert read.frame["id"].to_list() == ["1", "2", "x"]
    assert read.frame["address"].to_list() == [{"city": "Oslo"}, None, None]
    assert read.rejected.rows() == [(3, "bad_record", "a JSON int, not an object", "3")]
    assert read.rows_in == 4


def test_missing_header_variable_names_it(api: JsonApi, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TEST_ABSENT_TOKEN", raising=False)
    with pytest.raises(SourceError) as err:
        _read(api, "/x", name="crm", headers={"Authorization": "Bearer ${TEST_ABSENT_TOKEN}"})
    assert "'TEST_ABSENT_TOKEN'" in str(err.value)
    assert "sources.crm.headers.Authorization" in str(err.value)
    assert api.calls == []


def test_secrets_in_params_reach_the_api_but_never_a_message(
    api: JsonApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_API_KEY", "k3y-value")
    api.routes["/gone"] = lambda call: Reply({"echo": call.query}, 410)
    with pytest.raises(SourceError) as err:
        _read(api, "/gone", params={"token": "${TEST_API_KEY}", "key2": "${TEST_API_KEY}"})
    assert api.calls[0].query == {"token": "k3y-value", "key2": "k3y-value"}
    assert "HTTP 410" in str(err.value) and "k3y-value" not in str(err.value)


@pytest.mark.parametrize(
    ("attempt", "retry_after", "expected"),
    [
        (1, None, 0.5),
        (2, None, 1.0),
        (4, None, 4.0),
        (7, None, 10.0),  # 32 s, capped
        (1, "0", 0.0),
        (3, "2.5", 2.5),
        (1, "120", 10.0),  # capped too
        (2, "Wed, 21 Oct 2015 07:28:00 GMT", 1.0),  # a date: the backoff
        (2, "-3", 1.0),
    ],
)
def test_retry_wait(attempt: int, retry_after: str | None, expected: float) -> None:
    retry = Retry(backoff_seconds=0.5, max_backoff_seconds=10.0)
    assert retry_wait(retry, attempt, retry_after) == expected
