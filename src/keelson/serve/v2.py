"""Open Inference Protocol v2 (KServe v2) REST: health, metadata and inference.

Tabular convention (MLServer's pandas codec): one input tensor per column, shape
``[rows]`` or ``[rows, 1]``. A classifier's outputs are ``label`` (BYTES ``[rows]``) and
``probabilities`` (FP64 ``[rows, classes]``, row-major, columns in the order of the
model's classes); a regressor's output is ``value`` (FP64 ``[rows]``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated, Any, Literal, NotRequired

import numpy as np
import polars as pl
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, StrictInt
from typing_extensions import TypedDict  # pydantic needs it on Python < 3.12

from keelson import __version__
from keelson.registry.model import LoadedModel, Prediction
from keelson.registry.signature import V2_DATATYPES, DataType, Rows, Signature
from keelson.serve.bodies import OPENAPI_BODY, BodyHandlers, body_route, json_response
from keelson.serve.errors import ServeError, error_responses
from keelson.serve.limits import require_json
from keelson.serve.scoring import Scored, Scorer

PLATFORM = "keelson-sklearn"
OutputName = Literal["label", "probabilities", "value"]
V2Datatype = Literal[
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
    "FP16", "FP32", "FP64", "BYTES",
]  # fmt: skip
_INTEGERS = frozenset({"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"})
_NESTED = (list, dict)
_ACCEPTED: dict[DataType, frozenset[str]] = {
    "int64": _INTEGERS,
    "float64": _INTEGERS | {"FP16", "FP32", "FP64"},
    "string": frozenset({"BYTES"}),
    "bool": frozenset({"BOOL"}),
}


class ServerLive(BaseModel):
    live: bool


class ServerReady(BaseModel):
    ready: bool


class ModelReady(BaseModel):
    name: str
    ready: bool


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class RequestInput(TypedDict):
    """One input tensor: a dict, not a model (validated a quarter faster: 40 per request)."""

    name: str
    shape: list[Annotated[StrictInt, Field(ge=0)]]
    datatype: V2Datatype
    data: list[Any]
    parameters: NotRequired[dict[str, Any] | None]


class RequestOutput(BaseModel):
    name: OutputName
    parameters: dict[str, Any] | None = None


class InferenceRequest(BaseModel):
    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[RequestInput] = Field(min_length=1)
    outputs: list[RequestOutput] | None = None


class ResponseOutput(BaseModel):
    name: str
    datatype: str
    shape: list[int]
    data: list[str] | list[float]


class InferenceResponse(BaseModel):
    model_name: str
    model_version: str
    id: str
    outputs: list[ResponseOutput]


def v2_router(scorer: Scorer) -> APIRouter:
    router = APIRouter(prefix="/v2", tags=["v2"])
    _add_model_routes(router, "/models/{name}", scorer)  # first: inference is matched first
    _add_model_routes(router, "/models/{name}/versions/{version}", scorer)

    @router.get("/health/live", summary="Server liveness")
    async def live() -> ServerLive:
        return ServerLive(live=True)

    @router.get(
        "/health/ready",
        summary="Server readiness: every model loaded and warmed",
        responses={503: {"model": ServerReady, "description": "Still loading."}},
    )
    async def ready() -> Any:
        if scorer.ready:
            return ServerReady(ready=True)
        return JSONResponse({"ready": False}, status_code=503, headers={"Retry-After": "1"})

    @router.get("", summary="Server metadata")
    async def metadata() -> ServerMetadata:
        return ServerMetadata(name="keelson", version=__version__, extensions=[])

    return router


def _add_model_routes(router: APIRouter, path: str, scorer: Scorer) -> None:
    """Metadata, readiness and inference under one path (with or without ``/versions/{v}``)."""

    async def metadata(name: str, version: str | None = None) -> ModelMetadata:
        return model_metadata(scorer.model(name, version))

    async def ready(name: str, version: str | None = None) -> ModelReady:
        return ModelReady(name=scorer.model(name, version).name, ready=True)

    async def infer_json(request: Request, body: InferenceRequest) -> Response:
        def inputs_of(model: LoadedModel) -> Rows:
            requested_outputs(body.outputs, model)  # 422 before any work
            return model.signature.rows(columns_of(body.inputs, model.signature))

        name, version = request.path_params["name"], request.path_params.get("version")
        request_id = body.id or request.headers.get("x-request-id")
        scored = await scorer.score(inputs_of, name, version, request.headers, request_id)
        wanted = requested_outputs(body.outputs, scored.model)
        return json_response(inference_answer(scored, wanted), scored.headers())

    async def infer(
        request: Request, body: InferenceRequest, name: str, version: str | None = None
    ) -> Response:
        """Declared for the OpenAPI document: its route's handlers take every JSON body."""
        return await infer_json(request, body)

    async def infer_columnar(request: Request, frame: pl.DataFrame) -> Response:
        name, version = request.path_params["name"], request.path_params.get("version")
        scored = await scorer.score(
            lambda model: model.signature.conform(frame),
            name,
            version,
            request.headers,
            request.headers.get("x-request-id"),
        )
        answer = inference_answer(scored, output_names(scored.model))
        return json_response(answer, scored.headers())

    router.add_api_route(
        f"{path}/infer",
        infer,
        methods=["POST"],
        summary="Inference (JSON tensors, or an Arrow/Parquet table of the input columns)",
        response_model=InferenceResponse,
        dependencies=[Depends(require_json)],
        responses=error_responses(400, 404, 413, 415, 422, 500, 503),
        route_class_override=body_route(
            BodyHandlers(infer_columnar, (InferenceRequest, infer_json))
        ),
        openapi_extra=OPENAPI_BODY,
    )
    not_found = error_responses(404, 422, 503)
    router.add_api_route(
        path, metadata, methods=["GET"], summary="Model metadata", responses=not_found
    )
    router.add_api_route(
        f"{path}/ready", ready, methods=["GET"], summary="Model readiness", responses=not_found
    )


