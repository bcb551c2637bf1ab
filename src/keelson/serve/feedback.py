"""Ground truth for logged predictions: ``POST /v2/models/{name}/feedback`` and its log.

Labels arrive by request id, often long after the prediction. They are written like
the prediction log (:class:`~keelson.serve.prediction_log.PartWriter`), under
``<url>/<model>/feedback/date=<yyyy-mm-dd>/part-….parquet``, one row per labelled
prediction row: ``request_id``, ``row``, ``label`` (a class, as a string) or ``value``
(a regression target), ``time`` received, ``model`` and ``received_by`` (the API
key's name, when there is one). Feedback sent twice is recorded twice; a reader
keeps the latest ``time`` per (request_id, row).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Annotated, Any, Self

import polars as pl
from fastapi import APIRouter, Depends, Request
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    StrictInt,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

from keelson.serve.errors import ServeError, error_responses
from keelson.serve.limits import require_json
from keelson.serve.prediction_log import (
    Part,
    PartWriter,
    check_segment,
    read_parts,
)

FEEDBACK_FORMAT = "keelson.feedback/1"
FEEDBACK_SCHEMA: dict[str, pl.DataType] = {
    "request_id": pl.String(),
    "row": pl.Int64(),
    "label": pl.String(),
    "value": pl.Float64(),
    "time": pl.Datetime("us", "UTC"),
    "model": pl.String(),
    "received_by": pl.String(),
}
RETRY_AFTER_SECONDS = 1
MAX_ROW = 2**31 - 1  # a row index; keeps first_row + len(labels) inside Int64


@dataclass(slots=True, frozen=True)
class FeedbackEntry:
    """Ground truth for rows ``first_row``, ``first_row + 1``, … of one logged request.

    ``labels`` are all class names (strings) or all regression targets (floats).
    """

    request_id: str
    model: str
    labels: Sequence[str | float]
    time: datetime
    first_row: int = 0
    received_by: str | None = None


Submission = tuple[FeedbackEntry, ...]


class FeedbackLog(PartWriter[Submission]):
    """Append feedback; a background thread writes it to Parquet under ``url``.

    Unlike the prediction log, a submission is refused (``append`` returns False) when
    the writer is ``max_pending_rows`` behind, so the sender can retry it later.
    """

    def __init__(
        self,
        url: str,
        flush_rows: int = 1000,
        flush_seconds: float = 1.0,
        max_pending_rows: int = 200_000,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(
            url,
            feedback_parts,
            submission_rows,
            kind="feedback log",
            format_tag=FEEDBACK_FORMAT,
            flush_rows=flush_rows,
            flush_seconds=flush_seconds,
            max_pending_rows=max_pending_rows,
            storage_options=storage_options,
        )

    def append(self, entries: Sequence[FeedbackEntry]) -> bool:
        """Queue ``entries`` all together (O(entries), no I/O); False if the log is behind."""
        for entry in entries:
            _check_entry(entry)
        return self.offer(tuple(entries))


def _check_entry(entry: FeedbackEntry) -> None:
    check_segment("FeedbackEntry", entry.model)
    if not entry.labels:
        raise ValueError("FeedbackEntry.labels must hold at least one label. Got none.")
    if isinstance(entry.first_row, bool) or not 0 <= entry.first_row <= MAX_ROW:
        raise ValueError(
            f"FeedbackEntry.first_row must be between 0 and {MAX_ROW}. Got {entry.first_row!r}."
        )
    if entry.time.tzinfo is None:
        raise ValueError("FeedbackEntry.time must be timezone-aware (UTC). Got a naive datetime.")


def submission_rows(submission: Submission) -> int:
    return sum(len(entry.labels) for entry in submission)


def feedback_parts(submissions: list[Submission]) -> list[Part]:
    """One part per model and UTC day received."""
    groups: dict[tuple[str, date], list[FeedbackEntry]] = {}
    for submission in submissions:
        for entry in submission:
            key = (entry.model, entry.time.astimezone(UTC).date())
            groups.setdefault(key, []).append(entry)
    return [
        Part(f"{model}/feedback/date={day.isoformat()}", feedback_frame(entries))
        for (model, day), entries in groups.items()
    ]


def feedback_frame(entries: Sequence[FeedbackEntry]) -> pl.DataFrame:
    """One row per labelled prediction row, columns :data:`FEEDBACK_SCHEMA`."""
    classes = [entry for entry in entries if isinstance(entry.labels[0], str)]
    targets = [entry for entry in entries if not isinstance(entry.labels[0], str)]
    frames = [
        _kind_frame(group, column, dtype)
        for group, column, dtype in (
            (classes, "label", pl.String()),
            (targets, "value", pl.Float64()),
        )
        if group
    ]
    frame = pl.concat(frames, how="diagonal_relaxed")
    missing = [
        pl.lit(None, dtype).alias(name)
        for name, dtype in FEEDBACK_SCHEMA.items()
        if name not in frame
    ]
    return (
        frame.with_columns(missing).select(list(FEEDBACK_SCHEMA)).sort("time", maintain_order=True)
    )


def _kind_frame(entries: list[FeedbackEntry], column: str, dtype: pl.DataType) -> pl.DataFrame:
    frame = pl.DataFrame(
        {
            "request_id": [entry.request_id for entry in entries],
            "first": [entry.first_row for entry in entries],
            "count": [len(entry.labels) for entry in entries],
            column: [list(entry.labels) for entry in entries],
            "time": [entry.time for entry in entries],
            "model": [entry.model for entry in entries],
            "received_by": [entry.received_by for entry in entries],
        },
        schema_overrides={
            column: pl.List(dtype),
            "time": FEEDBACK_SCHEMA["time"],
            "received_by": pl.String(),
        },
    )
    rows = pl.int_ranges("first", pl.col("first") + pl.col("count"), dtype=pl.Int64)
    return frame.with_columns(row=rows).explode("row", column).drop("first", "count")


def read_feedback(
    url: str, model: str, storage_options: Mapping[str, Any] | None = None
) -> pl.DataFrame:
    """Every feedback row of ``model`` under ``url``, parts in name (time) order."""
    check_segment("feedback log", model)
    frame = read_parts(url, f"{model}/feedback/date=*", storage_options)
    return frame if frame.width else pl.DataFrame(schema=FEEDBACK_SCHEMA)


# --- the route -------------------------------------------------------------------------


def _label(value: object) -> str | float:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    raise PydanticCustomError(
        "invalid_label",
        "a label must be a class name (a non-empty string) or a finite number "
        "(a regression target); got {got}",
        {"got": repr(value)[:50]},
    )


Label = Annotated[
    str | float,
    PlainValidator(_label),
    WithJsonSchema({"anyOf": [{"type": "string", "minLength": 1}, {"type": "number"}]}),
]
_ID = Field(min_length=1, description="The `id` of the inference response being labelled.")
_LABELS = Field(
    None, min_length=1, description="Ground truth for every row of the request, in row order."
)
_ROW = Field(
    None, ge=0, le=MAX_ROW, description="The row (0-based) of the request that `label` is for."
)
_ONE_LABEL = Field(None, description="Ground truth for `row`: a class name or a number.")


class RequestFeedback(BaseModel):
    """Ground truth for one request: ``labels`` for every row, or ``row`` and ``label``."""

    model_config = ConfigDict(extra="forbid")

    id: str = _ID
    labels: list[Label] | None = _LABELS
    row: StrictInt | None = _ROW
    label: Label | None = _ONE_LABEL

    @model_validator(mode="after")
    def _one_form(self) -> Self:
        check_form(self.labels, self.row, self.label)
        return self

    def entry(self, model: str, time: datetime, received_by: str | None) -> FeedbackEntry:
        """The log entry of this feedback (the form was checked when it was parsed)."""
        if self.labels is not None:
            return FeedbackEntry(self.id, model, self.labels, time, 0, received_by)
        labels = [] if self.label is None else [self.label]
        return FeedbackEntry(self.id, model, labels, time, self.row or 0, received_by)


class FeedbackBody(BaseModel):
    """One request's ground truth (``id`` with ``labels``, or with ``row`` and ``label``),
    or a batch of them in ``feedback``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"id": "3f2a9c", "labels": ["yes", "no", "no"]},
                {"id": "3f2a9c", "row": 1, "label": "no"},
                {
                    "feedback": [
                        {"id": "3f2a9c", "labels": ["yes"]},
                        {"id": "77b0", "labels": [12.5]},
                    ]
                },
            ]
        },
    )

    id: str | None = Field(None, min_length=1, description=_ID.description)
    labels: list[Label] | None = _LABELS
    row: StrictInt | None = _ROW
    label: Label | None = _ONE_LABEL
    feedback: list[RequestFeedback] | None = Field(
        None, min_length=1, description="A batch: one object per request, each with its `id`."
    )

    @model_validator(mode="after")
    def _one_form(self) -> Self:
        single = (self.id, self.labels, self.row, self.label)
        if self.feedback is not None:
            if any(field is not None for field in single):
                raise _form_error(
                    "give either 'feedback' (a batch) or one request's fields, not both"
                )
            return self
        if self.id is None:
            raise _form_error("'id' is required: the id of the inference response being labelled")
        check_form(self.labels, self.row, self.label)
        return self

    def requests(self) -> list[RequestFeedback]:
        if self.feedback is not None:
            return self.feedback
        return [
            RequestFeedback(id=self.id or "", labels=self.labels, row=self.row, label=self.label)
        ]


