"""The prediction log: every scored request, written in the background to Parquet parts.

``PredictionLog.append`` only queues the entry; one writer thread turns the queue
into a Parquet part file when ``flush_rows`` rows are waiting or ``flush_seconds``
have passed, and ``close()`` writes whatever is still queued. Under ``url`` (a local
folder or any fsspec URL)::

    <model>/date=<yyyy-mm-dd>/part-<utc yyyymmddThhmmss.ffffff>-<pid>-<seq>.parquet

A request of N rows is N log rows sharing ``request_id``, with ``row`` 0..N-1, the
scored inputs as ``input.<column>`` and the outputs as ``output.label``,
``output.p.<class>`` and ``output.value``. A request that never reached the model
(no input rows) is one log row with ``row`` null. :class:`PartWriter` is the
generic queue-and-writer, shared with the feedback log.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import math
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Generic, Self, TypeVar

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from keelson import __version__
from keelson.serve.traffic import Variant

logger = logging.getLogger(__name__)

FORMAT = "keelson.prediction-log/1"
VARIANTS: frozenset[str] = frozenset({"primary", "challenger", "shadow"})
META_SCHEMA: dict[str, pl.DataType] = {
    "request_id": pl.String(),
    "row": pl.Int64(),
    "time": pl.Datetime("us", "UTC"),
    "model": pl.String(),
    "version": pl.Int64(),
    "variant": pl.String(),
    "status": pl.Int64(),
    "latency_ms": pl.Float64(),
}
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
_PART_SEQUENCE = itertools.count()  # process-wide: two writers in one process never collide
_WARN_EVERY_SECONDS = 10.0

T = TypeVar("T")


@dataclass(slots=True, frozen=True)
class LogEntry:
    """One answered request: what the model scored, what it answered, how long it took.

    ``outputs`` maps an output name to one value per input row: ``label`` (strings),
    ``value`` (floats) or ``probabilities`` (shape (rows, len(classes)), columns in
    ``classes`` order). ``time`` is timezone-aware (UTC). ``rows`` (start, stop) says
    which rows of ``inputs`` are the request's when ``inputs`` is a whole batch's frame:
    the writer then takes them without a copy per request.
    """

    request_id: str
    time: datetime
    model: str
    version: int
    variant: Variant
    inputs: pl.DataFrame
    outputs: Mapping[str, np.ndarray | Sequence[Any]]
    latency_ms: float
    status: int
    classes: Sequence[str] = ()
    rows: tuple[int, int] | None = None

    @property
    def height(self) -> int:
        """The request's input rows."""
        return self.inputs.height if self.rows is None else self.rows[1] - self.rows[0]


@dataclass(frozen=True)
class Part:
    """Rows to write as one part file, in ``folder`` (relative to the log's URL)."""

    folder: str
    frame: pl.DataFrame


