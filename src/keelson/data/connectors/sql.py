"""SQL connector: a query through SQLAlchemy (SQLite, PostgreSQL, MariaDB/MySQL).

The URL may use ``${VAR}`` from the environment; a relative SQLite path is resolved
against the project folder; ``postgresql://`` uses psycopg 3 and ``mysql://`` or
``mariadb://`` use PyMySQL. Passwords are masked in every message and fingerprint.

Column types come from the database cursor, so an empty or all-null column keeps its
type: integers → Int64; floating point, and DECIMAL/NUMERIC of up to 15 digits or
undeclared precision → Float64 (a wider declared DECIMAL stays Decimal, losing no
digit); text → String; DATE → Date; TIMESTAMP/DATETIME → Datetime(us); PostgreSQL
TIMESTAMPTZ → Datetime(us, UTC); BOOLEAN → Boolean (MySQL's BOOLEAN is TINYINT(1) and
stays Int64). SQLite reports no types, so Polars infers them from the values. Values
Polars can only hold as Python objects (UUID, network addresses) become text.
"""

from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path
from typing import Any

import polars as pl

from keelson.data.sources import (
    SourceRead,
    env_secrets,
    expand_env,
    first_line,
    mask_url,
    redact,
    rejects,
)
from keelson.errors import SourceError
from keelson.spec import SqlSource

_DRIVERS = {
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mariadb": "mysql+pymysql",
}
_FLOAT_DIGITS = 15  # a DECIMAL with more significant digits than this stays Decimal
_DATETIME_UTC = pl.Datetime("us", "UTC")
_PG_TYPES: dict[int, pl.DataType] = {
    16: pl.Boolean(),
    **dict.fromkeys((20, 21, 23, 26), pl.Int64()),
    **dict.fromkeys((700, 701), pl.Float64()),
    **dict.fromkeys((18, 19, 25, 1042, 1043), pl.String()),
    1082: pl.Date(),
    1114: pl.Datetime("us"),
    1184: _DATETIME_UTC,
}
_PG_NUMERIC = 1700
_MYSQL_TYPES: dict[int, pl.DataType] = {
    **dict.fromkeys((1, 2, 3, 8, 9, 13), pl.Int64()),
    **dict.fromkeys((4, 5), pl.Float64()),
    **dict.fromkeys((7, 12), pl.Datetime("us")),
    **dict.fromkeys((10, 14), pl.Date()),
    **dict.fromkeys((15, 247, 248, 253, 254), pl.String()),
}
_MYSQL_DECIMAL = (0, 246)
_BIND = re.compile(r"(?<![:\w\\]):(?=\w)")  # a ":name" SQLAlchemy would take for a parameter


def read_sql(
    name: str, spec: SqlSource, project_dir: Path, *, since: tuple[str, Any] | None = None
) -> SourceRead:
    """Run ``spec.query``; with ``since=(column, value)`` only rows where ``column > value``
    or ``column IS NULL`` (the filter runs in the database)."""
    import sqlalchemy as sa

    url = database_url(name, spec.url, project_dir)
    where = masked(url)
    secrets = [*env_secrets([spec.url]), *([url.password] if url.password else [])]
    try:
        engine = sa.create_engine(url, connect_args=_connect_args(url))
    except (sa.exc.SQLAlchemyError, ImportError) as exc:
        reason = f"cannot use this database URL: {redact(first_line(exc), secrets)}"
        raise _failure(name, reason, where) from None
    statement, params = _statement(spec.query, engine.dialect, since)
    try:
        frame = _fetch(name, engine, statement, params, where)
    except sa.exc.SQLAlchemyError as exc:
        cause = getattr(exc, "orig", None) or exc
        message = f"the database said: {redact(first_line(cause), secrets)}"
        raise _failure(name, message, where) from None
    finally:
        engine.dispose()
    return SourceRead(name, frame, rejects([]), _fingerprint(spec.query, where, since, frame))


def database_url(name: str, raw: str, project_dir: Path) -> Any:
    """Expand ``${VAR}``, parse, pick the drivers, resolve a relative SQLite file."""
    import sqlalchemy as sa

    try:
        url = sa.engine.make_url(expand_env(raw, where=f"sources.{name}.url"))
    except sa.exc.ArgumentError:
        raise SourceError(
            f"source {name!r}: not a SQLAlchemy database URL.",
            where=f"sources.{name}.url",
            hint="Use e.g. sqlite:///data/x.db, postgresql://user@host/db or mysql://user@host/db.",
        ) from None
    if url.drivername in _DRIVERS:
        return url.set(drivername=_DRIVERS[url.drivername])
    if url.get_backend_name() != "sqlite" or url.database in {None, "", ":memory:"}:
        return url
    return url.set(database=str(_sqlite_file(name, url.database or "", project_dir)))


