"""File connectors: CSV, Parquet, JSON and JSONL from a local path or any fsspec URL.

``path`` is relative to the project folder, or a URL such as ``s3://bucket/key.csv``
read through fsspec with ``storage_options``. ``${VAR}`` in the path and in option values
comes from the environment (a URL is shown as written, so expanded values stay out of
messages and fingerprints); the option strings ``true``/``false`` become booleans.
The whole file is read once; its fingerprint is the SHA-256 of those bytes. A format is
one parse function (bytes in, rows and rejects out) wrapped by :func:`file_reader`.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from keelson.data.sources import (
    Connector,
    SourceRead,
    env_secrets,
    expand_env,
    first_line,
    mask_url,
    redact,
    rejects,
)
from keelson.errors import SourceError
from keelson.spec import FileSource

BOM = b"\xef\xbb\xbf"  # the UTF-8 byte-order mark
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


@dataclass(frozen=True)
class FileInput:
    """What a file parser gets: the source name, its spec, where it was read, its bytes."""

    name: str
    spec: FileSource
    location: str
    data: bytes

    def fail(self, message: str, hint: str | None = None) -> SourceError:
        return SourceError(f"source {self.name!r}: {message}", where=self.location, hint=hint)


Parser = Callable[[FileInput], tuple[pl.DataFrame, pl.DataFrame]]


def file_reader(parse: Parser) -> Connector:
    """A connector from a parser: loading, empty-file checks and fingerprints come for free."""

    def read(name: str, spec: FileSource, project_dir: Path) -> SourceRead:
        inp = load_file(name, spec, project_dir)
        frame, rejected = parse(inp)
        fingerprint = {
            "kind": spec.kind,
            "location": inp.location,
            "sha256": hashlib.sha256(inp.data).hexdigest(),
            "bytes": len(inp.data),
            "rows": frame.height + rejected.height,
        }
        return SourceRead(name, frame, rejected, fingerprint)

    return read


def load_file(name: str, spec: FileSource, project_dir: Path) -> FileInput:
    """Read the whole file, from disk or through fsspec; an empty file is an error."""
    raw = expand_env(spec.path, where=f"sources.{name}.path")
    if _URL.match(raw):
        location, data = mask_url(spec.path), _read_url(name, spec, raw)
    else:
        path = _local_path(raw, project_dir)
        location, data = path.as_posix(), _read_local(name, path, project_dir)
    inp = FileInput(name, spec, location, data)
    if not data:
        raise inp.fail("is empty (0 bytes).", hint="Point the source at a file with data.")
    return inp


def _local_path(raw: str, project_dir: Path) -> Path:
    path = Path(raw).expanduser()
    return (path if path.is_absolute() else project_dir / path).resolve()


def _read_local(name: str, path: Path, project_dir: Path) -> bytes:
    hint = f"Check `sources.{name}.path` in keelson.yaml (relative to {project_dir})."
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise SourceError(f"source {name!r}: file not found.", where=str(path), hint=hint) from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise SourceError(
            f"source {name!r}: cannot read: {reason}.", where=str(path), hint=hint
        ) from None


def storage_options(name: str, spec: FileSource) -> dict[str, Any]:
    """``spec.storage_options`` with ``${VAR}`` expanded and ``true``/``false`` as booleans."""
    options: dict[str, Any] = {}
    for key, raw in spec.storage_options.items():
        value = expand_env(raw, where=f"sources.{name}.storage_options.{key}")
        options[key] = {"true": True, "false": False}.get(value.lower(), value)
    return options


def _read_url(name: str, spec: FileSource, url: str) -> bytes:
    from fsspec.core import url_to_fs

    where = mask_url(spec.path)
    hint = f"Check `sources.{name}.path` and `sources.{name}.storage_options` in keelson.yaml."
    options = storage_options(name, spec)
    try:
        fs, path = url_to_fs(url, skip_instance_cache=True, **options)
        data: bytes = fs.cat_file(path)
    except FileNotFoundError:
        raise SourceError(f"source {name!r}: not found.", where=where, hint=hint) from None
    except Exception as exc:  # each fsspec backend (botocore, gcsfs, ...) has its own errors
        secrets = env_secrets([spec.path, *spec.storage_options.values()])
        reason = redact(f"{type(exc).__name__}: {first_line(exc)}", secrets)
        raise SourceError(
            f"source {name!r}: cannot read: {reason}", where=where, hint=hint
        ) from None
    return data


def utf8_text(inp: FileInput) -> bytes:
    """The file as valid UTF-8 bytes without a byte-order mark, decoding ``spec.encoding``."""
    try:
        codec = codecs.lookup(inp.spec.encoding).name
    except LookupError:
        raise inp.fail(
            f"unknown encoding {inp.spec.encoding!r}.",
            hint=f"Set `sources.{inp.name}.encoding` to a Python codec name such as latin-1.",
        ) from None
    try:
        text = inp.data.decode(codec)
    except UnicodeDecodeError as exc:
        raise _decode_error(inp, codec, exc) from None
    if codec == "utf-8":
        return inp.data.removeprefix(BOM)
    return text.removeprefix("\ufeff").encode("utf-8")


def _decode_error(inp: FileInput, codec: str, exc: UnicodeDecodeError) -> SourceError:
    line_start = inp.data.rfind(b"\n", 0, exc.start) + 1
    line = inp.data.count(b"\n", 0, exc.start) + 1
    return inp.fail(
        f"byte 0x{inp.data[exc.start]:02X} at line {line}, column {exc.start - line_start + 1} "
        f"(byte offset in the line) is not valid {codec}.",
        hint=f"Set `sources.{inp.name}.encoding` in keelson.yaml to the file's encoding "
        "(e.g. latin-1 or cp1252).",
    )


# --- CSV ---------------------------------------------------------------------


def parse_csv(inp: FileInput) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Every column read as text, ragged lines rejected, then types inferred safely."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    data = utf8_text(inp)
    names = csv_names(inp, data)
    bad: list[tuple[int, int, str]] = []

    def on_invalid(row: Any) -> str:
        bad.append((row.expected_columns, row.actual_columns, row.text))
        return "skip"

    try:
        table = pacsv.read_csv(io.BytesIO(data), **csv_options(inp, names, on_invalid))
    except pa.ArrowException as exc:
        raise inp.fail(f"is not readable as CSV: {first_line(exc)}") from None
    frame = pl.DataFrame(pl.from_arrow(table))
    if frame.height and data.count(inp.spec.quote.encode()) % 2:
        check_open_quote(inp, frame.row(-1, named=True), data.count(b"\n"))
    return infer_types(frame), ragged_rows(data, bad)


def csv_options(
    inp: FileInput,
    names: list[str],
    on_invalid: Callable[[Any], str],
    block_size: int | None = None,
) -> dict[str, Any]:
    """The Arrow CSV options: every column as text, ``on_invalid`` for ragged lines."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    spec = inp.spec
    return {
        "read_options": pacsv.ReadOptions(
            column_names=names, skip_rows=int(spec.has_header), block_size=block_size
        ),
        "parse_options": pacsv.ParseOptions(
            delimiter=spec.separator,
            quote_char=spec.quote,
            newlines_in_values=True,
            invalid_row_handler=on_invalid,
        ),
        "convert_options": pacsv.ConvertOptions(
            column_types=dict.fromkeys(names, pa.string()),
            null_values=spec.null_values,
            strings_can_be_null=True,
        ),
    }