def check_form(
    labels: list[str | float] | None, row: int | None, label: str | float | None
) -> None:
    """``labels`` alone (all strings or all numbers), or ``row`` with ``label``."""
    if labels is not None:
        if row is not None or label is not None:
            raise _form_error("give either 'labels' (every row) or 'row' and 'label', not both")
        if len({isinstance(value, str) for value in labels}) > 1:
            raise _form_error(
                "'labels' mixes strings and numbers; send class names as strings, or "
                "regression targets as numbers"
            )
        return
    if row is None or label is None:
        raise _form_error(
            "give 'labels' (one per row of the request, in row order), or 'row' and 'label'"
        )


def _form_error(message: str) -> PydanticCustomError:
    return PydanticCustomError("feedback_form", message)


class FeedbackAccepted(BaseModel):
    accepted: int = Field(description="Labelled rows recorded.")


def feedback_router(
    log: FeedbackLog,
    model_name: Callable[[], str],
    *,
    classes: Callable[[], Sequence[str]] | None = None,
    key_name: Callable[[Request], str | None] | None = None,
) -> APIRouter:
    """``POST /v2/models/{name}/feedback``: record ground truth by request id (202).

    ``model_name`` gives the served model's name now (it may change on a swap);
    ``classes``, if given, its class names (empty for a regressor): labels are checked
    against them. ``key_name`` names the API key of a request, stored as ``received_by``.
    """
    router = APIRouter(prefix="/v2", tags=["feedback"])

    async def served(name: str) -> str:
        current = model_name()
        if name != current:
            raise ServeError(
                404, "model_not_found", f"model '{name}' not found; this server serves '{current}'."
            )
        return current

    @router.post(
        "/models/{name}/feedback",
        status_code=202,
        summary="Ground truth for logged predictions",
        dependencies=[Depends(require_json)],
        responses=error_responses(400, 404, 413, 415, 422, 503),
    )
    async def feedback(
        body: FeedbackBody, request: Request, model: str = Depends(served)
    ) -> FeedbackAccepted:
        requests = body.requests()
        if classes is not None:
            known = list(classes())
            batch = body.feedback is not None
            requests = [
                conform(item, known, model, f"feedback[{i}]." if batch else "")
                for i, item in enumerate(requests)
            ]
        sender = key_name(request) if key_name is not None else None
        now = datetime.now(UTC)
        entries = [item.entry(model, now, sender) for item in requests]
        if not log.append(entries):
            raise ServeError(
                503,
                "feedback_log_behind",
                "the feedback log is behind; send this feedback again in a moment.",
                retry_after=RETRY_AFTER_SECONDS,
            )
        return FeedbackAccepted(accepted=sum(len(entry.labels) for entry in entries))

    return router


