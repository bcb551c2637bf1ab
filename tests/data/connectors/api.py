"""A real JSON API on a free loopback port (http.server in a thread), for connector tests.

Routes are plain functions ``(Call) -> Reply``; every call is recorded. Helpers build the
routes of the three pagination styles over a list of records.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit


@dataclass(frozen=True)
class Call:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    number: int  # 1 for the first call of this path + query, 2 for a retry, ...


@dataclass(frozen=True)
class Reply:
    body: Any = None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None  # sent as is instead of JSON
    delay: float = 0.0


Route = Callable[[Call], Reply]


class JsonApi:
    """The server: ``routes`` by path, ``calls`` in arrival order."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.calls: list[Call] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True

    def url(self, path: str) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}{path}"

    def calls_to(self, path: str) -> list[Call]:
        return [call for call in self.calls if call.path == path]

    def _record(self, path: str, query: dict[str, str], headers: dict[str, str]) -> Call:
        with self._lock:
            number = 1 + sum(1 for c in self.calls if c.path == path and c.query == query)
            call = Call(path, query, headers, number)
            self.calls.append(call)
        return call

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                call = api._record(parts.path, dict(parse_qsl(parts.query)), dict(self.headers))
                route = api.routes.get(parts.path)
                reply = route(call) if route else Reply({"error": "no such route"}, 404)
                time.sleep(reply.delay)
                data = reply.raw if reply.raw is not None else json.dumps(reply.body).encode()
                self.send_response(reply.status)
                for key, value in {"Content-Type": "application/json", **reply.headers}.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    return  # the client gave up (a timeout test)

            def log_message(self, format: str, *args: Any) -> None:
                return

        return Handler

    @contextmanager
    def running(self) -> Iterator[JsonApi]:
        thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
            thread.join()


def by_page(records: list[Any], records_path: str = "data.items") -> Route:
    """``?page=N&per_page=S`` (1-based); the records at a dotted path of the body."""

    def route(call: Call) -> Reply:
        page, size = int(call.query["page"]), int(call.query.get("per_page", 3))
        items = records[(page - 1) * size : page * size]
        body: Any = items
        for key in reversed(records_path.split(".")):
            body = {key: body}
        return Reply({**body, "page": page})

    return route


def by_offset(records: list[Any]) -> Route:
    """``?offset=O&limit=L``; ``{"results": [...]}``."""

    def route(call: Call) -> Reply:
        offset, limit = int(call.query["offset"]), int(call.query["limit"])
        return Reply({"results": records[offset : offset + limit]})

    return route


def by_cursor(records: list[Any], size: int = 2) -> Route:
    """``?cursor=C`` (absent on the first call); the next cursor at ``meta.next``."""

    def route(call: Call) -> Reply:
        start = int(call.query.get("cursor", "c0")[1:])
        following = start + size
        cursor = f"c{following}" if following < len(records) else None
        return Reply({"items": records[start:following], "meta": {"next": cursor}})

    return route


def failing_first(route: Route, failures: list[Reply]) -> Route:
    """``route``, except that the first calls of each page answer ``failures`` in turn."""

    def flaky(call: Call) -> Reply:
        return failures[call.number - 1] if call.number <= len(failures) else route(call)

    return flaky