def csv_names(inp: FileInput, data: bytes) -> list[str]:
    """The column names: ``spec.columns``, or those of the header line (checked unique)."""
    end = data.find(b"\n")
    first = (data if end < 0 else data[:end]).rstrip(b"\r").decode()
    if not first.strip():
        raise inp.fail("the first line is empty; expected the header or the first row.")
    fields = next(csv.reader([first], delimiter=inp.spec.separator, quotechar=inp.spec.quote))
    names = inp.spec.columns
    if names is not None and inp.spec.has_header and len(names) != len(fields):
        raise inp.fail(
            f"`columns` lists {len(names)} names but the header has {len(fields)} fields.",
            hint=f"Fix `sources.{inp.name}.columns` in keelson.yaml.",
        )
    if names is None:
        names = [
            (field if inp.spec.has_header else "") or f"column_{i}"
            for i, field in enumerate(fields, 1)
        ]
    seen: set[str] = set()
    for col in names:
        if col in seen:
            raise inp.fail(f"column {col!r} appears twice in the header; names must be unique.")
        seen.add(col)
    return names


def check_open_quote(inp: FileInput, last: Mapping[str, Any], newlines: int) -> None:
    """Raise when a value of the ``last`` parsed row spans lines (call it when the file has
    an odd number of quotes): an opening quote never closed swallowed the rest of the file."""
    quote = inp.spec.quote
    for col, value in last.items():
        if value is not None and "\n" in value:
            line = newlines - value.count("\n") + 1
            raise inp.fail(
                f"an unterminated quote ({quote}) in column {col!r} near line {line} runs to the "
                "end of the file.",
                hint=f"Close the quote, or double a quote inside a quoted field ({quote}{quote}).",
            )


