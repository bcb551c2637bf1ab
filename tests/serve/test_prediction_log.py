"""The prediction log: every appended row written exactly once, by size, by time, at close,
after a storage failure, to S3, and when a real server process gets SIGTERM."""

from __future__ import annotations

import dataclasses
import logging
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

from keelson.serve.prediction_log import FORMAT, LogEntry, PredictionLog, read_log

CLASSES = ("no", "yes")


def entry(
    request_id: str,
    rows: int,
    *,
    model: str = "toy",
    version: int = 1,
    when: datetime | None = None,
    inputs: pl.DataFrame | None = None,
    classes: tuple[str, ...] = CLASSES,
) -> LogEntry:
    """A classifier's answer for ``rows`` rows whose ``age`` equals the row number."""
    frame = inputs if inputs is not None else _inputs(rows)
    positive = np.linspace(0.0, 1.0, frame.height)
    probabilities = np.column_stack([1 - positive, positive, *[positive] * (len(classes) - 2)])
    labels = np.where(positive > 0.5, classes[1], classes[0])
    outputs = {"label": labels, "probabilities": probabilities}
    return LogEntry(
        request_id, when or datetime.now(UTC), model, version, "primary", frame, outputs, 1.5, 200,
        classes,
    )  # fmt: skip


def _inputs(rows: int) -> pl.DataFrame:
    return pl.DataFrame({"age": np.arange(rows), "plan": [f"plan-{i}" for i in range(rows)]})


def parts(folder: Path) -> list[Path]:
    return sorted(folder.rglob("part-*.parquet"))


