"""Columnar request bodies: Arrow IPC (stream or file) and Parquet, read straight into a
frame with no per-value Python; for large batches, what JSON costs most on.

A route built with :func:`columnar_route` answers JSON bodies as it declares them and
hands the columnar ones to its ``columnar`` handler; the OpenAPI document lists the
three media types beside JSON.
"""

from __future__ import annotations

import io
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import polars as pl
from fastapi import Request, Response
from fastapi.routing import APIRoute

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
ColumnarHandler = Callable[[Request, pl.DataFrame], Awaitable[Response]]


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


def columnar_route(handle: ColumnarHandler) -> type[APIRoute]:
    """An APIRoute class sending Arrow/Parquet bodies to ``handle``, JSON to the endpoint."""

    class ColumnarRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            declared = super().get_route_handler()

            async def route(request: Request) -> Response:
                if media_type(request) in READERS:
                    return await handle(request, await read_frame(request))
                return await declared(request)

            return route

    return ColumnarRoute
