"""Validate a file bigger than memory: lazy scans, the Polars streaming engine, Parquet sinks.

:func:`validate_streaming` never holds the table. It scans the file lazily, judges it in
passes (:func:`keelson.data.executor.judge`: row rules on the stream; exact duplicates and
unique keys through the hash of each row's key and the few rows that share one) and
*sinks* the kept rows and the quarantined rows to Parquet files. Besides the rows the
Polars streaming engine has in flight, it holds 8 bytes a row for key hashes, the rows
found to share a hash, the first failing rows of each rule (for examples) and the lines a
CSV parser rejects; never the rows of the table.

A CSV file is parsed in batches by the same Arrow reader and options as the in-memory
connector (every column as text, ragged lines rejected), staged as Parquet next to the
outputs, and its column types are inferred with one streaming aggregation, as the
connector does in memory. The result is the one :func:`~keelson.data.contracts.validate`
gives on the whole file: the same kept rows in the same order, the same quarantine.
"""

from __future__ import annotations

import codecs
import tempfile
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from keelson import __version__
from keelson.data.connectors.files import (
    BOM,
    FileInput,
    check_open_quote,
    csv_names,
    csv_options,
    inferred_casts,
    ragged_rows,
    type_checks,
)
from keelson.data.contracts import (
    META_COLUMNS,
    QUARANTINE_FORMAT,
    ROW,
    Finding,
    FindingsMixin,
    Validation,
    freshness,
    rejected_rows,
    row_count,
    timestamps,
)
from keelson.data.executor import Judged, LazyPieces, judge
from keelson.data.sources import first_line, rejects
from keelson.errors import SourceError
from keelson.spec import Contract, FileSource, Freshness

KINDS = ("csv", "parquet")
_CHUNK = 1 << 20  # bytes read at a time when a CSV file is scanned for quotes and newlines
_BLOCK = 8 << 20  # bytes of CSV parsed per batch


@dataclass(frozen=True)
class StreamedValidation(FindingsMixin):
    """The outcome of validating one file bigger than memory: two Parquet files and counts.

    ``kept_path`` holds the kept rows (the columns of ``Validation.kept``);
    ``quarantine_path`` the quarantined rows in the layout of
    :func:`~keelson.data.contracts.write_quarantine` (``_source`` first).
    """

    source: str
    kept_path: Path
    quarantine_path: Path
    rows_in: int
    kept: int
    quarantined: int
    removed: int = 0
    findings: list[Finding] = field(default_factory=list)
    schema_changes: list[dict[str, str]] = field(default_factory=list)

    def outline(self) -> Validation:
        """A :class:`Validation` without the rows: ``kept`` is a frame of no columns (its
        height is the kept count), ``quarantined`` only the bookkeeping columns. Enough for
        ``summary()`` and :func:`~keelson.data.contracts.enforce`."""
        quarantined = pl.read_parquet(self.quarantine_path, columns=list(META_COLUMNS))
        return Validation(
            source=self.source,
            kept=pl.DataFrame(height=self.kept),
            quarantined=quarantined,
            rows_in=self.rows_in,
            removed=self.removed,
            findings=self.findings,
            schema_changes=self.schema_changes,
        )

    def summary(self) -> dict[str, Any]:
        """The same account as ``Validation.summary()``."""
        return self.outline().summary()


@dataclass(frozen=True)
class _Scanned:
    """A file as a lazy frame of its parsed rows, and the rows its parser rejected."""

    frame: pl.LazyFrame
    rejected: pl.DataFrame


def validate_streaming(
    path: Path | str,
    kind: str,
    contract: Contract | None,
    out_dir: Path,
    *,
    source: str,
    options: FileSource | None = None,
    references: Mapping[str, pl.DataFrame] | None = None,
    now: datetime | None = None,
) -> StreamedValidation:
    """Validate a CSV or Parquet file without loading it; sink kept and quarantined rows.

    Writes ``<source>.kept.parquet`` and ``<source>.quarantine.parquet`` in ``out_dir``
    (atomically). ``options`` are the CSV options of the source (separator, quote, header,
    column names, null values; UTF-8 only); ``references`` the kept rows of the sources
    the contract references (only their key columns are used); ``now`` the reference
    time for freshness.
    """
    contract = contract if contract is not None else Contract()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".keelson-stream-", dir=out_dir) as scratch:
        scanned = _scan(Path(path), kind, source, options, Path(scratch))
        numbered = scanned.frame.with_row_index(ROW, offset=1).with_columns(
            pl.col(ROW).cast(pl.Int64)
        )
        schema = scanned.frame.collect_schema()
        judged = judge(LazyPieces(numbered), schema, contract, source=source, references=references)
        kept = _lazy(judged).pipe(judged.routing.kept)
        fresh = _streamed_freshness(kept, judged, contract.freshness, now)
        kept_path, quarantine_path = _sink(judged, scanned, out_dir, source)
        rows_in = _count(numbered) + scanned.rejected.height
    return StreamedValidation(
        source=source,
        kept_path=kept_path,
        quarantine_path=quarantine_path,
        rows_in=rows_in,
        kept=_count(pl.scan_parquet(kept_path)),
        quarantined=_count(pl.scan_parquet(quarantine_path)),
        removed=judged.outcome.removed,
        findings=judged.findings(fresh, row_count(source, rows_in, contract.rows)),
        schema_changes=judged.schema_changes,
    )