def wait_for(condition: Callable[[], bool], what: str, seconds: float = 30.0) -> None:
    """Poll ``condition`` until it holds; fail after ``seconds`` (a bound, not a duration)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


def test_rows_appended_from_many_threads_are_written_exactly_once(tmp_path: Path) -> None:
    threads, per_thread = 8, 150
    log = PredictionLog(str(tmp_path), flush_rows=64, flush_seconds=0.05)
    start = threading.Barrier(threads)

    def append_many(thread: int) -> None:
        start.wait()
        for i in range(per_thread):
            log.append(entry(f"t{thread}-{i}", 1 + i % 4))

    workers = [threading.Thread(target=append_many, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    log.close()

    expected = {
        (f"t{t}-{i}", r)
        for t in range(threads)
        for i in range(per_thread)
        for r in range(1 + i % 4)
    }
    logged = read_log(str(tmp_path), "toy")
    assert logged.height == len(expected) == log.written_rows
    assert set(zip(logged["request_id"], logged["row"], strict=True)) == expected
    assert logged.columns == [
        "request_id", "row", "time", "model", "version", "variant", "status", "latency_ms",
        "input.age", "input.plan", "output.label", "output.p.no", "output.p.yes",
    ]  # fmt: skip
    assert (logged["input.age"] == logged["row"]).all()
    assert ((logged["output.p.no"] + logged["output.p.yes"] - 1).abs() < 1e-12).all()
    assert logged.schema["time"] == pl.Datetime("us", "UTC")
    assert (log.dropped, log.pending_rows) == (0, 0)
    files = parts(tmp_path)
    assert len(files) > 1  # flushed along the way, not only at close
    for path in files:
        assert pq.read_metadata(path).metadata[b"keelson.format"] == FORMAT.encode()
        assert path.parent.parent.name == "toy" and path.parent.name.startswith("date=")
    assert not list(tmp_path.rglob("*.tmp"))


def test_a_part_is_written_once_flush_rows_are_waiting(tmp_path: Path) -> None:
    log = PredictionLog(str(tmp_path), flush_rows=10, flush_seconds=3600)
    log.append(entry("a", 9))
    log.append(entry("b", 1))  # 10 rows: the writer wakes up although the hour is not over

    wait_for(lambda: bool(parts(tmp_path)), "a part file")
    files = parts(tmp_path)
    assert len(files) == 1
    assert pq.read_metadata(files[0]).num_rows == 10
    log.close()


def test_a_part_is_written_once_flush_seconds_have_passed(tmp_path: Path) -> None:
    log = PredictionLog(str(tmp_path), flush_rows=1000, flush_seconds=0.05)
    log.append(entry("a", 3))

    wait_for(lambda: bool(parts(tmp_path)), "a part file")
    assert pq.read_metadata(parts(tmp_path)[0]).num_rows == 3
    log.close()


def test_versions_with_different_columns_share_one_part(tmp_path: Path) -> None:
    """A hot swap between flushes: new input columns and classes; an error without rows."""
    new_inputs = pl.DataFrame({"age": [1.5, 2.5], "income": [10.0, None]})
    with PredictionLog(str(tmp_path), flush_seconds=3600) as log:
        log.append(entry("v1", 2))
        log.append(entry("v2", 2, version=2, inputs=new_inputs, classes=("no", "yes", "maybe")))
        log.append(
            LogEntry("bad", datetime.now(UTC), "toy", 2, "primary", pl.DataFrame(), {}, 0.2, 422)
        )

    assert len(parts(tmp_path)) == 1
    logged = read_log(str(tmp_path), "toy")
    assert logged["request_id"].to_list() == ["v1", "v1", "v2", "v2", "bad"]
    assert logged["row"].to_list() == [0, 1, 0, 1, None]
    assert logged["input.age"].to_list() == [0.0, 1.0, 1.5, 2.5, None]
    assert logged["input.plan"].to_list() == ["plan-0", "plan-1", None, None, None]
    assert logged["input.income"].to_list() == [None, None, 10.0, None, None]
    assert logged["output.p.maybe"].null_count() == 3
    assert logged["status"].to_list() == [200, 200, 200, 200, 422]


def test_parts_go_under_the_model_and_the_utc_day(tmp_path: Path) -> None:
    late_evening = datetime(2024, 3, 1, 23, 30, tzinfo=timezone(timedelta(hours=-2)))
    with PredictionLog(str(tmp_path)) as log:
        log.append(entry("a", 1, when=late_evening))
        log.append(entry("b", 1, model="spend", when=datetime(2024, 3, 1, 12, tzinfo=UTC)))

    folders = {path.parent.relative_to(tmp_path).as_posix() for path in parts(tmp_path)}
    assert folders == {"toy/date=2024-03-02", "spend/date=2024-03-01"}
    assert read_log(str(tmp_path), "toy")["time"].to_list() == [late_evening.astimezone(UTC)]
    assert read_log(str(tmp_path), "spend")["request_id"].to_list() == ["b"]
    assert read_log(str(tmp_path), "absent").height == 0


def test_unwritable_storage_keeps_rows_and_drops_only_past_the_limit(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "toy"
    blocker.write_text("a file where the model's folder should be")
    log = PredictionLog(str(tmp_path), flush_rows=2, flush_seconds=0.05, max_pending_rows=4)

    with caplog.at_level(logging.WARNING, "keelson.serve.prediction_log"):
        for i in range(4):
            log.append(entry(f"kept-{i}", 1))
        log.append(entry("refused", 1))  # 4 rows are still unwritten: over the limit
        wait_for(lambda: "could not write" in caplog.text, "the write failure warning")

    assert log.dropped == 1
    assert "1 log rows dropped so far" in caplog.text
    blocker.unlink()
    wait_for(lambda: log.written_rows == 4, "the retried parts")
    log.close()
    assert sorted(read_log(str(tmp_path), "toy")["request_id"]) == [f"kept-{i}" for i in range(4)]


def test_close_is_idempotent_and_later_appends_are_counted(tmp_path: Path) -> None:
    log = PredictionLog(str(tmp_path))
    log.append(entry("a", 2))
    log.close()
    log.close()
    log.append(entry("late", 3))
    assert (log.written_rows, log.dropped) == (2, 3)


def _bad(field: str, value: Any) -> LogEntry:
    good = entry("a", 2)
    values = {name: getattr(good, name) for name in LogEntry.__slots__}
    return LogEntry(**{**values, field: value})


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (_bad("time", datetime(2024, 1, 1)), "timezone-aware"),
        (_bad("variant", "canary"), "variant must be one of"),
        (_bad("model", "../etc"), "'model' of a LogEntry"),
        (_bad("outputs", {"label": np.array(["yes"])}), r"outputs\['label'\] has 1 rows"),
        (_bad("classes", ("no",)), "has 2 columns but classes has 1"),
        (_bad("outputs", {"value": np.zeros((2, 2))}), "must be 1-D"),
    ],
)
def test_malformed_entries_are_refused_when_appended(
    tmp_path: Path, bad: LogEntry, message: str
) -> None:
    with PredictionLog(str(tmp_path)) as log, pytest.raises(ValueError, match=message):
        log.append(bad)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"flush_rows": 0}, "'flush_rows' parameter of PredictionLog must be a positive int"),
        ({"flush_seconds": 0}, "'flush_seconds' parameter of PredictionLog"),
        ({"flush_rows": 10, "max_pending_rows": 5}, "must be at most max_pending_rows"),
    ],
)
def test_parameters_are_checked(tmp_path: Path, options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PredictionLog(str(tmp_path), **options)


@pytest.fixture(scope="module")
def s3_options() -> Iterator[dict[str, str]]:
    """A moto S3 server on a free loopback port, and the fsspec options to reach it."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield {"endpoint_url": f"http://{host}:{port}", "key": "testing", "secret": "testing"}
    finally:
        server.stop()