def ragged_rows(data: bytes, bad: list[tuple[int, int, str]]) -> pl.DataFrame:
    """Rejected rows for ragged lines, with the 1-based line of each in the file."""
    if not bad:
        return rejects([])
    found = pl.DataFrame(
        {
            "_raw": [text for _, _, text in bad],
            "_reason": [f"expected {want} fields, got {got}" for want, got, _ in bad],
        }
    ).with_columns(_key=pl.col("_raw").str.split("\n").list.first().str.strip_suffix("\r"))
    lines = (
        pl.Series("_key", [data.decode()])
        .str.split("\n")
        .explode()
        .str.strip_suffix("\r")
        .to_frame()
        .with_row_index("_row", offset=1)
        .filter(pl.col("_key").is_in(found["_key"].unique().implode()))
    )
    nth = pl.int_range(pl.len()).over("_key").alias("_nth")
    located = found.with_columns(nth).join(lines.with_columns(nth), on=["_key", "_nth"], how="left")
    return located.select(
        pl.col("_row").cast(pl.Int64), pl.lit("ragged_row").alias("_rule"), "_reason", "_raw"
    ).sort("_row", nulls_last=True)


_INT = r"^[+-]?(0|[1-9][0-9]*)$"
_IDENTIFIER = r"^[+-]?0[0-9]|^[+-]?[0-9]{16,}$"  # "007", 20-digit ids: text, not numbers
_Cast = Callable[[pl.Expr], pl.Expr]
# A text column becomes the first kind whose check every non-null value passes: (check, cast).
_KINDS: dict[str, tuple[_Cast, _Cast]] = {
    "int": (
        lambda c: c.str.contains(_INT) & c.cast(pl.Int64, strict=False).is_not_null(),
        lambda c: c.cast(pl.Int64),
    ),
    "float": (
        lambda c: ~c.str.contains(_IDENTIFIER) & c.cast(pl.Float64, strict=False).is_not_null(),
        lambda c: c.cast(pl.Float64),
    ),
    "bool": (
        lambda c: c.str.to_lowercase().is_in(["true", "false"]),
        lambda c: c.str.to_lowercase() == "true",
    ),
}


def infer_types(frame: pl.DataFrame) -> pl.DataFrame:
    """Convert text columns to Int64, Float64 or Boolean when EVERY non-null value converts.

    Identifiers such as ``007`` or 20-digit numbers stay text, so no value is ever lost.
    Dates and timestamps stay text too; a contract's ``type`` parses them.
    """
    text = [c for c, t in frame.schema.items() if t == pl.String]
    if not text or frame.height == 0:
        return frame
    flags = frame.select(type_checks(text)).row(0, named=True)
    return frame.with_columns(inferred_casts(flags, text, frame.height))


def type_checks(text: Sequence[str]) -> list[pl.Expr]:
    """Aggregations over the ``text`` columns that :func:`inferred_casts` decides from."""
    return [
        *(pl.col(c).null_count().alias(f"{c}\x00nulls") for c in text),
        *(
            (pl.col(c).is_null() | check(pl.col(c))).all().alias(f"{c}\x00{kind}")
            for c in text
            for kind, (check, _) in _KINDS.items()
        ),
    ]


