"""The input/output signature of a model version, and turning requests into frames.

Training derives the signature from the training table; serving uses it to
validate a request and to build the exact frame the pipeline was fitted on, so
a request column has the same name, order and dtype as in training.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from functools import cached_property
from itertools import chain
from typing import Any, Literal

import polars as pl

from keelson.errors import KeelsonError

DataType = Literal["int64", "float64", "string", "bool"]

_POLARS: dict[str, type[pl.DataType]] = {
    "int64": pl.Int64,
    "float64": pl.Float64,
    "string": pl.String,
    "bool": pl.Boolean,
}
# Open Inference Protocol v2 tensor datatypes.
V2_DATATYPES: dict[str, str] = {
    "int64": "INT64",
    "float64": "FP64",
    "string": "BYTES",
    "bool": "BOOL",
}


class SignatureError(KeelsonError):
    """A request does not match the model signature (maps to HTTP 422)."""

    code = "signature_mismatch"


def data_type_of(dtype: pl.DataType) -> DataType:
    if dtype == pl.Boolean:
        return "bool"
    if dtype.is_integer():
        return "int64"
    if dtype.is_numeric():
        return "float64"
    return "string"


@dataclass(frozen=True)
class ColumnSignature:
    name: str
    type: DataType
    nullable: bool = True


@dataclass(frozen=True)
class Signature:
    inputs: list[ColumnSignature]
    classes: list[str] = field(default_factory=list)

    @classmethod
    def from_frame(cls, frame: pl.DataFrame, classes: list[str]) -> Signature:
        inputs = [
            ColumnSignature(name, data_type_of(dtype), bool(frame[name].null_count()))
            for name, dtype in frame.schema.items()
        ]
        return cls(inputs=inputs, classes=classes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "inputs": [
                {"name": c.name, "type": c.type, "nullable": c.nullable} for c in self.inputs
            ],
            "classes": list(self.classes),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Signature:
        inputs = [ColumnSignature(c["name"], c["type"], c["nullable"]) for c in data["inputs"]]
        return cls(inputs=inputs, classes=list(data.get("classes", [])))

    @cached_property
    def names(self) -> list[str]:
        return [c.name for c in self.inputs]

    @cached_property
    def types(self) -> dict[str, DataType]:
        """Each input's type, by name."""
        return {c.name: c.type for c in self.inputs}

    def frame(self, columns: dict[str, list[Any]]) -> pl.DataFrame:
        """Build the model's input frame from column lists, checking names and types.

        Extra columns are ignored; a missing column or a value of the wrong type
        raises :class:`SignatureError` naming the column (and the row).
        """
        return self.rows(columns).frame()

    def rows(self, columns: dict[str, list[Any]]) -> Rows:
        """The signature's columns of ``columns``, checked as :meth:`frame` checks them but
        not yet built into a frame (see :class:`Rows`)."""
        missing = [name for name in self.names if name not in columns]
        if missing:
            raise SignatureError(
                f"missing input column(s) {missing}.", hint=f"The model expects {self.names}."
            )
        lengths = {len(columns[name]) for name in self.names}
        if len(lengths) > 1:
            raise SignatureError(f"input columns have different lengths {sorted(lengths)}.")
        if not all(
            _plainly_fits(data_type, list(chain.from_iterable(columns[n] for n in names)))
            for data_type, names in self._names_by_type.items()
        ):  # rare: find the column and row to name
            for column in self.inputs:
                _check(column, columns[column.name])
        return Rows(self, {name: columns[name] for name in self.names}, lengths.pop())

    @cached_property
    def _names_by_type(self) -> dict[DataType, list[str]]:
        """Input names grouped by type: a request's values are checked per type, not per
        column (40 one-row columns cost 40 times what one 40-value list does)."""
        grouped: dict[DataType, list[str]] = {}
        for column in self.inputs:
            grouped.setdefault(column.type, []).append(column.name)
        return grouped

    def conform(self, frame: pl.DataFrame) -> pl.DataFrame:
        """The model's input frame from a columnar one (Arrow, Parquet): the signature's
        columns in order, cast without loss; extra columns are ignored."""
        missing = [name for name in self.names if name not in frame.columns]
        if missing:
            raise SignatureError(
                f"missing input column(s) {missing}.", hint=f"The model expects {self.names}."
            )
        return pl.DataFrame([_conformed(c, frame[c.name]) for c in self.inputs])