class PartWriter(Generic[T]):
    """A queue of items and one background thread writing them as Parquet part files.

    ``offer`` is O(1) and never touches storage: it refuses (returns False) once
    ``max_pending_rows`` rows are queued or unwritten. ``build`` turns a batch of items
    into parts; a part that fails to write is kept and retried at the next flush.
    """

    def __init__(
        self,
        url: str,
        build: Callable[[list[T]], list[Part]],
        rows_of: Callable[[T], int],
        *,
        kind: str,
        format_tag: str,
        flush_rows: int,
        flush_seconds: float,
        max_pending_rows: int,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        from fsspec.core import url_to_fs
        from fsspec.implementations.local import LocalFileSystem

        check_writer_parameters(type(self).__name__, flush_rows, flush_seconds, max_pending_rows)
        self.url, self.kind = url, kind
        self.flush_rows, self.flush_seconds = flush_rows, flush_seconds
        self.max_pending_rows = max_pending_rows
        self._build, self._rows_of = build, rows_of
        self._fs, self._base = url_to_fs(url, **dict(storage_options or {}))
        self._local = isinstance(self._fs, LocalFileSystem)
        self._metadata = {"keelson.format": format_tag, "keelson.version": __version__}
        self._lock = threading.Lock()
        self._items: list[T] = []
        self._queued_rows = self._pending_rows = self._written_rows = self._lost_rows = 0
        self._closed = False
        self._backlog: deque[Part] = deque()
        self._failures = 0
        self._retry_deadline = 0.0
        self._wake, self._stop = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"keelson {kind} writer")
        self._thread.daemon = True  # close() (lifespan or atexit) is what flushes
        self._thread.start()
        atexit.register(self.close)

    @property
    def pending_rows(self) -> int:
        """Rows accepted and not yet written (queued, or waiting for a retry)."""
        return self._pending_rows

    @property
    def written_rows(self) -> int:
        return self._written_rows

    @property
    def lost_rows(self) -> int:
        """Rows accepted that will never be written (storage failed until close)."""
        return self._lost_rows

    def offer(self, item: T) -> bool:
        """Queue ``item`` for the writer; False if closed or ``max_pending_rows`` is reached."""
        rows = self._rows_of(item)
        with self._lock:
            if self._closed or self._pending_rows + rows > self.max_pending_rows:
                return False
            self._items.append(item)
            self._pending_rows += rows
            self._queued_rows += rows
            full = self._queued_rows >= self.flush_rows
        if full and not self._wake.is_set():
            self._wake.set()
        return True

    def close(self, timeout: float = 30.0) -> None:
        """Write everything queued, retrying failed parts for most of ``timeout`` seconds, and stop.

        Idempotent. Items offered after ``close`` are refused.
        """
        with self._lock:
            self._closed = True
        self._retry_deadline = time.monotonic() + 0.8 * timeout
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            logger.error(
                "the %s at %s is still writing %d rows after %.0f s; they may be lost.",
                self.kind,
                self.url,
                self._pending_rows,
                timeout,
            )
        atexit.unregister(self.close)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            self._flush()
        self._flush()  # whatever was queued before close() refused new items
        while self._backlog and time.monotonic() < self._retry_deadline:
            time.sleep(
                min(self.flush_seconds, 0.5, max(self._retry_deadline - time.monotonic(), 0))
            )
            self._write_backlog()
        self._abandon_backlog()

    def _flush(self) -> None:
        with self._lock:
            items, self._items = self._items, []
            self._queued_rows = 0
        if items:
            self._backlog.extend(self._build_parts(items))
        self._write_backlog()

    def _build_parts(self, items: list[T]) -> list[Part]:
        try:
            return self._build(items)
        except Exception:
            rows = sum(self._rows_of(item) for item in items)
            logger.exception("the %s could not encode %d rows; they are lost.", self.kind, rows)
            self._forget(rows, lost=True)
            return []

    def _write_backlog(self) -> None:
        while self._backlog:
            part = self._backlog[0]
            try:
                self._write(part)
            except Exception:
                self._report_failure()
                return
            self._backlog.popleft()
            self._forget(part.frame.height, lost=False)
        if self._failures:
            logger.warning(
                "the %s at %s is written again after %d failed attempts.",
                self.kind,
                self.url,
                self._failures,
            )
            self._failures = 0

    def _report_failure(self) -> None:
        self._failures += 1
        if self._failures == 1:
            logger.warning(
                "the %s could not write to %s; retrying every %.3g s (%d rows waiting).",
                self.kind,
                self.url,
                self.flush_seconds,
                self._pending_rows,
                exc_info=True,
            )

    def _abandon_backlog(self) -> None:
        rows = sum(part.frame.height for part in self._backlog)
        if rows:
            self._backlog.clear()
            self._forget(rows, lost=True)
            logger.error(
                "the %s could not write %d rows to %s; they are lost.", self.kind, rows, self.url
            )

    def _forget(self, rows: int, *, lost: bool) -> None:
        with self._lock:
            self._pending_rows -= rows
            if lost:
                self._lost_rows += rows
            else:
                self._written_rows += rows

    def _write(self, part: Part) -> None:
        table = part.frame.to_arrow(compat_level=pl.CompatLevel.oldest())
        table = table.replace_schema_metadata(self._metadata)
        folder = f"{self._base.rstrip('/')}/{part.folder}"
        if self._local:
            write_atomically(Path(folder) / part_name(), table)
            return
        self._fs.makedirs(folder, exist_ok=True)
        with self._fs.open(f"{folder}/{part_name()}", "wb") as handle:  # visible once complete
            pq.write_table(table, handle, compression="zstd")


