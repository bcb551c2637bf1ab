"""Where validation runs: one lazy plan, or the partitions of a dataset on a Dask cluster.

A table is validated as a sequence of *pieces* in row order. Row rules run on each piece
where it lives; the rules that need the whole table run in passes that bring only small
results back to the driver:

- exact duplicates and unique keys: each piece sends the hash of each row's key (8 bytes
  a row); only the rows whose hash repeats (the candidates) come back, and the code of
  :mod:`keelson.data.contracts` compares them exactly (the first occurrence in row order
  wins, as in :func:`~keelson.data.contracts.validate`);
- row rules: counts are summed; examples come from the first failing rows of each piece;
- retyped columns (``retyped: adopt``): the hash of each failing value, then the first
  distinct ones read back as examples.

:class:`LazyPieces` is one lazy plan run by the Polars streaming engine
(:mod:`keelson.data.streaming`); :class:`DaskPieces` are Parquet partitions held by the
workers of a Dask cluster (:func:`validate_partitioned`). Either way the kept rows, the
quarantine and the findings equal what ``validate`` gives on the whole table in memory.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

import polars as pl

from keelson.data.contracts import (
    EXAMPLES,
    ROW,
    SCANNED,
    Finding,
    Outcome,
    Validation,
    check_reserved,
    exact_duplicates,
    find_repeats,
    freshness,
    quarantine_duplicate_keys,
    quarantine_rows,
    row_count,
    row_findings,
    schema_changes,
    verdict,
)
from keelson.data.rules import (
    CompiledRules,
    RowRule,
    as_text,
    compile_rules,
    conversion_failures,
    key_value,
    mask_name,
    raw_name,
    retype_candidates,
)
from keelson.data.sources import SourceRead, expand_env, first_line, mask_url, rejects
from keelson.errors import KeelsonError, SourceError
from keelson.spec import Contract, Execution, FileSource, ProjectSpec

if TYPE_CHECKING:
    from distributed import Client, Future
    from fsspec import AbstractFileSystem

_HASH = "\x00hash"
_VERDICT = {meta: f"\x00{meta}" for meta in ("_rule", "_column", "_reason")}
_GLOB = re.compile(r"[*?\[]")
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
# Each Dask worker process runs one task at a time with one Polars thread: scale with
# processes, not threads (see DESIGN.md, "Pin intra-op threads").
_PINNED = {"POLARS_MAX_THREADS": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}

Step = Callable[..., pl.LazyFrame]
Adopted = dict[str, tuple[int, list[str | None]]]


class Pieces(Protocol):
    """The pieces of one table in row order, each with its row number in ``_row``."""

    def collect(self, step: Step, *args: Any) -> list[pl.DataFrame]:
        """``step(piece, *args)`` run on every piece where it lives; results in order."""
        ...

    def then(self, step: Step, *args: Any) -> Pieces:
        """New pieces: ``step(piece, *args)``, kept where the pieces live."""
        ...


@dataclass(frozen=True)
class LazyPieces:
    """One lazy plan over the whole table, run by the Polars streaming engine."""

    frame: pl.LazyFrame

    def collect(self, step: Step, *args: Any) -> list[pl.DataFrame]:
        return [step(self.frame, *args).collect(engine="streaming")]

    def then(self, step: Step, *args: Any) -> LazyPieces:
        return LazyPieces(step(self.frame, *args))


@dataclass(frozen=True)
class DaskPieces:
    """Partitions held in the memory of Dask workers, one Polars frame each."""

    client: Client
    futures: list[Future]

    def collect(self, step: Step, *args: Any) -> list[pl.DataFrame]:
        return cast(list[pl.DataFrame], self.client.gather(self._map(step, args)))

    def then(self, step: Step, *args: Any) -> DaskPieces:
        return DaskPieces(self.client, self._map(step, args))

    def _map(self, step: Step, args: tuple[Any, ...]) -> list[Future]:
        return self.client.map(_run_step, self.futures, step=step, args=args, pure=False)


def _run_step(frame: pl.DataFrame, step: Step, args: tuple[Any, ...]) -> pl.DataFrame:
    return step(frame.lazy(), *args).collect()


# --- judging a table in pieces ---------------------------------------------------------


@dataclass(frozen=True)
class Routing:
    """Where each judged row goes: kept, or quarantined with its reason, in row order.

    ``exact`` are the row numbers of exact duplicates, set aside before any row rule;
    ``blocking`` the row rules that move rows out (severity quarantine or fail);
    ``verdicts`` the rows quarantined as duplicates (exact, or of a unique key) with
    their ``_row``, ``_rule``, ``_column`` and ``_reason``.
    """

    compiled: CompiledRules
    columns: list[str]
    exact: pl.Series
    blocking: list[tuple[int, RowRule]]
    verdicts: pl.DataFrame

    def kept(self, frame: pl.LazyFrame) -> pl.LazyFrame:
        duplicate = pl.col(ROW).is_in(self.verdicts[ROW].implode())
        keep = _live(self.exact) & ~_blocked(self.blocking) & ~duplicate
        return frame.filter(keep).select(self.compiled.output)

    def quarantined(self, frame: pl.LazyFrame) -> pl.LazyFrame:
        """The quarantined rows shaped like ``Validation.quarantined``, in row order.

        A duplicate's verdict comes first; other rows get their first failing rule's.
        """
        duplicate = pl.col(ROW).is_in(self.verdicts[ROW].implode())
        judged = _live(self.exact) & _blocked(self.blocking)
        rows = frame.filter(duplicate | judged).join(
            self.verdicts.lazy().rename(_VERDICT), on=ROW, how="left", maintain_order="left"
        )
        found = pl.col(_VERDICT["_rule"]).is_not_null()
        fallbacks = verdict(self.blocking) if self.blocking else (pl.lit(None, pl.String),) * 3
        rule, column, reason = (
            pl.when(found).then(pl.col(_VERDICT[meta])).otherwise(fallback)
            for meta, fallback in zip(_VERDICT, fallbacks, strict=True)
        )
        return quarantine_rows(rows, self.compiled, Outcome(self.columns), rule, column, reason)


@dataclass(frozen=True)
class Judged:
    """A table judged in passes: where its rows go, the findings, the schema changes.

    ``pieces`` are prepared (declared types cast) with one mask column per rule.
    """

    compiled: CompiledRules
    outcome: Outcome
    pieces: Pieces
    routing: Routing
    schema_changes: list[dict[str, str]]
    failures: list[Finding]

    def findings(self, *table: Finding | None) -> list[Finding]:
        """Every finding in the order ``validate`` gives them, table rules last."""
        return self.failures + self.outcome.findings + [f for f in table if f is not None]


def judge(
    pieces: Pieces,
    schema: Mapping[str, pl.DataType],
    contract: Contract,
    *,
    source: str,
    references: Mapping[str, pl.DataFrame] | None = None,
) -> Judged:
    """Apply the row rules and the key rules of ``contract`` to a table in pieces.

    The table rules (freshness, row counts) need the kept rows: the caller adds them.
    """
    check_reserved(source, list(schema))
    adopted = _adopted(pieces, contract, schema)
    compiled = compile_rules(
        contract, schema, source=source, references=references, adopted=adopted
    )
    outcome = Outcome(list(schema))
    judged = pieces.then(_judge, compiled)
    exact = _exact_duplicate_rows(judged, compiled, contract, outcome)
    blocking = _row_rules(judged, compiled, _live(exact), outcome)
    _unique_key_rows(judged, compiled, _live(exact) & ~_blocked(blocking), outcome)
    routing = Routing(compiled, list(schema), exact, blocking, _verdicts(outcome.quarantine))
    changes, failures = schema_changes(compiled, contract, schema, adopted, outcome)
    return Judged(compiled, outcome, judged, routing, changes, failures)


def _judge(frame: pl.LazyFrame, compiled: CompiledRules) -> pl.LazyFrame:
    """Cast the declared types and add one mask column per rule."""
    return compiled.prepare(frame).with_columns(compiled.masks())


def _live(exact: pl.Series) -> pl.Expr:
    """The rows the row rules judge: all but the exact duplicates."""
    return ~pl.col(ROW).is_in(exact.implode())


def _blocked(blocking: list[tuple[int, RowRule]]) -> pl.Expr:
    """True on the rows a blocking rule (severity quarantine or fail) moves out."""
    if not blocking:
        return pl.lit(False)
    return pl.any_horizontal(pl.col(mask_name(i)) for i, _ in blocking)


def _verdicts(quarantined: Sequence[pl.DataFrame]) -> pl.DataFrame:
    """The bookkeeping of the rows quarantined as duplicates, by row number."""
    empty = pl.DataFrame(schema={ROW: pl.Int64} | dict.fromkeys(_VERDICT, pl.String))
    return pl.concat([empty, *(q.select(empty.columns) for q in quarantined)])


def _no_rows() -> pl.Series:
    return pl.Series(ROW, [], pl.Int64)


def _adopted(pieces: Pieces, contract: Contract, schema: Mapping[str, pl.DataType]) -> Adopted:
    """With ``retyped: adopt``: the columns whose values do not all convert, with examples.

    The examples are the first distinct values that fail, found through the hash of each
    failing value (8 bytes a failing row), then read from their first rows.
    """
    if contract.schema_changes.retyped != "adopt":
        return {}
    adopted: Adopted = {}
    for col, kind in retype_candidates(contract, schema).items():
        text = as_text(pl.col(col), schema[col]).alias(col)
        fails = conversion_failures(col, schema[col], kind)
        failing = pl.concat(pieces.collect(_hashed_values, fails, text))
        if failing.height:
            first = failing.unique(_HASH, keep="first", maintain_order=True).head(EXAMPLES)
            values = pl.concat(pieces.collect(_values_at, text, first[ROW]))
            adopted[col] = (failing.height, values[col].to_list())
    return adopted


def _hashed_values(frame: pl.LazyFrame, fails: pl.Expr, text: pl.Expr) -> pl.LazyFrame:
    return frame.filter(fails).select(ROW, text.hash().alias(_HASH))


def _values_at(frame: pl.LazyFrame, text: pl.Expr, rows: pl.Series) -> pl.LazyFrame:
    return frame.filter(pl.col(ROW).is_in(rows.implode())).select(text)


def _exact_duplicate_rows(
    pieces: Pieces, compiled: CompiledRules, contract: Contract, outcome: Outcome
) -> pl.Series:
    """Row numbers of exact duplicates; ``exact_duplicates`` quarantines or drops them."""
    if contract.exact_duplicates == "keep" or not outcome.columns:
        return _no_rows()
    key = [raw_name(c) if c in compiled.casts else c for c in outcome.columns]
    candidates = _candidates(pieces, key, pl.lit(True))
    if candidates is None:
        return _no_rows()
    remaining = exact_duplicates(candidates, compiled, contract, outcome)
    return candidates[ROW].filter(~candidates[ROW].is_in(remaining[ROW].implode()))


def _row_rules(
    pieces: Pieces, compiled: CompiledRules, live: pl.Expr, outcome: Outcome
) -> list[tuple[int, RowRule]]:
    """Findings of every row rule on the ``live`` rows; returns the rules that move rows out."""
    if not compiled.rules:
        return []
    counts = pieces.collect(_mask_counts, live, len(compiled.rules))
    totals = pl.concat(counts).sum().row(0)
    hits = [(i, rule) for i, rule in enumerate(compiled.rules) if totals[i]]
    if hits:
        sample = pl.concat(pieces.collect(_first_failures, live, [i for i, _ in hits]))
        outcome.findings += row_findings(sample, hits, totals)
    return [(i, rule) for i, rule in hits if rule.severity != "warn"]


def _mask_counts(frame: pl.LazyFrame, live: pl.Expr, rules: int) -> pl.LazyFrame:
    return frame.filter(live).select(pl.col(mask_name(i)).sum() for i in range(rules))


def _first_failures(frame: pl.LazyFrame, live: pl.Expr, rules: list[int]) -> pl.LazyFrame:
    """The first failing rows of each rule, in row order: where finding examples come from.

    Concatenated over the pieces they hold the first failing rows of the whole table.
    """
    judged = frame.filter(live)
    heads = [judged.filter(pl.col(mask_name(i))).head(SCANNED) for i in rules]
    return pl.concat(heads).unique(ROW).sort(ROW)


def _unique_key_rows(
    pieces: Pieces, compiled: CompiledRules, live: pl.Expr, outcome: Outcome
) -> None:
    """Quarantine later duplicates of each key among the ``live`` rows, key by key."""
    excluded = _no_rows()
    for index, key in enumerate(compiled.keys):
        remaining = live & ~pl.col(ROW).is_in(excluded.implode())
        candidates = _candidates(pieces, key, remaining)
        repeats = None if candidates is None else find_repeats(candidates, key, None)
        if repeats is not None:
            quarantine_duplicate_keys(repeats.rows, compiled, key, index, outcome)
            excluded = pl.concat([excluded, repeats.rows[ROW]])


def _candidates(pieces: Pieces, key: list[str], live: pl.Expr) -> pl.DataFrame | None:
    """The ``live`` rows whose key hash occurs more than once in the table, in row order.

    Each piece sends the hash of each row's key (8 bytes a row); the rows that share a
    hash are few, and ``find_repeats`` compares their keys exactly.
    """
    hashes = pl.concat(pieces.collect(_key_hashes, key, live)).to_series().sort()
    repeated = hashes.filter(hashes == hashes.shift(1)).unique()
    if repeated.is_empty():
        return None
    return pl.concat(pieces.collect(_hashed_rows, key, live, repeated))


def _key_hashes(frame: pl.LazyFrame, key: list[str], live: pl.Expr) -> pl.LazyFrame:
    return frame.filter(live).select(key_value(key).hash().alias(_HASH))


def _hashed_rows(
    frame: pl.LazyFrame, key: list[str], live: pl.Expr, hashes: pl.Series
) -> pl.LazyFrame:
    return frame.filter(live & key_value(key).hash().is_in(hashes.implode()))


# --- partitioned Parquet on a Dask cluster ----------------------------------------------


@contextmanager
def dask_client(execution: Execution) -> Iterator[Client]:
    """A client of the scheduler at ``execution.address``, or of a local cluster of
    ``execution.workers`` processes with one thread each, closed on exit."""
    from distributed import Client, LocalCluster

    if execution.address is not None:
        with connect_scheduler(execution.address) as client:
            yield client
        return
    cluster = LocalCluster(
        n_workers=execution.workers,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        env=_PINNED,
    )
    with cluster, Client(cluster) as client:
        yield client


def connect_scheduler(address: str, timeout: str = "10s") -> Client:
    """A client of the Dask scheduler at ``address``; a clear error when it cannot be reached."""
    from distributed import Client

    try:
        return Client(address, timeout=timeout)
    except (OSError, TimeoutError) as exc:
        raise KeelsonError(
            f"cannot reach the Dask scheduler: {first_line(exc)}",
            where="execution.address",
            hint="Start the scheduler (`dask scheduler`) and its workers, or remove "
            "`execution.address` to run on a local cluster.",
        ) from None


def validate_partitioned(
    paths: Sequence[str],
    contract: Contract | None,
    *,
    source: str,
    execution: Execution,
    references: Mapping[str, pl.DataFrame] | None = None,
    now: datetime | None = None,
    client: Client | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> Validation:
    """Validate Parquet partitions in parallel on a Dask cluster, as one table in order.

    Each worker reads its partitions and applies the row rules with Polars; the driver
    applies the rules across partitions (exact duplicates, unique keys: the first
    occurrence in partition order wins; row counts; freshness) and concatenates. The
    result equals ``validate`` on the concatenation of the partitions.

    ``paths`` are local paths or fsspec URLs (:func:`read_partitioned`), read by the
    workers with ``storage_options``; ``client`` is an open client to reuse (none: one
    from ``execution``, closed on return).
    """
    if not paths:
        raise SourceError(f"source {source!r}: no Parquet partitions to validate.")
    contract = contract if contract is not None else Contract()
    opened: AbstractContextManager[Client] = (
        nullcontext(client) if client is not None else dask_client(execution)
    )
    with opened as active:
        judged, rows = _judge_partitions(
            active, list(paths), contract, source, references, storage_options or {}
        )
        kept = pl.concat(judged.pieces.collect(judged.routing.kept))
        quarantined = pl.concat(judged.pieces.collect(judged.routing.quarantined))
    table = (
        freshness(kept, judged.compiled, contract.freshness, now),
        row_count(source, rows, contract.rows),
    )
    return Validation(
        source=source,
        kept=kept,
        quarantined=quarantined,
        rows_in=rows,
        removed=judged.outcome.removed,
        findings=judged.findings(*table),
        schema_changes=judged.schema_changes,
    )


def _judge_partitions(
    client: Client,
    paths: list[str],
    contract: Contract,
    source: str,
    references: Mapping[str, pl.DataFrame] | None,
    options: Mapping[str, Any],
) -> tuple[Judged, int]:
    """The partitions judged on the workers (which then hold only the judged frames)."""
    pieces, schema, rows = _load(client, paths, source, options)
    return judge(pieces, schema, contract, source=source, references=references), rows


def _load(
    client: Client, paths: list[str], source: str, options: Mapping[str, Any]
) -> tuple[DaskPieces, dict[str, pl.DataType], int]:
    """Read every partition on the workers; number the rows across partitions in order."""
    raw = client.map(_read_partition, paths, source=source, options=dict(options), pure=False)
    shapes = cast(list[tuple[dict[str, pl.DataType], int]], client.gather(client.map(_shape, raw)))
    schema = _one_schema(source, paths, [s for s, _ in shapes])
    heights = [height for _, height in shapes]
    offsets = [sum(heights[:i]) for i in range(len(heights))]
    numbered = client.map(_number_rows, raw, offsets, pure=False)
    return DaskPieces(client, numbered), schema, sum(heights)


def _read_partition(path: str, source: str, options: Mapping[str, Any]) -> pl.DataFrame:
    try:
        if _URL.match(path):
            from fsspec.core import url_to_fs

            fs, inner = url_to_fs(path, **options)
            return pl.read_parquet(io.BytesIO(fs.cat_file(inner)))
        return pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise SourceError(
            f"source {source!r}: partition is not a readable Parquet file: {first_line(exc)}",
            where=mask_url(path),
        ) from None


def _shape(frame: pl.DataFrame) -> tuple[dict[str, pl.DataType], int]:
    return dict(frame.schema), frame.height


def _number_rows(frame: pl.DataFrame, offset: int) -> pl.DataFrame:
    number = pl.int_range(offset + 1, offset + 1 + pl.len(), dtype=pl.Int64).alias(ROW)
    return frame.select(number, pl.all())


def _one_schema(
    source: str, paths: Sequence[str], schemas: Sequence[Mapping[str, pl.DataType]]
) -> dict[str, pl.DataType]:
    """The schema every partition shares; a partition that differs is an error."""
    first = dict(schemas[0])
    for path, schema in zip(paths, schemas, strict=True):
        if dict(schema) != first:
            raise SourceError(
                f"source {source!r}: partition has columns {_listed(schema)}, but the first "
                f"partition {mask_url(paths[0])} has {_listed(first)}.",
                where=mask_url(path),
                hint="Every partition of a source must have the same columns and types; "
                "rewrite the odd partition.",
            )
    return first


def _listed(schema: Mapping[str, pl.DataType]) -> str:
    return "{" + ", ".join(f"{c}: {t}" for c, t in schema.items()) + "}"


# --- finding the partitions ---------------------------------------------------------------


@dataclass(frozen=True)
class _Location:
    """Where a file source points: its filesystem, the path in it, how messages show it."""

    fs: AbstractFileSystem
    root: str
    url: bool
    shown: str
    options: dict[str, Any]


def _locate(spec: FileSource, project_dir: Path, source: str) -> _Location:
    import fsspec
    from fsspec.core import url_to_fs

    from keelson.data.connectors.files import storage_options

    raw = expand_env(spec.path, where=f"sources.{source}.path")
    if _URL.match(raw):
        options = storage_options(source, spec)
        fs, root = url_to_fs(raw, **options)
        return _Location(fs, str(root), True, mask_url(spec.path), options)
    path = Path(raw).expanduser()
    root = (path if path.is_absolute() else project_dir / path).resolve().as_posix()
    return _Location(fsspec.filesystem("file"), root, False, root, {})


@dataclass(frozen=True)
class Partitions:
    """The Parquet files of one source in order, and the fsspec options to open them."""

    paths: list[str]
    storage_options: dict[str, Any]


def partitioned_sources(spec: ProjectSpec, project_dir: Path) -> dict[str, Partitions]:
    """The sources to validate on Dask, with their partitions (none unless the engine is dask).

    Those are the Parquet sources whose path is a directory or a glob and whose rows
    reach validation as they are read: a source with ``incremental`` or a ``reconcile``
    section is changed in memory first, so it is validated in memory.
    """
    if spec.execution.engine != "dask":
        return {}
    return {
        name: Partitions(
            read_partitioned(source, project_dir, source=name),
            _locate(source, project_dir, name).options,
        )
        for name, source in spec.sources.items()
        if isinstance(source, FileSource)
        and source.incremental is None
        and name not in spec.reconcile
        and is_partitioned(source, project_dir)
    }


def is_partitioned(spec: FileSource, project_dir: Path) -> bool:
    """Whether a Parquet source's path is a glob or a directory of partitions."""
    if spec.kind != "parquet":
        return False
    if _GLOB.search(spec.path):
        return True
    at = _locate(spec, project_dir, "source")
    return bool(at.fs.isdir(at.root))


