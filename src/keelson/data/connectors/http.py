"""HTTP connector: a JSON API read page by page, with retries, backoff and a timeout.

Header and string parameter values may use ``${VAR}`` from the environment; the
expanded values never appear in a message or a fingerprint (the URL shown is the
spec's, with secret-looking query values masked). Pagination styles:

- ``none``: one request.
- ``page``: ``page_param`` from ``first_page`` (with ``size_param=size`` when set); stops
  on an empty page, or on a page shorter than ``size`` when ``size_param`` is set.
- ``offset``: ``offset_param`` from 0 and ``limit_param=size``; stops on fewer than
  ``size`` records.
- ``cursor``: the next ``cursor_param`` is read at the dotted ``cursor_path`` of each
  body; stops when it is null, empty or missing.

More than ``max_pages`` pages is an error, never an endless loop. Statuses in
``retry.statuses``, timeouts and transport errors are retried up to ``attempts`` times,
waiting ``backoff_seconds`` doubled each time (or a numeric ``Retry-After``), capped at
``max_backoff_seconds``; any other status of 400 or more fails at once.

Records are JSON objects; one that is not is rejected (``bad_record``) with its position.
They become a frame the way a JSON file does: missing keys are nulls, nested objects
are Struct columns and arrays List columns, a key holding mixed scalars is text.
The fingerprint is the SHA-256 of the URL and the canonical JSON of all records.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from keelson.data.sources import (
    MASK,
    SourceRead,
    env_secrets,
    expand_env,
    first_line,
    is_secret_name,
    mask_url,
    redact,
    rejects,
)
from keelson.errors import SourceError
from keelson.spec import HttpSource, Pagination, Retry

Params = dict[str, Any]


@dataclass(frozen=True)
class Api:
    """One source's API: the expanded headers and params, and what to show instead."""

    name: str
    spec: HttpSource
    headers: dict[str, str]
    params: Params
    secrets: list[str]

    @classmethod
    def of(cls, name: str, spec: HttpSource) -> Api:
        where = f"sources.{name}"
        headers = {k: expand_env(v, f"{where}.headers.{k}") for k, v in spec.headers.items()}
        params = {
            k: expand_env(v, f"{where}.params.{k}") if isinstance(v, str) else v
            for k, v in spec.params.items()
        }
        raw = [*spec.headers.values(), *(v for v in spec.params.values() if isinstance(v, str))]
        return cls(name, spec, headers, params, env_secrets(raw))

    def shown(self, page: Params | None = None) -> str:
        """The URL of a request as it may be shown: spec values, secrets masked."""
        shown = {**self.spec.params, **(page or {})}
        query = "&".join(f"{k}={MASK if is_secret_name(k) else v}" for k, v in shown.items())
        url = mask_url(self.spec.url)
        return f"{url}{'&' if '?' in url else '?'}{query}" if query else url

    def fail(
        self, message: str, page: Params | None = None, hint: str | None = None
    ) -> SourceError:
        return SourceError(
            f"source {self.name!r}: {redact(message, self.secrets)}",
            where=f"GET {self.shown(page)}",
            hint=hint or f"Check `sources.{self.name}` in keelson.yaml and that the API is up.",
        )