def _sqlite_file(name: str, database: str, project_dir: Path) -> Path:
    path = Path(database)
    path = path if path.is_absolute() else (project_dir / path).resolve()
    if not path.is_file():
        raise SourceError(
            f"source {name!r}: SQLite database file not found.",
            where=str(path),
            hint=f"Check `sources.{name}.url` in keelson.yaml (relative to {project_dir}).",
        )
    return path


def masked(url: Any) -> str:
    """The URL as text with its password (and secret-looking query values) masked."""
    return mask_url(url.render_as_string(hide_password=True))


def _connect_args(url: Any) -> dict[str, Any]:
    """Fail fast on an unreachable server unless the URL sets its own timeout."""
    if url.get_backend_name() == "postgresql" and "connect_timeout" not in url.query:
        return {"connect_timeout": 10}
    return {}


def _statement(query: str, dialect: Any, since: tuple[str, Any] | None) -> tuple[Any, dict]:
    """The query as a SQLAlchemy text clause (its own colons kept verbatim), filtered by
    ``since`` as a subquery with a bound ``:watermark``."""
    import sqlalchemy as sa

    verbatim = _BIND.sub(r"\\:", query.strip().rstrip(";").rstrip())
    if since is None:
        return sa.text(verbatim), {}
    column = dialect.identifier_preparer.quote_identifier(since[0])
    filtered = f"SELECT * FROM ({verbatim}) AS src WHERE {column} > :watermark OR {column} IS NULL"
    return sa.text(filtered), {"watermark": since[1]}


def _fetch(name: str, engine: Any, statement: Any, params: dict, where: str) -> pl.DataFrame:
    with engine.connect() as conn:
        result = conn.execute(statement, params)
        names = list(result.keys())
        types = column_types(engine.dialect.name, result.cursor.description)
        rows = result.fetchall()
    twice = sorted({col for col in names if names.count(col) > 1})
    if twice:
        raise _failure(
            name,
            f"the query returns the column(s) {twice} more than once.",
            where,
            hint="Give every column of the query a unique name (SELECT a.id AS a_id, ...).",
        )
    try:
        frame = pl.DataFrame(
            rows, schema=names, schema_overrides=types, orient="row", infer_schema_length=None
        )
    except (pl.exceptions.PolarsError, pl.exceptions.PanicException, TypeError, ValueError) as exc:
        raise _failure(
            name,
            f"the result cannot be read as a table: {first_line(exc)}.",
            where,
            hint="CAST unusual types or values (NaN decimals, ranges, ...) in the query.",
        ) from None
    return _objects_as_text(frame)


def _objects_as_text(frame: pl.DataFrame) -> pl.DataFrame:
    """Values Polars keeps as Python objects (UUID, network addresses) become their text."""
    objects = [col for col, dtype in frame.schema.items() if dtype == pl.Object]
    return frame.with_columns(
        pl.Series(col, [None if v is None else str(v) for v in frame[col]], pl.String)
        for col in objects
    )


def column_types(dialect: str, description: Any) -> dict[str, pl.DataType]:
    """Polars types for the columns the DB-API cursor describes (PostgreSQL, MySQL)."""
    types: dict[str, pl.DataType] = {}
    for column in description or ():
        name, code, precision = column[0], column[1], column[4]
        if dialect == "postgresql":
            dtype = _pg_type(code, precision)
        elif dialect in {"mysql", "mariadb"}:
            dtype = _mysql_type(code, precision, column[5])
        else:
            dtype = None
        if dtype is not None:
            types[name] = dtype
    return types


def _pg_type(code: int, precision: int | None) -> pl.DataType | None:
    if code == _PG_NUMERIC:
        return pl.Float64() if precision is None or precision <= _FLOAT_DIGITS else None
    return _PG_TYPES.get(code)


def _mysql_type(code: int, precision: int | None, scale: int | None) -> pl.DataType | None:
    if code in _MYSQL_DECIMAL:  # the reported precision counts the sign and the point
        digits = (precision or 0) - 1 - (1 if scale else 0)
        return pl.Float64() if digits <= _FLOAT_DIGITS else None
    return _MYSQL_TYPES.get(code)


def _fingerprint(
    query: str, where: str, since: tuple[str, Any] | None, frame: pl.DataFrame
) -> dict[str, Any]:
    head = f"{query}\n{where}\n" + (f"{since[0]} > {since[1]!r}\n" if since else "")
    digest = hashlib.sha256(head.encode())
    buffer = io.BytesIO()
    frame.write_ipc(buffer, compression="uncompressed")
    digest.update(buffer.getvalue())
    return {"kind": "sql", "location": where, "sha256": digest.hexdigest(), "rows": frame.height}


def _failure(name: str, message: str, where: str, hint: str | None = None) -> SourceError:
    return SourceError(
        f"source {name!r}: {message}",
        where=where,
        hint=hint or f"Check `sources.{name}.url` and `sources.{name}.query` in keelson.yaml.",
    )