def conform(item: RequestFeedback, classes: list[str], model: str, where: str) -> RequestFeedback:
    """``item`` with labels as the model's classes (classifier) or numbers (regressor); else 422.

    ``where`` prefixes the field in messages (``feedback[2].`` in a batch).
    """
    field = "labels" if item.labels is not None else "label"
    values = item.labels if item.labels is not None else [item.label]
    converted = [
        _conform_one(value, classes, model, f"{where}{field}[{i}] (request '{item.id[:50]}')")
        for i, value in enumerate(values)
    ]
    if item.labels is not None:
        return item.model_copy(update={"labels": converted})
    return item.model_copy(update={"label": converted[0]})


def _conform_one(value: Any, classes: list[str], model: str, where: str) -> str | float:
    if not classes:
        if isinstance(value, str):
            raise ServeError(
                422,
                "invalid_label",
                f"{where}: model '{model}' is a regressor; send the target as a number, "
                f"not {value[:50]!r}.",
            )
        return float(value)
    text = value if isinstance(value, str) else _number_text(value)
    if text not in classes:
        raise ServeError(
            422,
            "invalid_label",
            f"{where}: {text[:50]!r} is not a class of model '{model}'; "
            f"send one of {classes[:20]}.",
        )
    return text


def _number_text(value: float) -> str:
    """``1`` and ``1.0`` both name the class ``"1"``."""
    return str(int(value)) if float(value).is_integer() else repr(value)
