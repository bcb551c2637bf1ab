"""Conformance kit for connectors: every backend reads the same table the same way.

A backend is the ``REFERENCE`` table written where a connector reads it, with the
source spec that reads it and a spec for a source that is missing or unreachable
(:class:`Backend`). ``test_conformance.py`` runs :func:`check_reads_reference` and
:func:`check_missing_source` on every backend; a new connector adds one backend fixture
there (and its name to ``BACKENDS``), using the writers below.

Normalisation (:func:`normalise`): backends differ in how they carry types, not values.
Text dates and datetimes (CSV, JSON, SQLite) are parsed as ISO 8601, integers 0/1 read
as booleans (SQLite, MySQL's TINYINT(1)), decimals read as floats; after that cast to
the reference types, every value must be exactly the reference's.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from keelson.data.sources import SourceRead, read_source
from keelson.errors import SourceError
from keelson.spec import Source

REFERENCE = pl.DataFrame(
    {
        "id": [1, 2, 3, 4, 5],
        "amount": [1.5, None, -2.25, 0.1, None],
        "label": ["plain", "comma, inside", "ünïcødé ✓ 東京", 'a "quoted" word', None],
        "day": [date(2024, 1, 2), date(1999, 12, 31), None, date(2024, 2, 29), date(2000, 1, 1)],
        "at": [
            datetime(2024, 1, 2, 3, 4, 5, 123456),
            datetime(2024, 1, 2, 3, 4, 5),
            datetime(1999, 12, 31, 23, 59, 59),
            None,
            datetime(2000, 1, 1),
        ],
        "flag": [True, False, None, True, False],
    },
    schema={
        "id": pl.Int64,
        "amount": pl.Float64,
        "label": pl.String,
        "day": pl.Date,
        "at": pl.Datetime("us"),
        "flag": pl.Boolean,
    },
)


@dataclass(frozen=True)
class Backend:
    """Where a connector reads REFERENCE from, and a source of it that cannot be read."""

    kind: str
    spec: Source
    project_dir: Path
    missing: Source


# --- writers -------------------------------------------------------------------------


def reference_csv() -> bytes:
    return REFERENCE.write_csv().encode()


def reference_parquet() -> bytes:
    buffer = io.BytesIO()
    REFERENCE.write_parquet(buffer)
    return buffer.getvalue()


def reference_jsonl() -> bytes:
    return REFERENCE.write_ndjson().encode()


def reference_records() -> list[dict[str, Any]]:
    """The rows as JSON objects (dates and datetimes as ISO text), as an API sends them."""
    records: list[dict[str, Any]] = json.loads(REFERENCE.write_json())
    return records


def write_sql_table(url: str, table: str) -> None:
    """Create ``table`` with column types native to the database and insert REFERENCE."""
    import sqlalchemy as sa
    from sqlalchemy.dialects import mysql

    engine = sa.create_engine(url)
    columns = sa.Table(
        table,
        sa.MetaData(),
        sa.Column("id", sa.Integer),
        sa.Column("amount", sa.Double),
        sa.Column("label", sa.String(100)),
        sa.Column("day", sa.Date),
        sa.Column("at", sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")),
        sa.Column("flag", sa.Boolean),
        mysql_charset="utf8mb4",
    )
    with engine.begin() as conn:
        columns.create(conn)
        conn.execute(columns.insert(), REFERENCE.to_dicts())
    engine.dispose()


# --- checks --------------------------------------------------------------------------


def normalise(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` cast to REFERENCE's types (see the module docstring), sorted by id."""
    casts = []
    for column, dtype in REFERENCE.schema.items():
        value = pl.col(column)
        if frame.schema[column] == pl.String and dtype == pl.Date:
            value = value.str.to_date("%Y-%m-%d")
        elif frame.schema[column] == pl.String and dtype == pl.Datetime:
            value = value.str.to_datetime(time_unit="us")
        casts.append(value.cast(dtype, strict=True))
    return frame.select(casts).sort("id")


def check_reads_reference(backend: Backend, name: str = "reference") -> SourceRead:
    """Same columns in the same order, same values, rows_in, a stable SHA-256 fingerprint."""
    read = read_source(name, backend.spec, backend.project_dir)
    assert read.name == name
    assert read.frame.columns == REFERENCE.columns
    assert_frame_equal(normalise(read.frame), REFERENCE)
    assert read.rejected.height == 0
    assert read.rows_in == REFERENCE.height
    assert read.fingerprint["kind"] == backend.kind
    assert read.fingerprint["rows"] == REFERENCE.height
    assert re.fullmatch(r"[0-9a-f]{64}", read.fingerprint["sha256"])
    again = read_source(name, backend.spec, backend.project_dir)
    assert again.fingerprint == read.fingerprint
    return read


def check_missing_source(backend: Backend, name: str = "absent_source") -> SourceError:
    """A source that does not exist or cannot be reached: a SourceError naming it."""
    with pytest.raises(SourceError) as error:
        read_source(name, backend.missing, backend.project_dir)
    assert repr(name) in str(error.value)
    return error.value