def read_http(name: str, spec: HttpSource, project_dir: Path) -> SourceRead:
    """Read every page of the API into one frame."""
    import httpx

    api = Api.of(name, spec)
    with httpx.Client(
        headers=api.headers, timeout=spec.timeout_seconds, follow_redirects=True
    ) as client:
        records, pages = _read_pages(api, client)
    frame, rejected = _table(api, records)
    canonical = json.dumps(records, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    location = api.shown()
    fingerprint = {
        "kind": "http",
        "location": location,
        "sha256": hashlib.sha256(f"{location}\n{canonical}".encode()).hexdigest(),
        "rows": len(records),
        "pages": pages,
    }
    return SourceRead(name, frame, rejected, fingerprint)


def _read_pages(api: Api, client: Any) -> tuple[list[Any], int]:
    paging = api.spec.pagination
    records: list[Any] = []
    page = first_page(paging)
    for number in range(1, paging.max_pages + 1):
        body = _get_json(api, client, page)
        found = _records(api, body, page)
        records.extend(found)
        following = next_page(paging, page, body, len(found))
        if following is None:
            return records, number
        page = following
    raise api.fail(
        f"there are still more pages after pagination.max_pages={paging.max_pages}.",
        page,
        hint=f"Raise `sources.{api.name}.pagination.max_pages`, or check the pagination style "
        "and parameters (a cursor that never ends, a page parameter the API ignores).",
    )


def first_page(paging: Pagination) -> Params:
    """The pagination parameters of the first request."""
    if paging.style == "page":
        size = {paging.size_param: paging.size} if paging.size_param else {}
        return {paging.page_param: paging.first_page, **size}
    if paging.style == "offset":
        return {paging.offset_param: 0, paging.limit_param: paging.size}
    return {}


def next_page(paging: Pagination, page: Params, body: Any, count: int) -> Params | None:
    """The pagination parameters of the next request, or None after the last page."""
    if paging.style == "page":
        short = paging.size_param is not None and count < paging.size
        done = count == 0 or short
        return None if done else {**page, paging.page_param: page[paging.page_param] + 1}
    if paging.style == "offset":
        done = count < paging.size
        return None if done else {**page, paging.offset_param: page[paging.offset_param] + count}
    if paging.style == "cursor":
        cursor = dig(body, paging.cursor_path)
        return None if cursor in (None, "") else {**page, paging.cursor_param: cursor}
    return None


def dig(body: Any, path: str) -> Any:
    """The value at a dotted path of a JSON body, or None when any step is missing."""
    for key in path.split("."):
        if not isinstance(body, dict) or key not in body:
            return None
        body = body[key]
    return body


def _records(api: Api, body: Any, page: Params) -> list[Any]:
    path = api.spec.records_path
    found = body if path is None else dig(body, path)
    if isinstance(found, list):
        return found
    if path is None:
        problem = f"the body is a JSON {type(body).__name__}, not a list of records"
        hint = f"Set `sources.{api.name}.records_path` to the dotted path of the list."
    else:
        what = "missing" if found is None else f"a JSON {type(found).__name__}, not a list"
        keys = sorted(body) if isinstance(body, dict) else []
        problem = f"records_path {path!r} is {what} (top-level keys: {keys})"
        hint = f"Fix `sources.{api.name}.records_path` in keelson.yaml."
    raise api.fail(f"{problem}.", page, hint=hint)


# --- one request, with retries -------------------------------------------------------


def _get_json(api: Api, client: Any, page: Params) -> Any:
    import httpx

    retry = api.spec.retry
    problem = ""
    for attempt in range(1, retry.attempts + 1):
        try:
            response = client.get(api.spec.url, params={**api.params, **page})
        except httpx.TransportError as exc:
            problem, wait = f"{type(exc).__name__}: {first_line(exc)}", retry_wait(retry, attempt)
        else:
            if response.status_code < 400:
                return _json_body(api, response, page)
            if response.status_code not in retry.statuses:
                raise _refused(api, response, page)
            problem = f"HTTP {response.status_code}"
            wait = retry_wait(retry, attempt, response.headers.get("Retry-After"))
        if attempt < retry.attempts:
            time.sleep(wait)
    raise api.fail(
        f"failed after {retry.attempts} attempt{'s' * (retry.attempts > 1)}; last: {problem}.",
        page,
        hint=f"Check that the API is up; `sources.{api.name}.retry` and "
        f"`sources.{api.name}.timeout_seconds` set how long keelson waits.",
    )


def retry_wait(retry: Retry, attempt: int, retry_after: str | None = None) -> float:
    """Seconds to wait after failed ``attempt`` (1-based): a numeric ``Retry-After`` when
    the server sent one, else ``backoff_seconds`` doubled per attempt; both capped."""
    try:
        wanted = float(retry_after) if retry_after is not None else None
    except ValueError:
        wanted = None  # an HTTP date: fall back to the backoff
    if wanted is None or wanted < 0:
        wanted = retry.backoff_seconds * 2 ** (attempt - 1)
    return min(wanted, retry.max_backoff_seconds)


def _refused(api: Api, response: Any, page: Params) -> SourceError:
    hint = None
    if response.status_code in {401, 403}:
        hint = f"Check the credentials in `sources.{api.name}.headers` (and their ${{VAR}}s)."
    body = response.text[:200].replace("\n", " ")
    return api.fail(f"the API answered HTTP {response.status_code}: {body!r}", page, hint=hint)


def _json_body(api: Api, response: Any, page: Params) -> Any:
    try:
        return json.loads(response.content)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        kind = response.headers.get("Content-Type", "no Content-Type")
        raise api.fail(
            f"the response is not JSON ({kind}; {first_line(exc)}): {response.text[:200]!r}",
            page,
            hint=f"Check `sources.{api.name}.url`: it must answer with JSON.",
        ) from None


# --- records to a frame -----------------------------------------------------------------


def _table(api: Api, records: list[Any]) -> tuple[pl.DataFrame, pl.DataFrame]:
    good = [record for record in records if isinstance(record, dict)]
    bad = [
        (index, "bad_record", f"a JSON {type(record).__name__}, not an object", json.dumps(record))
        for index, record in enumerate(records, 1)
        if not isinstance(record, dict)
    ]
    if not good:
        return pl.DataFrame(), rejects(bad)
    try:
        frame = pl.read_json(io.BytesIO(json.dumps(good).encode()), infer_schema_length=None)
    except pl.exceptions.PolarsError as exc:
        raise api.fail(f"the records cannot be read as a table: {first_line(exc)}.") from None
    return frame, rejects(bad)