def _lazy(judged: Judged) -> pl.LazyFrame:
    """The judged table as one lazy plan (``judge`` keeps the kind of pieces it is given)."""
    assert isinstance(judged.pieces, LazyPieces)
    return judged.pieces.frame


def _count(frame: pl.LazyFrame) -> int:
    return int(frame.select(pl.len()).collect(engine="streaming").item())


# --- outputs ---------------------------------------------------------------------------


def _sink(judged: Judged, scanned: _Scanned, out_dir: Path, source: str) -> tuple[Path, Path]:
    """Write the kept and the quarantined rows to Parquet files, atomically."""
    frame = _lazy(judged)
    unparsed = rejected_rows(scanned.rejected, scanned.frame.collect_schema().names())
    quarantined = pl.concat([judged.routing.quarantined(frame), unparsed.lazy()]).select(
        pl.lit(source).alias("_source"), *META_COLUMNS, pl.exclude(*META_COLUMNS)
    )
    kept_path = out_dir / f"{source}.kept.parquet"
    quarantine_path = out_dir / f"{source}.quarantine.parquet"
    stamp = {"keelson.version": __version__, "keelson.source": source}
    _sink_atomically(
        {
            kept_path: (judged.routing.kept(frame), stamp),
            quarantine_path: (
                quarantined,
                stamp | {"keelson.format": f"quarantine/{QUARANTINE_FORMAT}"},
            ),
        }
    )
    return kept_path, quarantine_path