def part_name(now: datetime | None = None) -> str:
    """``part-<utc yyyymmddThhmmss.ffffff>-<pid>-<seq>.parquet``: unique, sorts by time."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S.%f")
    return f"part-{stamp}-{os.getpid()}-{next(_PART_SEQUENCE):06d}.parquet"


def write_atomically(path: Path, table: pa.Table) -> None:
    """Write ``path.tmp``, fsync it, rename it to ``path``, fsync the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    try:
        with temporary.open("wb") as handle:
            pq.write_table(table, handle, compression="zstd")
            handle.flush()
            os.fsync(handle.fileno())
        temporary.replace(path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


class PredictionLog(PartWriter[LogEntry]):
    """Append :class:`LogEntry` objects; a background thread writes them to Parquet under ``url``.

    When the writer falls more than ``max_pending_rows`` rows behind, new entries are
    dropped, counted in :attr:`dropped` and reported in a warning (at most every 10 s).
    ``storage_options`` go to fsspec (e.g. S3 credentials and endpoint).
    """

    def __init__(
        self,
        url: str,
        flush_rows: int = 1000,
        flush_seconds: float = 1.0,
        max_pending_rows: int = 200_000,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        self._refused = 0
        self._warned_at = -math.inf
        self._refuse_lock = threading.Lock()
        super().__init__(
            url,
            entries_parts,
            log_rows,
            kind="prediction log",
            format_tag=FORMAT,
            flush_rows=flush_rows,
            flush_seconds=flush_seconds,
            max_pending_rows=max_pending_rows,
            storage_options=storage_options,
        )

    @property
    def dropped(self) -> int:
        """Log rows that will never be written: refused while behind, or lost by storage."""
        return self._refused + self.lost_rows

    def append(self, entry: LogEntry) -> None:
        """Queue ``entry`` (O(1), no I/O); ValueError if it is malformed."""
        check_entry(entry)
        if not self.offer(entry):
            self._refuse(log_rows(entry))

    def _refuse(self, rows: int) -> None:
        with self._refuse_lock:
            self._refused += rows
            now = time.monotonic()
            if now - self._warned_at < _WARN_EVERY_SECONDS:
                return
            self._warned_at, total = now, self._refused
        logger.warning(
            "the prediction log at %s is %d rows behind (max_pending_rows=%d): "
            "%d log rows dropped so far.",
            self.url,
            self.pending_rows,
            self.max_pending_rows,
            total,
        )


def check_writer_parameters(
    owner: str, flush_rows: int, flush_seconds: float, max_pending_rows: int
) -> None:
    """sklearn-style errors for the queue parameters of a log."""
    for name, value in (("flush_rows", flush_rows), ("max_pending_rows", max_pending_rows)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(
                f"The '{name}' parameter of {owner} must be a positive int. Got {value!r} instead."
            )
    if flush_rows > max_pending_rows:
        raise ValueError(
            f"The 'flush_rows' parameter of {owner} must be at most max_pending_rows "
            f"({max_pending_rows}). Got {flush_rows!r} instead."
        )
    if (
        isinstance(flush_seconds, bool)
        or not isinstance(flush_seconds, int | float)
        or not 0 < flush_seconds < math.inf
    ):
        raise ValueError(
            f"The 'flush_seconds' parameter of {owner} must be a positive number. "
            f"Got {flush_seconds!r} instead."
        )


def check_segment(owner: str, value: str) -> None:
    """A model name becomes a folder: letters, digits, ``.``, ``_``, ``-``; no separators."""
    if not isinstance(value, str) or not _SEGMENT.match(value):
        raise ValueError(
            f"The 'model' of a {owner} must be letters, digits, '.', '_' or '-', starting "
            f"with a letter or digit. Got {value!r} instead."
        )


def check_entry(entry: LogEntry) -> None:
    """Refuse an entry that would poison a whole batch: O(number of outputs), no data scan."""
    check_segment("LogEntry", entry.model)
    if entry.time.tzinfo is None:
        raise ValueError("LogEntry.time must be timezone-aware (UTC). Got a naive datetime.")
    if entry.variant not in VARIANTS:
        raise ValueError(
            f"LogEntry.variant must be one of {sorted(VARIANTS)}. Got {entry.variant!r} instead."
        )
    if entry.rows is not None and not 0 <= entry.rows[0] <= entry.rows[1] <= entry.inputs.height:
        raise ValueError(
            f"LogEntry.rows must be (start, stop) with 0 <= start <= stop <= "
            f"{entry.inputs.height} (the inputs' rows). Got {entry.rows!r} instead."
        )
    for name, values in entry.outputs.items():
        _check_output(entry, name, values)


def _check_output(entry: LogEntry, name: str, values: np.ndarray | Sequence[Any]) -> None:
    rows = entry.height
    if len(values) != rows:
        raise ValueError(
            f"LogEntry.outputs['{name}'] has {len(values)} rows; inputs has {rows}. "
            "Log one output value per input row."
        )
    wanted = 2 if name == "probabilities" else 1
    shape = np.shape(values) if isinstance(values, np.ndarray) else (len(values),)
    if len(shape) != wanted:
        raise ValueError(f"LogEntry.outputs['{name}'] must be {wanted}-D. Got shape {shape}.")
    if wanted == 2 and shape[1] != len(entry.classes):
        raise ValueError(
            f"LogEntry.outputs['probabilities'] has {shape[1]} columns but classes has "
            f"{len(entry.classes)} names. Give one class name per column."
        )


def log_rows(entry: LogEntry) -> int:
    """Log rows an entry becomes: one per input row, or one for a request without rows."""
    return max(entry.height, 1)


def entries_parts(entries: list[LogEntry]) -> list[Part]:
    """One part per model and UTC day of the entries' ``time``."""
    groups: dict[tuple[str, date], list[LogEntry]] = {}
    for entry in entries:
        groups.setdefault((entry.model, entry.time.astimezone(UTC).date()), []).append(entry)
    return [
        Part(f"{model}/date={day.isoformat()}", entries_frame(group))
        for (model, day), group in groups.items()
    ]


def entries_frame(entries: Sequence[LogEntry]) -> pl.DataFrame:
    """The log rows of ``entries``: entries with one layout are concatenated as whole columns."""
    layouts: dict[Hashable, list[LogEntry]] = {}
    known: dict[tuple[int, bool], Hashable] = {}  # by inputs frame: a batch's entries share theirs
    for entry in entries:
        key = (id(entry.inputs), entry.height == 0)
        if key not in known:
            known[key] = _layout(entry)
        layouts.setdefault(known[key], []).append(entry)
    frames = [_layout_frame(group) for group in layouts.values()]
    if len(frames) == 1:
        return frames[0]
    # A hot swap mixes versions whose inputs or classes differ: union of columns, nulls elsewhere.
    frame = pl.concat(frames, how="diagonal_relaxed").sort("time", maintain_order=True)
    inputs = [name for name in frame.columns if name.startswith("input.")]
    outputs = [name for name in frame.columns if name.startswith("output.")]
    return frame.select([*META_SCHEMA, *inputs, *outputs])


def _layout(entry: LogEntry) -> Hashable:
    if entry.height == 0:
        return None
    outputs = tuple((name, getattr(values, "ndim", 1)) for name, values in entry.outputs.items())
    return (tuple(entry.inputs.schema.items()), outputs, tuple(entry.classes))


def _layout_frame(entries: list[LogEntry]) -> pl.DataFrame:
    heights = [entry.height for entry in entries]
    meta = _meta_frame(entries, heights)
    if heights[0] == 0:
        return meta.with_columns(row=pl.lit(None, pl.Int64)).select(list(META_SCHEMA))
    meta = meta.with_columns(row=pl.int_ranges(0, "_rows")).explode("row").select(list(META_SCHEMA))
    inputs = pl.concat(_input_runs(entries), how="vertical", rechunk=False)
    inputs = inputs.select(pl.all().name.prefix("input."))
    return pl.concat([meta, inputs, _outputs_frame(entries)], how="horizontal")


def _input_runs(entries: list[LogEntry]) -> list[pl.DataFrame]:
    """The entries' input rows in order, one slice per run of adjacent rows of one frame."""
    runs: list[tuple[pl.DataFrame, int, int]] = []
    for entry in entries:
        start, stop = entry.rows or (0, entry.inputs.height)
        if runs and runs[-1][0] is entry.inputs and runs[-1][2] == start:
            runs[-1] = (entry.inputs, runs[-1][1], stop)
        else:
            runs.append((entry.inputs, start, stop))
    return [frame.slice(start, stop - start) for frame, start, stop in runs]


def _meta_frame(entries: list[LogEntry], heights: list[int]) -> pl.DataFrame:
    columns: dict[str, list[Any]] = {
        "request_id": [entry.request_id for entry in entries],
        "time": [entry.time for entry in entries],
        "model": [entry.model for entry in entries],
        "version": [entry.version for entry in entries],
        "variant": [entry.variant for entry in entries],
        "status": [entry.status for entry in entries],
        "latency_ms": [entry.latency_ms for entry in entries],
        "_rows": heights,
    }
    schema = {name: META_SCHEMA[name] for name in columns if name in META_SCHEMA}
    return pl.DataFrame(columns, schema={**schema, "_rows": pl.Int64()})


def _outputs_frame(entries: list[LogEntry]) -> pl.DataFrame:
    parts: list[pl.DataFrame] = []
    for name in entries[0].outputs:
        values = np.concatenate([np.asarray(entry.outputs[name]) for entry in entries])
        if name == "probabilities":
            names = [f"output.p.{label}" for label in entries[0].classes]
            parts.append(pl.from_numpy(values.astype(np.float64), schema=names, orient="row"))
        else:
            parts.append(pl.Series(f"output.{name}", values).to_frame())
    return pl.concat(parts, how="horizontal") if parts else pl.DataFrame()


def read_log(
    url: str, model: str, storage_options: Mapping[str, Any] | None = None
) -> pl.DataFrame:
    """Every logged row of ``model`` under ``url``, parts in name (time) order."""
    check_segment("prediction log", model)
    frame = read_parts(url, f"{model}/date=*", storage_options)
    return frame if frame.width else pl.DataFrame(schema=META_SCHEMA)


def read_parts(
    url: str, folder_glob: str, storage_options: Mapping[str, Any] | None = None
) -> pl.DataFrame:
    """The part files in ``url``/``folder_glob``, diagonally concatenated (empty if none)."""
    from fsspec.core import url_to_fs

    fs, base = url_to_fs(url, **dict(storage_options or {}))
    paths = sorted(fs.glob(f"{base.rstrip('/')}/{folder_glob}/part-*.parquet"), key=_file_name)
    frames = []
    for path in paths:
        with fs.open(path, "rb") as handle:
            frames.append(pl.read_parquet(handle))
    return pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()


def _file_name(path: str) -> str:
    return path.rsplit("/", 1)[-1]
