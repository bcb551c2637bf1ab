"""Request bodies read in one pass: Arrow IPC (stream or file) and Parquet straight into a
frame, and JSON parsed and validated by pydantic-core from the bytes.

A route built with :func:`body_route` keeps its declared endpoint (the OpenAPI
document, and the 415 for other media types) but hands the bodies its
:class:`BodyHandlers` take to them: columnar bodies as a frame and, when given, JSON
bodies already validated as the request model. :mod:`keelson.serve.fastpath` calls the
same handlers without the router.
"""

from __future__ import annotations

import io
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import orjson
import polars as pl
from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError

from keelson.serve.errors import ServeError

READERS: dict[str, Callable[[io.BytesIO], pl.DataFrame]] = {
    "application/vnd.apache.arrow.stream": pl.read_ipc_stream,
    "application/vnd.apache.arrow.file": pl.read_ipc,
    "application/vnd.apache.parquet": pl.read_parquet,
}
OPENAPI_BODY: dict[str, Any] = {
    "requestBody": {
        "content": {media: {"schema": {"type": "string", "format": "binary"}} for media in READERS}
    }
}
Model = TypeVar("Model", bound=BaseModel)
ColumnarHandler = Callable[[Request, pl.DataFrame], Awaitable[Response]]
JsonHandler = Callable[[Request, Model], Awaitable[Response]]


def json_response(answer: Any, headers: Mapping[str, str] | None = None) -> Response:
    """``answer`` as JSON by orjson: numpy arrays in it as they are, NaN as null."""
    return Response(
        orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY),
        media_type="application/json",
        headers=headers,
    )


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def read_frame(request: Request) -> pl.DataFrame:
    """The body as a frame, or 400 naming the format it failed to be."""
    media = media_type(request)
    body = await request.body()
    try:
        return READERS[media](io.BytesIO(body))
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ServeError(
            400, "invalid_body", f"the body is not a valid {media} document: {reason}."
        ) from None


@dataclass(frozen=True)
class BodyHandlers(Generic[Model]):
    """A scoring route's handlers by media type: Arrow/Parquet bodies to ``columnar`` as
    a frame; JSON bodies, parsed as ``json[0]``, to ``json[1]`` (when given)."""

    columnar: ColumnarHandler
    json: tuple[type[Model], JsonHandler[Model]] | None = None

    async def __call__(self, request: Request) -> Response | None:
        """The answer, or None for a media type these handlers do not take."""
        media = media_type(request)
        if media in READERS:
            return await self.columnar(request, await read_frame(request))
        if self.json is not None and media == "application/json":
            model, handle = self.json
            return await handle(request, parsed(model, await request.body()))
        return None


def body_route(handlers: BodyHandlers[Any]) -> type[APIRoute]:
    """An APIRoute class answering with ``handlers``; any other media type goes to the
    declared endpoint (its dependencies answer 415)."""

    class BodyRoute(APIRoute):
        body_handlers = handlers

        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            declared = super().get_route_handler()

            async def route(request: Request) -> Response:
                answer = await handlers(request)
                return answer if answer is not None else await declared(request)

            return route

    return BodyRoute


def parsed(model: type[Model], body: bytes) -> Model:
    """``body`` validated as ``model`` in one pass; errors as FastAPI reports them."""
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        errors = [{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]
        raise RequestValidationError(errors) from None