def model_metadata(model: LoadedModel) -> ModelMetadata:
    signature = model.signature
    return ModelMetadata(
        name=model.name,
        versions=[str(model.version)],
        platform=PLATFORM,
        inputs=[
            TensorMetadata(name=column.name, datatype=V2_DATATYPES[column.type], shape=[-1])
            for column in signature.inputs
        ],
        outputs=model_outputs(model),
    )


def model_outputs(model: LoadedModel) -> list[TensorMetadata]:
    """The output tensors ``model`` answers with: by its task."""
    if model.task == "regression":
        return [TensorMetadata(name="value", datatype="FP64", shape=[-1])]
    return [
        TensorMetadata(name="label", datatype="BYTES", shape=[-1]),
        TensorMetadata(
            name="probabilities", datatype="FP64", shape=[-1, len(model.signature.classes)]
        ),
    ]


def output_names(model: LoadedModel) -> list[str]:
    """The names of :func:`model_outputs`, in order."""
    return ["value"] if model.task == "regression" else ["label", "probabilities"]


def requested_outputs(outputs: list[RequestOutput] | None, model: LoadedModel) -> list[str]:
    """Names of the outputs to answer with, each once (all the model has when none are asked)."""
    available = output_names(model)
    for position, output in enumerate(outputs or []):
        if output.name not in available:
            raise ServeError(
                422,
                "unknown_output",
                f"outputs[{position}] ('{output.name}'): a {model.task} model has no output "
                f"'{output.name}'; ask for one of {available}.",
            )
    return list(dict.fromkeys(output.name for output in outputs or [])) or available


def columns_of(inputs: list[RequestInput], signature: Signature) -> dict[str, list[Any]]:
    """One column per input tensor the signature knows; other tensors are ignored."""
    types = signature.types
    columns: dict[str, list[Any]] = {}
    for position, tensor in enumerate(inputs):
        if tensor["name"] in columns:
            raise ServeError(
                422, "duplicate_input", f"{_where(tensor, position)}: the input is sent twice."
            )
        expected = types.get(tensor["name"])
        if expected is not None:
            if tensor["datatype"] not in _ACCEPTED[expected]:
                raise _datatype_mismatch(tensor, position, expected)
            columns[tensor["name"]] = _values(tensor, position)
    return columns