def read_partitioned(spec: FileSource, project_dir: Path, *, source: str = "source") -> list[str]:
    """The Parquet files of a source, sorted by path: those a glob matches, every
    ``*.parquet`` under a directory (at any depth), or the one file named.

    Partitions are read in this order, so name them to sort (``part-0001.parquet``).
    """
    at = _locate(spec, project_dir, source)
    if _GLOB.search(at.root):
        found = at.fs.glob(at.root)
    elif at.fs.isdir(at.root):
        found = at.fs.glob(f"{at.root.rstrip('/')}/**/*.parquet")
    else:
        found = [at.root] if at.fs.exists(at.root) else []
    files = sorted(str(p) for p in found if at.fs.isfile(p))
    if not files:
        raise SourceError(
            f"source {source!r}: no Parquet file found.",
            where=at.shown,
            hint=f"Check `sources.{source}.path`: a file, a directory of .parquet files, or a "
            "glob such as data/events/*.parquet.",
        )
    return [at.fs.unstrip_protocol(p) if at.url else p for p in files]


def read_partitioned_source(name: str, spec: FileSource, project_dir: Path) -> SourceRead:
    """Read a partitioned Parquet source in memory, partitions concatenated in path order.

    The fingerprint's ``sha256`` covers the content of every partition and their order.
    """
    paths = read_partitioned(spec, project_dir, source=name)
    at = _locate(spec, project_dir, name)
    digest, size, frames = hashlib.sha256(), 0, []
    for path in paths:  # one iteration per file
        data = _read_bytes(at, path, name)
        digest.update(hashlib.sha256(data).digest())
        size += len(data)
        frames.append(_parse_partition(data, path, name))
    _one_schema(name, paths, [f.schema for f in frames])
    frame = pl.concat(frames)
    fingerprint = {
        "kind": "parquet",
        "location": at.shown,
        "sha256": digest.hexdigest(),
        "bytes": size,
        "rows": frame.height,
        "partitions": len(paths),
    }
    return SourceRead(name, frame, rejects([]), fingerprint)


def _read_bytes(at: _Location, path: str, name: str) -> bytes:
    try:
        return cast(bytes, at.fs.cat_file(path))
    except OSError as exc:
        raise SourceError(
            f"source {name!r}: cannot read partition: {first_line(exc)}", where=mask_url(path)
        ) from None


def _parse_partition(data: bytes, path: str, name: str) -> pl.DataFrame:
    try:
        return pl.read_parquet(io.BytesIO(data))
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise SourceError(
            f"source {name!r}: partition is not a valid Parquet file: {first_line(exc)}",
            where=mask_url(path),
        ) from None