def inferred_casts(flags: Mapping[str, Any], text: Sequence[str], rows: int) -> list[pl.Expr]:
    """The casts of the ``text`` columns, from the values of :func:`type_checks` on ``rows``."""
    casts = []
    for col in text:
        kind = next((k for k in _KINDS if flags[f"{col}\x00{k}"]), None)
        if flags[f"{col}\x00nulls"] < rows and kind is not None:
            casts.append(_KINDS[kind][1](pl.col(col)))
    return casts


# --- Parquet and JSON ----------------------------------------------------------


def parse_parquet(inp: FileInput) -> tuple[pl.DataFrame, pl.DataFrame]:
    try:
        return pl.read_parquet(io.BytesIO(inp.data)), rejects([])
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise inp.fail(f"is not a valid Parquet file: {first_line(exc)}") from None


def parse_json(inp: FileInput) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A top-level JSON array of objects."""
    data = utf8_text(inp)
    if not re.match(rb"\s*\[", data):
        raise inp.fail(
            "expected a JSON array of objects ([{...}, ...]).",
            hint=f"For one object per line set `sources.{inp.name}.kind: jsonl`.",
        )
    try:
        return pl.read_json(io.BytesIO(data), infer_schema_length=None), rejects([])
    except pl.exceptions.PolarsError as exc:
        raise inp.fail(_json_problem(data, exc)) from None


def _json_problem(data: bytes, exc: Exception) -> str:
    try:
        items = json.loads(data)
    except json.JSONDecodeError as bad:
        return f"invalid JSON at line {bad.lineno}, column {bad.colno}: {bad.msg}."
    kinds = {type(item).__name__ for item in items if not isinstance(item, dict)}
    if kinds:
        return f"every element of the array must be an object; found {sorted(kinds)}."
    return f"cannot be read as a table: {first_line(exc)}."


def parse_jsonl(inp: FileInput) -> tuple[pl.DataFrame, pl.DataFrame]:
    """One JSON object per line; a line that is not one is rejected as ``bad_json``."""
    data = utf8_text(inp)
    try:
        return _read_ndjson(data), rejects([])
    except pl.exceptions.PolarsError:
        pass  # slow path below: find the bad lines, read the good ones
    good: list[str] = []
    bad: list[tuple[int | None, str, str, str]] = []
    for number, line in enumerate(data.decode().split("\n"), 1):
        problem = _jsonl_problem(line)
        if problem is None:
            good.append(line)
        else:
            bad.append((number, "bad_json", problem, line.removesuffix("\r")))
    try:
        return _read_ndjson("\n".join(good).encode()), rejects(bad)
    except pl.exceptions.PolarsError as exc:
        raise inp.fail(f"cannot be read as a table: {first_line(exc)}.") from None


def _read_ndjson(data: bytes) -> pl.DataFrame:
    if not data.strip():
        return pl.DataFrame()
    return pl.read_ndjson(io.BytesIO(data), infer_schema_length=None)


def _jsonl_problem(line: str) -> str | None:
    """Why a JSONL line is bad, or None when it is an object (or blank)."""
    if not line.strip():
        return None
    try:
        value = json.loads(line)
    except json.JSONDecodeError as exc:
        return f"invalid JSON at column {exc.colno}: {exc.msg}"
    return None if isinstance(value, dict) else f"a JSON {type(value).__name__}, not an object"


read_csv = file_reader(parse_csv)
_read_parquet_file = file_reader(parse_parquet)


def read_parquet(name: str, spec: FileSource, project_dir: Path) -> SourceRead:
    """One Parquet file, or every partition of a directory or glob in path order."""
    from keelson.data.executor import is_partitioned, read_partitioned_source

    if is_partitioned(spec, project_dir):
        return read_partitioned_source(name, spec, project_dir)
    return _read_parquet_file(name, spec, project_dir)


read_json = file_reader(parse_json)
read_jsonl = file_reader(parse_jsonl)
