"""What a request must satisfy before its body is parsed: a JSON content type and a size limit.

The size limit is a pure ASGI middleware: a declared ``Content-Length`` over the limit
is refused before a byte of the body is read, and a streamed (chunked) body is
counted as it arrives and refused as soon as it passes the limit, so an oversized
body is never held in memory.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Request
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from keelson.serve.errors import ServeError, error_response


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when a streamed body passes the limit (FastAPI re-raises it)."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, too_large_message(max_bytes))


def too_large_message(max_bytes: int) -> str:
    return (
        f"the request body is larger than the limit of {max_bytes} bytes; "
        "send fewer rows per request."
    )


class BodySizeLimit:
    """Refuse HTTP request bodies over ``max_bytes`` with 413 ``{"error": ...}``."""

    def __init__(
        self, app: ASGIApp, max_bytes: int, on_reject: Callable[[], None] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.on_reject = on_reject

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._reject(scope, receive, send)
            return
        counter = _CountingReceive(receive, self.max_bytes)
        started = False

        async def send_and_track(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counter, send_and_track)
        except BodyTooLarge:
            if started:
                raise
            await self._reject(scope, receive, send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.on_reject is not None:
            self.on_reject()
        await error_response(413, too_large_message(self.max_bytes))(scope, receive, send)


class _CountingReceive:
    def __init__(self, receive: Receive, max_bytes: int) -> None:
        self.receive = receive
        self.max_bytes = max_bytes
        self.received = 0

    async def __call__(self) -> Message:
        message = await self.receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.max_bytes:
                raise BodyTooLarge(self.max_bytes)
        return message


def _content_length(scope: Scope) -> int | None:
    value = Headers(scope=scope).get("content-length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


async def require_json(request: Request) -> None:
    """Dependency of every POST route: the body must be declared as JSON (else 415)."""
    declared = request.headers.get("content-type", "")
    media_type = declared.split(";", 1)[0].strip().lower()
    main, _, subtype = media_type.partition("/")
    if main == "application" and (subtype == "json" or subtype.endswith("+json")):
        return
    raise ServeError(
        415,
        "unsupported_media_type",
        "the request body must be JSON, sent with Content-Type: application/json; "
        f"got {declared or 'no Content-Type'}.",
    )
