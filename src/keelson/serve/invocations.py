"""MLflow-style scoring: ``POST /invocations`` (MLflow's four JSON shapes), ``/ping``, ``/health``.

Exactly one of ``dataframe_split``, ``dataframe_records``, ``instances`` (records) or
``inputs`` (column → values, or records) per request. The answer is one prediction
per row: ``{"label": ..., "probabilities": {class: p, ...}}`` from a classifier,
``{"value": x}`` from a regressor.
"""

from __future__ import annotations

from typing import Any, Literal, Self

import polars as pl
from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, model_validator

from keelson.serve.bodies import OPENAPI_BODY, BodyHandlers, body_route, json_response
from keelson.serve.errors import ErrorBody, ServeError, error_responses
from keelson.serve.limits import require_json
from keelson.serve.scoring import InputsOf, Scored, Scorer

FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
Records = list[dict[str, Any]]


class DataframeSplit(BaseModel):
    columns: list[str]
    data: list[list[Any]]
    index: list[Any] | None = None


class InvocationsRequest(BaseModel):
    dataframe_split: DataframeSplit | None = None
    dataframe_records: Records | None = None
    instances: Records | None = None
    inputs: dict[str, list[Any]] | Records | None = None
    params: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _exactly_one_format(self) -> Self:
        given = [name for name in FORMATS if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"send exactly one of {list(FORMATS)}; got {given or 'none'}")
        return self


class RowPrediction(BaseModel):
    """One row's prediction from a classifier."""

    label: str
    probabilities: dict[str, float]


class ValuePrediction(BaseModel):
    """One row's prediction from a regressor."""

    value: float


class InvocationsResponse(BaseModel):
    predictions: list[RowPrediction] | list[ValuePrediction]
    model_name: str
    model_version: str


class Status(BaseModel):
    status: Literal["ok"] = "ok"


def invocations_router(scorer: Scorer) -> APIRouter:
    router = APIRouter(tags=["mlflow"])

    @router.get("/ping", summary="Liveness (MLflow)")
    async def ping() -> Status:
        return Status()

    @router.get(
        "/health",
        summary="Readiness (MLflow)",
        responses={503: {"model": ErrorBody, "description": "Still loading."}},
    )
    async def health() -> Status:
        scorer.primary  # noqa: B018 - 503 until the model is loaded and warmed
        return Status()

    async def invocations_json(request: Request, body: InvocationsRequest) -> Response:
        return await answer(scorer, request, body_inputs(body))

    async def invocations(request: Request, body: InvocationsRequest) -> Response:
        """Declared for the OpenAPI document: its route's handlers take every JSON body."""
        return await invocations_json(request, body)

    async def invocations_columnar(request: Request, frame: pl.DataFrame) -> Response:
        conformed: InputsOf = lambda model: model.signature.conform(frame)  # noqa: E731
        return await answer(scorer, request, conformed)

    router.add_api_route(
        "/invocations",
        invocations,
        methods=["POST"],
        summary="Score rows (JSON, or an Arrow/Parquet table)",
        response_model=InvocationsResponse,
        dependencies=[Depends(require_json)],
        responses=error_responses(400, 413, 415, 422, 500, 503),
        route_class_override=body_route(
            BodyHandlers(invocations_columnar, (InvocationsRequest, invocations_json))
        ),
        openapi_extra=OPENAPI_BODY,
    )
    return router


def body_inputs(body: InvocationsRequest) -> InputsOf:
    """The rows a model takes from ``body``, whichever of the four shapes it used."""
    return lambda model: model.signature.rows(columns_of(body, model.signature.names))


async def answer(scorer: Scorer, request: Request, inputs_of: InputsOf) -> Response:
    """Score with the primary's name (the caller may name the request: ``X-Request-Id``);
    the predictions, with headers saying who made them."""
    name = scorer.primary.name
    request_id = request.headers.get("x-request-id")
    scored = await scorer.score(inputs_of, name, None, request.headers, request_id)
    return json_response(predictions_of(scored), scored.headers())


def columns_of(request: InvocationsRequest, names: list[str]) -> dict[str, list[Any]]:
    """Column name → values, whichever of the four shapes the request used."""
    if request.dataframe_split is not None:
        return _split_columns(request.dataframe_split)
    if isinstance(request.inputs, dict):
        return request.inputs
    for field in ("dataframe_records", "instances", "inputs"):
        records = getattr(request, field)
        if records is not None:
            return _record_columns(records, field, names)
    raise AssertionError("the request model guarantees one format")  # pragma: no cover


def _split_columns(split: DataframeSplit) -> dict[str, list[Any]]:
    width = len(split.columns)
    if len(set(split.columns)) != width:
        raise ServeError(422, "duplicate_column", "dataframe_split.columns has duplicate names.")
    for row, values in enumerate(split.data):
        if len(values) != width:
            raise ServeError(
                422,
                "row_width_mismatch",
                f"dataframe_split.data[{row}] has {len(values)} values; expected {width}, "
                "one per name in dataframe_split.columns.",
            )
    transposed = [list(column) for column in zip(*split.data, strict=True)]
    return dict(zip(split.columns, transposed or [[] for _ in split.columns], strict=True))


def _record_columns(records: Records, field: str, names: list[str]) -> dict[str, list[Any]]:
    """The signature's columns of row records; a column absent from every record stays absent."""
    columns: dict[str, list[Any]] = {}
    for name in names:
        present = [name in record for record in records]
        if not any(present):
            continue
        if not all(present):
            row = present.index(False)
            raise ServeError(
                422,
                "missing_value",
                f"{field}[{row}] has no '{name}'; send null for a missing value.",
            )
        columns[name] = [record[name] for record in records]
    return columns if records else {name: [] for name in names}


def predictions_of(scored: Scored) -> dict[str, Any]:
    """One prediction per row, and the version that made them: an
    :class:`InvocationsResponse` as a plain dict."""
    prediction = scored.prediction
    rows: list[dict[str, Any]]
    if prediction.values is not None:
        rows = [{"value": value} for value in prediction.values.tolist()]
    else:
        classes = prediction.classes
        rows = [
            {"label": label, "probabilities": dict(zip(classes, row, strict=True))}
            for label, row in zip(prediction.labels, prediction.probabilities.tolist(), strict=True)
        ]
    return {
        "predictions": rows,
        "model_name": scored.model.name,
        "model_version": str(scored.model.version),
    }