def test_the_log_is_written_to_s3(s3_options: dict[str, str]) -> None:
    import s3fs

    bucket = f"keelson-{uuid.uuid4().hex[:12]}"
    s3fs.S3FileSystem(skip_instance_cache=True, **s3_options).mkdir(bucket)
    url = f"s3://{bucket}/predictions"
    with PredictionLog(url, flush_rows=4, storage_options=s3_options) as log:
        for i in range(5):
            log.append(entry(f"r{i}", 2))

    logged = read_log(url, "toy", storage_options=s3_options)
    assert logged.height == 10
    assert sorted(set(logged["request_id"])) == [f"r{i}" for i in range(5)]


SERVER_SCRIPT = """
import socket
import sys
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import numpy as np
import polars as pl
import uvicorn
from fastapi import FastAPI

from keelson.serve.prediction_log import LogEntry, PredictionLog

log = PredictionLog(sys.argv[1], flush_rows=100_000, flush_seconds=3600)


@asynccontextmanager
async def lifespan(app):
    yield
    log.close()


app = FastAPI(lifespan=lifespan)


@app.post("/score/{request_id}")
async def score(request_id: str) -> dict[str, str]:
    frame = pl.DataFrame({"x": [1.0, 2.0]})
    outputs = {"value": np.array([0.5, 0.25])}
    now = datetime.now(UTC)
    log.append(LogEntry(request_id, now, "toy", 1, "primary", frame, outputs, 0.1, 200))
    return {"id": request_id}


sock = socket.socket()
sock.bind(("127.0.0.1", 0))
sock.listen(256)
print(sock.getsockname()[1], flush=True)
uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
"""


@pytest.mark.timeout(180)
def test_every_request_is_in_the_log_after_sigterm(tmp_path: Path) -> None:
    script = tmp_path / "server.py"
    script.write_text(SERVER_SCRIPT)
    folder = tmp_path / "log"
    server = subprocess.Popen(
        [sys.executable, str(script), str(folder)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        port = int(server.stdout.readline() or 0)  # type: ignore[union-attr]
        assert port, f"the server did not start: {server.communicate(timeout=30)[1]}"
        ids = [f"request-{i}" for i in range(200)]
        with (
            httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http,
            ThreadPoolExecutor(8) as pool,
        ):
            answers = list(pool.map(lambda i: http.post(f"/score/{i}"), ids))
        assert [answer.status_code for answer in answers] == [200] * len(ids)
        assert not parts(folder)  # everything is still queued in the server process
        server.send_signal(signal.SIGTERM)
        _, errors = server.communicate(timeout=60)
    finally:
        server.kill()
        server.wait()

    assert server.returncode in (0, -signal.SIGTERM), errors
    assert "Traceback" not in errors
    logged = read_log(str(folder), "toy")
    assert logged.height == 2 * len(ids)
    assert sorted(set(logged["request_id"])) == sorted(ids)


def test_entries_sharing_a_batch_frame_log_their_own_rows(tmp_path: Path) -> None:
    batch = _inputs(7)  # three requests scored together: rows 0-1, 2-5 and 6
    shares = {"a": (0, 2), "b": (2, 6), "c": (6, 7)}
    with PredictionLog(str(tmp_path), flush_seconds=3600) as log:
        for request_id, (start, stop) in shares.items():
            part = entry(request_id, stop - start)
            log.append(dataclasses.replace(part, inputs=batch, rows=(start, stop)))
        log.append(entry("alone", 2))  # a frame of its own, between nothing shared

    logged = read_log(str(tmp_path), "toy")
    assert logged["request_id"].to_list() == ["a"] * 2 + ["b"] * 4 + ["c", "alone", "alone"]
    assert logged["input.age"].to_list() == [*range(7), 0, 1]
    assert logged["row"].to_list() == [0, 1, 0, 1, 2, 3, 0, 0, 1]


@pytest.mark.parametrize("rows", [(-1, 1), (2, 1), (0, 8)], ids=["negative", "reversed", "past"])
def test_rows_outside_the_inputs_are_refused(tmp_path: Path, rows: tuple[int, int]) -> None:
    with PredictionLog(str(tmp_path)) as log, pytest.raises(ValueError, match=r"LogEntry\.rows"):
        log.append(dataclasses.replace(entry("bad", 7), rows=rows))
