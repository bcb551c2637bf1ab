"""Every error the server returns has one shape: ``{"error": "message"}`` (Open Inference v2).

Client errors are 4xx with a message naming the field, column or row; the only 5xx
is an unexpected failure inside the server, answered with a generic message.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from keelson.errors import KeelsonError
from keelson.registry.signature import SignatureError
from keelson.serve.metrics import ServeMetrics

_MAX_PART = 200  # characters of one field path or message echoed back to the client
_MAX_ERRORS = 5  # validation errors listed in one message
_HTTP_REASONS = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
}


class ServeError(KeelsonError):
    """A request the server refuses: HTTP status, stable reason ``code`` and a message."""

    code = "request_refused"

    def __init__(
        self, status_code: int, code: str, message: str, retry_after: int | None = None
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.retry_after = retry_after

    @property
    def headers(self) -> dict[str, str] | None:
        return None if self.retry_after is None else {"Retry-After": str(self.retry_after)}


class ErrorBody(BaseModel):
    """The body of every error response (Open Inference v2 shape)."""

    error: str


_DESCRIPTIONS = {
    400: "The body is not valid JSON.",
    404: "No such model or version on this server.",
    413: "The body or the number of rows is over the limit.",
    415: "The body is not declared as application/json.",
    503: "Not ready yet, or too busy: retry after the Retry-After header's seconds.",
    422: "The request does not fit its schema or the model signature.",
    500: "Unexpected server failure (logged).",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` documenting the ``{"error"}`` body for these statuses."""
    return {code: {"model": ErrorBody, "description": _DESCRIPTIONS[code]} for code in statuses}


def error_response(
    status_code: int, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status_code, headers=headers)


REFUSALS = (ServeError, SignatureError, RequestValidationError)
"""What a handler raises to refuse a request (answered by :func:`refusal`)."""


@dataclass(frozen=True)
class Refusal:
    """An error answer: status, stable reason code, message, headers."""

    status_code: int
    reason: str
    message: str
    headers: Mapping[str, str] | None = None

    def response(self, metrics: ServeMetrics) -> JSONResponse:
        metrics.count_error(self.reason)
        return error_response(self.status_code, self.message, self.headers)


def refusal(exc: ServeError | SignatureError | RequestValidationError) -> Refusal:
    """The answer to one of :data:`REFUSALS`."""
    if isinstance(exc, ServeError):
        return Refusal(exc.status_code, exc.code, exc.message, exc.headers)
    if isinstance(exc, SignatureError):
        return Refusal(422, exc.code, str(exc))
    errors = list(exc.errors())
    if errors and errors[0].get("type") == "json_invalid":
        return Refusal(400, "invalid_json", _json_message(errors[0]))
    return Refusal(422, "invalid_request", validation_message(errors))


def install_error_handlers(app: FastAPI, metrics: ServeMetrics) -> None:
    """Answer every error in the ``{"error": ...}`` shape and count it by reason."""

    async def on_refusal(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, REFUSALS)
        return refusal(exc).response(metrics)

    for refused in REFUSALS:
        app.add_exception_handler(refused, on_refusal)

    @app.exception_handler(HTTPException)
    async def on_http_error(request: Request, exc: HTTPException) -> JSONResponse:
        reason = _HTTP_REASONS.get(exc.status_code, f"http_{exc.status_code}")
        message = str(exc.detail)
        if exc.status_code in (404, 405):
            message = f"{message}: {request.method} {_clip(request.url.path)}."
        return Refusal(exc.status_code, reason, message, exc.headers).response(metrics)

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Starlette re-raises the exception after this response, so the server logs it.
        return Refusal(
            500, "internal", "internal server error; the server log has the details."
        ).response(metrics)


def validation_message(errors: list[Any]) -> str:
    """``inputs.0.shape: Field required; ...``: the field path, then what is wrong."""
    parts = [f"{_location(error.get('loc', ()))}: {error.get('msg', '')}" for error in errors]
    if len(parts) > _MAX_ERRORS:
        parts = [*parts[:_MAX_ERRORS], f"and {len(parts) - _MAX_ERRORS} more"]
    return "; ".join(_clip(part) for part in parts) + "."


def _location(loc: tuple[Any, ...]) -> str:
    path = [str(part) for part in loc if part != "body"]
    return ".".join(path) if path else "body"


def _json_message(error: Any) -> str:
    detail = error.get("ctx", {}).get("error", "invalid JSON")
    position = error.get("loc", ("body",))[-1]
    where = "" if position == "body" else f" (at character {position})"
    return f"the request body is not valid JSON: {detail}{where}."


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_PART else text[:_MAX_PART] + "…"