def _sink_atomically(plans: Mapping[Path, tuple[pl.LazyFrame, dict[str, str]]]) -> None:
    """Run each plan into a temporary file (synced), then rename each to its path.

    One streaming run per plan: run together, the plans would share the scan and buffer
    whatever one sink reads ahead of the other.
    """
    temps = {path: path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp") for path in plans}
    try:
        for path, (plan, stamp) in plans.items():
            arrow = pl.DataFrame(schema=plan.collect_schema()).to_arrow().schema
            plan.sink_parquet(
                temps[path],
                arrow_schema=arrow.with_metadata(stamp),  # read back as the schema's metadata
                sync_on_close="all",
                engine="streaming",
            )
        for path, temp in temps.items():
            temp.replace(path)
    except BaseException:
        for temp in temps.values():
            temp.unlink(missing_ok=True)
        raise


def _streamed_freshness(
    kept: pl.LazyFrame, judged: Judged, rule: Freshness | None, now: datetime | None
) -> Finding | None:
    """The freshness rule on the kept rows: the newest value by a streaming aggregation."""
    if rule is None:
        return None
    empty = pl.DataFrame(schema=kept.collect_schema())
    if rule.column not in empty.columns:
        return freshness(empty, judged.compiled, rule, now)  # missing, or a ContractError
    values = timestamps(empty, rule.column, f"contracts.{judged.compiled.source}.freshness")
    newest = kept.select(values.max().alias(rule.column)).collect(engine="streaming")
    return freshness(newest, judged.compiled, rule, now)


# --- inputs ----------------------------------------------------------------------------


def _scan(
    path: Path, kind: str, source: str, options: FileSource | None, scratch: Path
) -> _Scanned:
    if kind not in KINDS:
        raise SourceError(
            f"source {source!r}: streaming validation reads {' or '.join(KINDS)} files, "
            f"not {kind}.",
            where=path.as_posix(),
            hint="Validate this source in memory, or convert it to Parquet.",
        )
    _check_file(path, source)
    if kind == "csv":
        return _scan_csv(path, source, options or FileSource(kind="csv", path=str(path)), scratch)
    frame = pl.scan_parquet(path)
    try:
        frame.collect_schema()
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise SourceError(
            f"source {source!r}: is not a valid Parquet file: {first_line(exc)}",
            where=path.as_posix(),
        ) from None
    return _Scanned(frame, rejects([]))


def _check_file(path: Path, source: str) -> None:
    if not path.is_file():
        raise SourceError(
            f"source {source!r}: file not found.",
            where=path.as_posix(),
            hint="Check the path of the file to validate.",
        )
    if path.stat().st_size == 0:
        raise SourceError(
            f"source {source!r}: is empty (0 bytes).",
            where=path.as_posix(),
            hint="Point the source at a file with data.",
        )


# --- CSV ---------------------------------------------------------------------------------


def _scan_csv(path: Path, source: str, spec: FileSource, scratch: Path) -> _Scanned:
    """Parse in batches as the CSV connector does, stage as Parquet, infer the types."""
    inp = _header(path, source, spec)
    names = csv_names(inp, inp.data)
    staged, ragged, last = _stage_csv(path, inp, names, scratch / "staged.parquet")
    if last is not None:
        _check_quotes(inp, path, last)
    frame = pl.scan_parquet(staged)
    return _Scanned(frame.with_columns(_inferred_types(frame)), _ragged_lines(path, ragged))


def _header(path: Path, source: str, spec: FileSource) -> FileInput:
    """The file's first line, as a :class:`FileInput` for the connector's header checks."""
    inp = FileInput(source, spec, path.as_posix(), b"")
    try:
        codec = codecs.lookup(spec.encoding).name
    except LookupError:
        codec = spec.encoding
    if codec != "utf-8":
        raise inp.fail(
            f"streaming validation reads UTF-8 text; the source's encoding is {spec.encoding}.",
            hint=f"Convert the file to UTF-8 (iconv -f {spec.encoding} -t utf-8), or validate "
            "it in memory.",
        )
    with path.open("rb") as stream:
        first = stream.readline().removeprefix(BOM)
    return FileInput(source, spec, inp.location, first)


def _stage_csv(
    path: Path, inp: FileInput, names: list[str], staged: Path
) -> tuple[Path, list[tuple[int, int, str]], dict[str, Any] | None]:
    """Every column as text into a Parquet file, batch by batch; ragged lines set aside.

    Returns the staged file, the ragged lines and the last parsed row (None: no rows).
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    ragged: list[tuple[int, int, str]] = []

    def on_invalid(row: Any) -> str:
        ragged.append((row.expected_columns, row.actual_columns, row.text))
        return "skip"

    last = None
    try:
        reader = pacsv.open_csv(path, **csv_options(inp, names, on_invalid, _BLOCK))
        with pq.ParquetWriter(staged, reader.schema) as writer:
            for batch in reader:  # one iteration per batch of rows
                writer.write_batch(batch)
                last = batch.slice(batch.num_rows - 1).to_pylist()[0] if batch.num_rows else last
    except pa.ArrowException as exc:
        raise inp.fail(f"is not readable as CSV: {first_line(exc)}") from None
    return staged, ragged, last


def _check_quotes(inp: FileInput, path: Path, last: dict[str, Any]) -> None:
    """An opening quote never closed swallows the rest of the file: say so, as in memory."""
    quotes = newlines = 0
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(_CHUNK), b""):
            quotes += chunk.count(inp.spec.quote.encode())
            newlines += chunk.count(b"\n")
    if quotes % 2:
        check_open_quote(inp, last, newlines)


def _ragged_lines(path: Path, ragged: list[tuple[int, int, str]]) -> pl.DataFrame:
    """Rejected rows for the ragged lines, with their line numbers in the file.

    A streaming scan of the lines picks those that start a ragged row; the connector's
    own matching numbers the rows among the picked lines, mapped back to the file's lines.
    """
    if not ragged:
        return rejects([])
    firsts = pl.Series([text.split("\n")[0].removesuffix("\r") for _, _, text in ragged])
    line = pl.col("_line").str.strip_suffix("\r")
    lines = (
        pl.scan_lines(path, name="_line")
        .with_row_index("_at", offset=1)
        .with_columns(
            pl.when(pl.col("_at") == 1).then(line.str.strip_prefix("\ufeff")).otherwise(line)
        )
        .filter(pl.col("_line").is_in(firsts.unique().implode()))
        .collect(engine="streaming")
        .with_row_index("_picked", offset=1)
    )
    numbered = ragged_rows("\n".join(lines["_line"].to_list()).encode(), ragged)
    at = lines.select(pl.col("_picked").cast(pl.Int64).alias("_row"), pl.col("_at").cast(pl.Int64))
    located = numbered.join(at, on="_row", how="left", maintain_order="left")
    return located.select(pl.col("_at").alias("_row"), "_rule", "_reason", "_raw")


def _inferred_types(frame: pl.LazyFrame) -> list[pl.Expr]:
    """The casts the connector's type inference makes, decided by one streaming pass."""
    text = [c for c, t in frame.collect_schema().items() if t == pl.String]
    if not text:
        return []
    flags = (
        frame.select(pl.len().alias("\x00rows"), *type_checks(text))
        .collect(engine="streaming")
        .row(0, named=True)
    )
    if flags["\x00rows"] == 0:
        return []
    return inferred_casts(flags, text, flags["\x00rows"])