def _flat(tensor: RequestInput) -> bool:
    """The common case, checked at once: ``[rows]`` or ``[rows, 1]`` of as many flat values."""
    shape, data = tensor["shape"], tensor["data"]
    return (
        (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1))
        and shape[0] == len(data)
        and not (data and isinstance(data[0], _NESTED))
    )


def _where(tensor: RequestInput, position: int) -> str:
    return f"inputs[{position}] ('{tensor['name']}')"


def _datatype_mismatch(tensor: RequestInput, position: int, expected: DataType) -> ServeError:
    return ServeError(
        422,
        "datatype_mismatch",
        f"{_where(tensor, position)}: datatype {tensor['datatype']} does not fit the column's "
        f"type {expected}; send one of {sorted(_ACCEPTED[expected])}.",
    )


def _values(tensor: RequestInput, position: int) -> list[Any]:
    if _flat(tensor):
        return tensor["data"]
    shape = tensor["shape"]
    if len(shape) not in (1, 2) or shape[1:] not in ([], [1]):
        raise ServeError(
            422,
            "shape_mismatch",
            f"{_where(tensor, position)}: shape must be [rows] or [rows, 1] (one tensor per "
            f"column); got {shape}.",
        )
    values = tensor["data"]
    if values and isinstance(values[0], list | dict):  # nested: [[v], [v], ...]
        values = flatten(values, _where(tensor, position))
    if len(values) != shape[0]:
        raise ServeError(
            422,
            "shape_mismatch",
            f"{_where(tensor, position)}: shape {shape} holds {math.prod(shape)} elements but "
            f"data has {len(values)}.",
        )
    return values


def flatten(data: list[Any], where: str) -> list[Any]:
    """Row-major elements of flat or nested tensor data (iterative: no recursion limit)."""
    if not data or not isinstance(data[0], list | dict):
        return data  # flat (a nested value further on fails the column's type check)
    flat: list[Any] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            if isinstance(item, dict):
                raise ServeError(
                    422,
                    "invalid_tensor",
                    f"{where}: data must hold numbers, strings, booleans or null in (nested) "
                    "lists; found an object.",
                )
            flat.append(item)
        else:
            stack.pop()
    return flat


def inference_answer(scored: Scored, wanted: list[str]) -> dict[str, Any]:
    """The ``wanted`` outputs (see :func:`requested_outputs`) of a scored request, as an
    :class:`InferenceResponse` (a plain dict, numpy arrays in it: serialised as they are)."""
    return {
        "model_name": scored.model.name,
        "model_version": str(scored.model.version),
        "id": scored.request_id,
        "outputs": [_OUTPUTS[name](scored.prediction) for name in wanted],
    }


def _label_output(prediction: Prediction) -> dict[str, Any]:
    labels = prediction.labels
    return {"name": "label", "datatype": "BYTES", "shape": [len(labels)], "data": labels}


def _probability_output(prediction: Prediction) -> dict[str, Any]:
    probabilities = prediction.probabilities
    return {
        "name": "probabilities",
        "datatype": "FP64",
        "shape": list(probabilities.shape),
        "data": probabilities.ravel(),
    }


def _value_output(prediction: Prediction) -> dict[str, Any]:
    values = prediction.values
    if values is None:  # requested_outputs offers "value" only for regressors
        raise AssertionError("a classification prediction has no values")
    data = np.ascontiguousarray(values)  # orjson takes contiguous arrays only
    return {"name": "value", "datatype": "FP64", "shape": [len(values)], "data": data}


_OUTPUTS: dict[str, Callable[[Prediction], dict[str, Any]]] = {
    "label": _label_output,
    "probabilities": _probability_output,
    "value": _value_output,
}
