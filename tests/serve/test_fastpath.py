"""The fast path: scoring bodies answered by their route's handlers without the router."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import polars as pl
import pytest
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel
from starlette.types import Receive, Scope, Send

from keelson.serve.bodies import BodyHandlers, body_route, json_response
from keelson.serve.errors import ServeError
from keelson.serve.fastpath import FastPath
from keelson.serve.metrics import ServeMetrics

from .conftest import serving


class Echo(BaseModel):
    text: str


class Handlers:
    """What the route's handlers and the app behind the fast path were asked."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.behind: list[str] = []

    async def json(self, request: Request, body: Echo) -> Response:
        if body.text == "refuse":
            raise ServeError(409, "refused", "refused on purpose")
        self.calls.append(("json", (request.path_params, request.scope["route"].path)))
        return json_response({"echo": body.text})

    async def columnar(self, request: Request, frame: pl.DataFrame) -> Response:
        self.calls.append(("columnar", frame.height))
        return json_response({"rows": frame.height})

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Stands for FastAPI: answers 299 with the path."""
        self.behind.append(f"{scope['method']} {scope['path']}")
        await Response(b"behind", status_code=299)(scope, receive, send)


@pytest.fixture
def handlers() -> Handlers:
    return Handlers()


@pytest.fixture
def http(handlers: Handlers) -> Iterator[httpx.Client]:
    router = APIRouter()

    async def declared(request: Request) -> Response:  # never reached through the fast path
        raise AssertionError("the declared endpoint was called")

    router.add_api_route(
        "/score/{name}",
        declared,
        methods=["POST"],
        route_class_override=body_route(BodyHandlers(handlers.columnar, (Echo, handlers.json))),
    )
    app = FastPath(handlers.app, [router], ServeMetrics())
    with serving(app) as url, httpx.Client(base_url=url) as client:
        yield client


def test_a_json_body_is_answered_by_its_handler_with_the_path_parameters(
    http: httpx.Client, handlers: Handlers
) -> None:
    answer = http.post("/score/toy", json={"text": "hello"})

    assert (answer.status_code, answer.json()) == (200, {"echo": "hello"})
    assert handlers.calls == [("json", ({"name": "toy"}, "/score/{name}"))]
    assert handlers.behind == []


def test_a_columnar_body_is_answered_by_its_handler(http: httpx.Client, handlers: Handlers) -> None:
    frame = pl.DataFrame({"x": [1, 2, 3]})
    body = frame.write_ipc_stream(None).getvalue()
    headers = {"content-type": "application/vnd.apache.arrow.stream"}

    answer = http.post("/score/toy", content=body, headers=headers)

    assert (answer.status_code, answer.json()) == (200, {"rows": 3})
    assert handlers.calls == [("columnar", 3)]


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b'{"text": ', 400, "not valid JSON"),
        (b'{"words": "hi"}', 422, "text: Field required"),
        (b'{"text": "refuse"}', 409, "refused on purpose"),
    ],
    ids=["malformed", "invalid", "refused"],
)
def test_refusals_get_the_servers_error_body(
    http: httpx.Client, body: bytes, status: int, message: str
) -> None:
    answer = http.post("/score/toy", content=body, headers={"content-type": "application/json"})

    assert answer.status_code == status
    assert message in answer.json()["error"]


@pytest.mark.parametrize(
    ("method", "path", "media"),
    [
        ("POST", "/score/toy", "text/plain"),
        ("GET", "/score/toy", "application/json"),
        ("POST", "/elsewhere", "application/json"),
    ],
    ids=["other-media-type", "other-method", "other-path"],
)
def test_everything_else_goes_on_to_the_app(
    http: httpx.Client, handlers: Handlers, method: str, path: str, media: str
) -> None:
    answer = http.request(method, path, content=b"{}", headers={"content-type": media})

    assert (answer.status_code, answer.text) == (299, "behind")
    assert handlers.behind == [f"{method} {path}"] and handlers.calls == []