@dataclass(frozen=True)
class Rows:
    """Rows checked against a signature, kept as column lists.

    Building a Polars frame costs mostly per column, not per row, so a server checks
    each request's rows on arrival and builds one frame for the requests it scores
    together (:meth:`joined`).
    """

    signature: Signature
    columns: dict[str, list[Any]]
    height: int

    def frame(self) -> pl.DataFrame:
        return pl.DataFrame(
            [
                pl.Series(c.name, self.columns[c.name], dtype=_POLARS[c.type], strict=False)
                for c in self.signature.inputs
            ]
        )

    @staticmethod
    def joined(parts: list[Rows]) -> Rows:
        """One block of the rows of ``parts`` (of one signature), in order."""
        if len(parts) == 1:
            return parts[0]
        names = parts[0].columns
        columns = {n: list(chain.from_iterable(p.columns[n] for p in parts)) for n in names}
        return Rows(parts[0].signature, columns, sum(part.height for part in parts))


def _check(column: ColumnSignature, values: list[Any]) -> None:
    """Raise naming the first row whose value the column cannot hold without loss; the
    common case (every value of a type the column takes as it is) is checked per column."""
    if _plainly_fits(column.type, values):
        return
    for row, value in enumerate(values):
        if not _fits(column.type, value):
            raise SignatureError(
                f"column '{column.name}' row {row}: expected {_EXPECTED[column.type]}, "
                f"got {type(value).__name__} {value!r}."
            )


def _plainly_fits(data_type: DataType, values: list[Any]) -> bool:
    """Every value's type is one the column takes as it is, numbers within range."""
    kinds = set(map(type, values))
    if not kinds <= _TAKEN_AS_IS[data_type]:
        return False
    if data_type not in ("int64", "float64"):
        return True
    numbers = [v for v in values if v is not None] if type(None) in kinds else values
    if not numbers:
        return True
    if data_type == "int64":
        return min(numbers) >= _INT64_MIN and max(numbers) < _INT64_END
    return _finite(numbers)


def _conformed(column: ColumnSignature, series: pl.Series) -> pl.Series:
    dtype = series.dtype
    fits = {
        "int64": dtype.is_integer(),
        "float64": dtype.is_integer() or dtype.is_float(),
        "string": dtype in (pl.String, pl.Categorical) or isinstance(dtype, pl.Enum),
        "bool": dtype == pl.Boolean,
    }[column.type] or dtype == pl.Null
    try:
        cast = series.cast(_POLARS[column.type], strict=True) if fits else None
    except pl.exceptions.PolarsError:
        cast = None
    if cast is None or (column.type == "float64" and not cast.is_finite().fill_null(True).all()):
        raise SignatureError(
            f"column '{column.name}': {dtype} values cannot be read as "
            f"{_EXPECTED[column.type]} without loss."
        )
    return cast.rename(column.name)


def _finite(numbers: list[Any]) -> bool:
    """No NaN or infinity among the numbers (a non-finite sum sends them to the per-value
    check, which names the row)."""
    try:
        return math.isfinite(sum(numbers))
    except OverflowError:
        return False


def _fits(data_type: DataType, value: Any) -> bool:
    """Whether a JSON value can be stored in the column without loss (None is a null)."""
    if value is None:
        return True
    if data_type == "string":
        return isinstance(value, str)
    if data_type == "bool" or isinstance(value, bool):
        return data_type == "bool" and isinstance(value, bool)
    if data_type == "int64":
        if isinstance(value, float):
            return value.is_integer() and _INT64_MIN <= value < _INT64_END
        return isinstance(value, int) and _INT64_MIN <= value < _INT64_END
    if isinstance(value, int):
        return abs(value) <= _FLOAT_MAX
    return isinstance(value, float) and math.isfinite(value)


_INT64_MIN, _INT64_END = -(2**63), 2**63
_EXPECTED = {
    "int64": "an int64 integer",
    "float64": "a finite float64",
    "string": "a string",
    "bool": "a boolean",
}
_FLOAT_MAX = sys.float_info.max
_TAKEN_AS_IS: dict[DataType, set[type]] = {
    "int64": {int, type(None)},
    "float64": {int, float, type(None)},
    "string": {str, type(None)},
    "bool": {bool, type(None)},
}
