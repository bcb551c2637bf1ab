"""Incremental reads: only the rows above the last watermark, kept in a stored snapshot.

For a source with ``incremental: {column, keys}`` the runner calls
:func:`read_incremental` instead of ``read_source``. It reads the rows whose
``column`` is greater than the stored watermark (for SQL the filter runs in the
database, as ``SELECT * FROM (<query>) AS src WHERE <column> > :watermark``; a file is
read whole and filtered), appends them to the source's snapshot (Parquet in the
artifact store) and returns the whole snapshot. With ``keys``, a new row whose key is
already in the snapshot replaces the stored row (within one read, the row with the
highest watermark wins). The watermark becomes the highest value read; it is stored
with its exact type (integers, floats, text, dates, datetimes with unit and zone).

A row whose watermark is null (or NaN) cannot be placed in time: it is rejected as
``null_watermark`` on every read, never silently dropped or appended twice.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from keelson import __version__
from keelson.data.sources import SourceRead, read_source
from keelson.errors import SourceError
from keelson.spec import FileSource, Incremental, SqlSource
from keelson.store.store import Store
from keelson.store.tables import Artifact, SourceState

SNAPSHOT_KIND = "source_snapshot"
SNAPSHOT_FORMAT = "1"
NULL_WATERMARK = "null_watermark"


@dataclass(frozen=True)
class Watermark:
    """The highest watermark read so far, exact: its physical value and its Polars type."""

    column: str
    dtype: pl.DataType
    physical: int | float | str

    @classmethod
    def of(cls, values: pl.Series) -> Watermark | None:
        """The maximum of ``values``, or None when there is no value."""
        top = values.to_frame().select(pl.col(values.name).max()).to_series()
        if top.null_count():
            return None
        return cls(values.name, values.dtype, top.to_physical()[0])

    @property
    def series(self) -> pl.Series:
        return pl.Series(self.column, [self.physical]).cast(self.dtype)

    @property
    def value(self) -> Any:
        """As a Python value (a bound SQL parameter)."""
        return self.series[0]

    @property
    def shown(self) -> int | float | str:
        """As JSON: numbers as they are, anything else as ISO text."""
        if self.dtype.is_numeric():
            return self.physical
        return str(self.series.cast(pl.String)[0])

    def to_json(self) -> dict[str, Any]:
        return {
            "column": self.column,
            "value": self.shown,
            "physical": self.physical,
            "dtype": _dtype_json(self.dtype),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Watermark | None:
        if data.get("physical") is None:
            return None
        return cls(data["column"], _dtype_of(data["dtype"]), data["physical"])


def _dtype_json(dtype: pl.DataType) -> dict[str, Any]:
    if isinstance(dtype, pl.Datetime):
        return {"type": "Datetime", "time_unit": dtype.time_unit, "time_zone": dtype.time_zone}
    return {"type": type(dtype).__name__}


def _dtype_of(data: dict[str, Any]) -> pl.DataType:
    if data["type"] == "Datetime":
        return pl.Datetime(data["time_unit"], data["time_zone"])
    dtype: pl.DataType = getattr(pl, data["type"])()
    return dtype


def read_incremental(
    store: Store, project: str, name: str, spec: FileSource | SqlSource, project_dir: Path
) -> SourceRead:
    """Read the rows of source ``name`` above its watermark, merge them into its snapshot,
    persist both, and return the whole snapshot (``rejected``: this read's rejects)."""
    inc = _incremental_of(name, spec)
    state = _state(store, project, name)
    previous = _previous(name, inc, state)
    fresh = _read_new(name, spec, project_dir, inc.column, previous)
    new, nulls = _split_nulls(fresh.frame, inc.column)
    snapshot = _snapshot(store, state)
    merged, replaced = merge(snapshot, new, inc.column, _keys(name, inc, new, snapshot))
    watermark = Watermark.of(new[inc.column]) or previous
    expected = state.snapshot_sha256 if state else None
    sha256 = expected
    if state is None or new.height:
        sha256 = _persist(store, project, name, merged, inc.column, watermark, expected)
    summary = {
        "column": inc.column,
        "previous_watermark": previous.shown if previous else None,
        "watermark": watermark.shown if watermark else None,
        "new_rows": new.height,
        "replaced_rows": replaced,
        "snapshot_rows": merged.height,
        "snapshot_sha256": sha256,
    }
    rejected = pl.concat([fresh.rejected, nulls])
    return SourceRead(name, merged, rejected, {**fresh.fingerprint, "incremental": summary})


def reset_incremental(store: Store, project: str, name: str) -> bool:
    """Forget source ``name``'s watermark and snapshot: the next read starts over.

    Returns whether there was a state to forget. The snapshot blobs stay in the
    artifact store.
    """
    with store.session() as session:
        state = session.get(SourceState, (project, name))
        if state is not None:
            session.delete(state)
        return state is not None


def _incremental_of(name: str, spec: FileSource | SqlSource) -> Incremental:
    if spec.incremental is None:
        raise SourceError(
            f"source {name!r} is not incremental.",
            where=f"sources.{name}",
            hint="Set `incremental: {column: ...}`, or read it with read_source.",
        )
    return spec.incremental


def _state(store: Store, project: str, name: str) -> SourceState | None:
    with store.session() as session:
        return session.get(SourceState, (project, name))


def _previous(name: str, inc: Incremental, state: SourceState | None) -> Watermark | None:
    if state is None:
        return None
    stored = state.watermark.get("column")
    if stored != inc.column:
        raise SourceError(
            f"source {name!r}: the watermark column changed from {stored!r} to {inc.column!r}.",
            where=f"sources.{name}.incremental.column",
            hint="Restore the column, or reset the source's incremental state to read it all.",
        )
    return Watermark.from_json(state.watermark)


def _read_new(
    name: str,
    spec: FileSource | SqlSource,
    project_dir: Path,
    column: str,
    previous: Watermark | None,
) -> SourceRead:
    if isinstance(spec, SqlSource):
        from keelson.data.connectors.sql import read_sql

        since = None if previous is None else (column, previous.value)
        read = read_sql(name, spec, project_dir, since=since)
    else:
        read = read_source(name, spec, project_dir)
    if column not in read.frame.columns:
        raise SourceError(
            f"source {name!r}: the watermark column {column!r} is not among its columns "
            f"{read.frame.columns}.",
            where=f"sources.{name}.incremental.column",
            hint="Name a timestamp or increasing number the source has.",
        )
    dtype = read.frame.schema[column]
    _check_type(name, column, dtype, previous)
    if previous is None or isinstance(spec, SqlSource) or dtype == pl.Null:
        return read
    above = pl.col(column) > _literal(previous, dtype)
    newer = read.frame.filter(above | _missing(column, dtype))
    return SourceRead(name, newer, read.rejected, read.fingerprint)


def _check_type(name: str, column: str, dtype: pl.DataType, previous: Watermark | None) -> None:
    """The watermark column must be orderable, and keep the kind of type it had."""
    where = f"sources.{name}.incremental.column"
    if dtype == pl.Null:
        return  # only nulls this time: every row is rejected as null_watermark
    if not _orderable(dtype):
        raise SourceError(
            f"source {name!r}: the watermark column {column!r} is {dtype}; it must be an "
            "integer, a float, text, a date or a datetime.",
            where=where,
        )
    if previous is not None and not _comparable(previous.dtype, dtype):
        raise SourceError(
            f"source {name!r}: the watermark column {column!r} was {previous.dtype} and is now "
            f"{dtype}.",
            where=where,
            hint="Restore its type, or reset the source's incremental state to read it all.",
        )


def _orderable(dtype: pl.DataType) -> bool:
    kinds = dtype.is_integer() or dtype.is_float() or isinstance(dtype, pl.Datetime)
    return kinds or dtype in (pl.String, pl.Date)


def _comparable(before: pl.DataType, now: pl.DataType) -> bool:
    if before.is_numeric() and now.is_numeric():
        return True
    if isinstance(before, pl.Datetime) and isinstance(now, pl.Datetime):
        return (before.time_zone is None) == (now.time_zone is None)
    return before == now


def _literal(watermark: Watermark, dtype: pl.DataType) -> pl.Expr:
    """The watermark as a literal comparable with a column of ``dtype`` (same time unit
    and zone); numbers are compared as they are, never truncated."""
    literal = pl.lit(watermark.series).first()
    return literal.cast(dtype) if dtype.is_temporal() else literal


def _missing(column: str, dtype: pl.DataType) -> pl.Expr:
    missing = pl.col(column).is_null()
    return missing | pl.col(column).is_nan() if dtype.is_float() else missing


def _split_nulls(frame: pl.DataFrame, column: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Rows with a watermark, and rejected rows (with their values as JSON) without one."""
    missing = _missing(column, frame.schema[column])
    nulls = frame.filter(missing)
    rejected = nulls.select(
        pl.lit(None, pl.Int64).alias("_row"),
        pl.lit(NULL_WATERMARK).alias("_rule"),
        pl.lit(
            f"the watermark column {column!r} is null, so the row cannot be placed in time"
        ).alias("_reason"),
        pl.struct(pl.all()).struct.json_encode().alias("_raw"),
    )
    return frame.filter(~missing), rejected


def _keys(name: str, inc: Incremental, new: pl.DataFrame, snapshot: pl.DataFrame) -> list[str]:
    for frame in (new, snapshot):
        missing = [key for key in inc.keys if frame.width and key not in frame.columns]
        if missing:
            raise SourceError(
                f"source {name!r}: the key column(s) {missing} are not among its columns "
                f"{frame.columns}.",
                where=f"sources.{name}.incremental.keys",
            )
    return inc.keys


def merge(
    snapshot: pl.DataFrame, new: pl.DataFrame, column: str, keys: list[str]
) -> tuple[pl.DataFrame, int]:
    """Append ``new`` (in watermark order) to ``snapshot``; with ``keys``, the last row of
    each non-null key wins. Returns the merged rows and how many rows were replaced."""
    batch = new.sort(column, maintain_order=True)
    stacked = pl.concat([snapshot, batch], how="diagonal_relaxed")
    if not keys:
        return stacked, 0
    unknown = ~pl.all_horizontal(pl.col(key).is_not_null() for key in keys)
    last = pl.int_range(pl.len()).over(keys) == pl.len().over(keys) - 1
    merged = stacked.filter(unknown | last)
    return merged, stacked.height - merged.height


def _snapshot(store: Store, state: SourceState | None) -> pl.DataFrame:
    if state is None:
        return pl.DataFrame()
    return pl.read_parquet(io.BytesIO(store.artifacts.get(state.snapshot_sha256)))


def _parquet(frame: pl.DataFrame) -> bytes:
    import pyarrow.parquet as pq

    table = frame.to_arrow().replace_schema_metadata(
        {"keelson.format": f"{SNAPSHOT_KIND}/{SNAPSHOT_FORMAT}", "keelson.version": __version__}
    )
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def _persist(
    store: Store,
    project: str,
    name: str,
    frame: pl.DataFrame,
    column: str,
    watermark: Watermark | None,
    expected: str | None,
) -> str:
    """Write the snapshot blob, then its artifact row and the state in one transaction."""
    blob = store.artifacts.put(_parquet(frame))
    mark = watermark.to_json() if watermark else {"column": column, "value": None}
    with store.session() as session:
        state = session.get(SourceState, (project, name), with_for_update=True)
        if (state.snapshot_sha256 if state else None) != expected:
            raise SourceError(
                f"source {name!r}: another run updated its incremental snapshot meanwhile.",
                where=f"sources.{name}",
                hint="Run again; it will continue from the other run's watermark.",
            )
        if state is None:
            state = SourceState(project=project, source=name)
            session.add(state)
        state.watermark, state.snapshot_sha256, state.rows = mark, blob.sha256, frame.height
        state.updated_at = datetime.now(UTC)
        session.add(
            Artifact(
                run_id=None,
                kind=SNAPSHOT_KIND,
                uri=blob.uri,
                sha256=blob.sha256,
                bytes=blob.bytes,
                format="parquet",
            )
        )
    return blob.sha256
