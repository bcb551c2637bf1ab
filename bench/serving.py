"""Serving: keelson's server against MLflow's scoring server, BentoML and MLServer.

The same fitted pipeline (the bank example's, and a 500-tree LightGBM on 40 features,
both registered in keelson stores and exported once) is served by each server in turn,
one process group at a time with intra-op threads pinned to one (``OMP_NUM_THREADS=1``
and friends) and the same number of worker processes (``--workers``, 1 by default).
Every server's answers are checked once against the in-process ``predict_proba`` (to
1e-6) before it is timed. Load comes from ``wrk`` in a separate process on loopback:
the same rows in each server's native format, 1-row and 100-row requests, closed loops of
1, 8 and 32 connections (a warm-up per payload, then ``--duration`` seconds per cell);
timeouts and non-2xx answers count as errors, and only 2xx answers count in req/s.
The in-process floor is ``predict_proba`` called directly (one thread), and the same
with the V2 JSON decoded and the answer encoded.

Each cell appends one row to the results CSV; cells already there are skipped, so a run
resumes (``--redo`` measures the selected servers again: the newest row wins). Then a
table per model (medians over ``--repeat``) with keelson ÷ the best peer per cell, and
one summary line.

    uv run python bench/serving.py --setup          # peers' venvs in bench/.venvs/, wrk
    uv run python bench/serving.py                  # everything, ~10 s per cell
    uv run python bench/serving.py --models bank --servers keelson --redo \
        --keelson-args "--batch-wait-ms 2"
"""

from __future__ import annotations

import argparse
import csv
import importlib.metadata
import json
import math
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from peer_venvs import PEER_PYTHON, VENVS, Venv
from serving_peers import bentoml_peer, keelson_peer, mlflow_peer, mlserver_peer
from serving_peers.base import (
    ROOT,
    Endpoint,
    Launch,
    Options,
    ServedModel,
    Server,
    free_port,
)

SERVERS = {
    s.name: s
    for s in (
        keelson_peer.SERVER,
        mlflow_peer.SERVER,
        bentoml_peer.SERVER,
        mlserver_peer.DEFAULT,
        mlserver_peer.IN_PROCESS,
    )
}
KEELSON_LABELS = {e.label for e in keelson_peer.SERVER.endpoints}
PRIMARY = keelson_peer.V2.label  # keelson's row in the ratios: its V2 protocol
MODELS = ("bank", "lgbm")
THREAD_VARIABLES = (
    "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS",
)  # fmt: skip
# The peers' venvs get the very versions keelson's venv has of what the pickled pipeline is
# made of (no more: pinning pyarrow, say, made uv pick MLflow 1.27 to satisfy it).
PINNED = ("scikit-learn", "numpy", "scipy", "pandas", "lightgbm")
TOLERANCE = 1e-6
STOP_S = 15.0


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --- setup ----------------------------------------------------------------------------


def pins() -> list[str]:
    """``name==version`` of the pipeline's libraries, as installed in keelson's venv."""
    return [f"{name}=={importlib.metadata.version(name)}" for name in PINNED]


def setup(venvs: Iterable[Venv]) -> None:
    """Each peer's venv (uv, Python 3.11): the peer, keelson editable, the pinned libraries;
    and wrk from Debian's packages when it is missing."""
    uv = shutil.which("uv") or sys.exit("--setup needs uv on the PATH")
    for venv in venvs:
        start = time.perf_counter()
        create = [uv, "venv", "--python", PEER_PYTHON, "--allow-existing", str(venv.folder)]
        subprocess.run(create, check=True)
        install = [uv, "pip", "install", "--python", str(venv.python), *venv.packages]
        subprocess.run([*install, *pins(), "-e", str(ROOT)], check=True)
        say(f"setup {venv.name}: {time.perf_counter() - start:.0f}s")
    if shutil.which("wrk") is None:
        subprocess.run(["apt-get", "install", "-y", "wrk"], check=True)


# --- the in-process floor ---------------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    """Wall seconds of each call of a repeated function, and its process CPU seconds."""

    seconds: list[float]
    cpu_s: float

    def row(self, label: str, n: int) -> dict[str, Any]:
        """The floor's result row for ``n`` rows per call (one thread, so conc 1)."""
        median = statistics.median(self.seconds)
        p90, p99 = np.percentile(self.seconds, [90, 99])
        return {
            "server": label,
            "rows": n,
            "conc": 1,
            "status": "ok",
            "req_s": 1 / median,
            "rows_s": n / median,
            "p50_ms": median * 1e3,
            "p90_ms": float(p90) * 1e3,
            "p99_ms": float(p99) * 1e3,
            "max_ms": max(self.seconds) * 1e3,
            "requests": len(self.seconds),
            "errors": 0,
            "cpu_ms_req": self.cpu_s / len(self.seconds) * 1e3,
            "duration_s": sum(self.seconds),
        }


def time_calls(call: Callable[[], object], min_calls: int, min_seconds: float) -> Timing:
    """Call ``call()`` at least ``min_calls`` times and for at least ``min_seconds``."""
    call()  # warm-up
    seconds: list[float] = []
    cpu, started = time.process_time(), time.perf_counter()
    while len(seconds) < min_calls or time.perf_counter() - started < min_seconds:
        tick = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - tick)
    return Timing(seconds, time.process_time() - cpu)


def floor_calls(model: ServedModel, n: int) -> dict[str, Callable[[], object]]:
    """The floor's two calls for ``n`` rows: ``predict_proba`` on the frame keelson builds,
    and V2 JSON bytes → frame → ``predict_proba`` → JSON bytes."""
    import joblib
    import polars as pl
    from serving_peers.models import DTYPES, frame
    from serving_peers.payloads import v2_body

    pipeline = joblib.load(model.joblib)
    rows = model.rows.head(n)
    data = frame(rows)
    body = json.dumps(v2_body(rows, "probabilities")).encode()
    schema = {c: DTYPES[t] for c, t in zip(rows.columns, rows.types, strict=True)}

    def with_json() -> bytes:
        request = json.loads(body)
        columns = {tensor["name"]: tensor["data"] for tensor in request["inputs"]}
        proba = pipeline.predict_proba(pl.DataFrame(columns, schema=schema))
        output = {"name": "probabilities", "shape": list(proba.shape), "datatype": "FP64"}
        return json.dumps({"outputs": [output | {"data": proba.ravel().tolist()}]}).encode()

    return {"floor": lambda: pipeline.predict_proba(data), "floor-json": with_json}


def measure_floor(
    model: ServedModel, sizes: Sequence[int], min_calls: int, min_seconds: float
) -> list[dict[str, Any]]:
    """One row per floor kind and size, measured with intra-op threads limited to one."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        return [
            time_calls(call, min_calls, min_seconds).row(label, n)
            for n in sizes
            for label, call in floor_calls(model, n).items()
        ]


# --- server processes -------------------------------------------------------------------


def server_env(server: Server, launch: Launch) -> dict[str, str]:
    """The caller's environment with threads pinned, the server's venv first on PATH."""
    env = dict(os.environ) | dict.fromkeys(THREAD_VARIABLES, "1") | launch.env
    env["PYTHONUNBUFFERED"] = "1"
    if server.venv is not None:
        env.pop("VIRTUAL_ENV", None)
        env["PATH"] = f"{server.venv.bin}{os.pathsep}{env.get('PATH', '')}"
    return env


@dataclass
class Running:
    """A started server: its process group leader, base URL and log."""

    process: subprocess.Popen[bytes]
    base: str
    log: Path
    started_s: float
    ready_s: float = math.nan


@contextmanager
def running(
    server: Server, model: ServedModel, options: Options, work: Path, ready_s: float
) -> Iterator[Running]:
    """Start the server in its own process group; stop the group however the block ends."""
    port = free_port()
    launch = server.launch(model, port, options, work)
    log = work / f"{server.name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            launch.command,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=server_env(server, launch),
            cwd=launch.cwd,
        )
    handle = Running(process, f"http://127.0.0.1:{port}", log, time.perf_counter())
    try:
        wait_ready(handle, launch.ready_path, ready_s)
        yield handle
    finally:
        stop(process)


def wait_ready(handle: Running, path: str, limit_s: float) -> None:
    """Poll ``path`` until it answers 200; fail if the process exits or time runs out."""
    import httpx

    deadline = handle.started_s + limit_s
    with httpx.Client(timeout=2.0) as client:
        while time.perf_counter() < deadline:
            if handle.process.poll() is not None:
                raise RuntimeError(f"exited with {handle.process.returncode}: {last_line(handle)}")
            try:
                if client.get(handle.base + path).status_code == 200:
                    handle.ready_s = time.perf_counter() - handle.started_s
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.25)  # polling a process we do not own: no event to wait on
    raise RuntimeError(f"not ready after {limit_s:.0f}s: {last_line(handle)}")


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the group; SIGKILL to whatever is left of it after ``STOP_S``."""
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with suppress(subprocess.TimeoutExpired):
        process.wait(STOP_S)
    deadline = time.monotonic() + STOP_S
    while group_alive(process.pid) and time.monotonic() < deadline:
        time.sleep(0.1)  # the group's other processes (workers) finishing their shutdown
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def last_line(handle: Running) -> str:
    lines = [x for x in handle.log.read_text(errors="replace").splitlines() if x.strip()]
    return lines[-1].strip()[:300] if lines else "(no output)"


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of a process and its descendants alive now."""
    import psutil

    try:
        root = psutil.Process(pid)
        members = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0.0
    for member in members:
        try:
            times = member.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


# --- checking the answers -----------------------------------------------------------------


def check_answers(endpoint: Endpoint, model: ServedModel, base: str, sizes: Sequence[int]) -> str:
    """'' when the endpoint's probabilities match the in-process ones to 1e-6, else why not."""
    import httpx

    expected = model.expected
    for n in sizes:
        body = endpoint.body(model, model.rows.head(n))
        try:
            answer = httpx.post(endpoint.url(base, model), json=body, timeout=60)
            answer.raise_for_status()
            got = endpoint.parse(answer.json(), model)
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            return f"{n}-row answer unusable: {exc!s:.200}"
        problem = compare(got, expected[:n])
        if problem:
            return f"{n}-row answer: {problem}"
    return ""


def compare(got: np.ndarray, expected: np.ndarray) -> str:
    if got.shape != expected.shape:
        return f"shape {got.shape}, expected {expected.shape}"
    worst = float(np.max(np.abs(got - expected)))
    return f"differs from predict_proba by {worst:.2e}" if worst > TOLERANCE else ""


# --- load with wrk ------------------------------------------------------------------------

LUA = """-- POST the body file given after `--`; print the summary as one JSON line.
function init(args)
  local file = assert(io.open(args[1], "rb"))
  wrk.method = "POST"
  wrk.body = file:read("*a")
  wrk.headers["Content-Type"] = "application/json"
  file:close()
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, ' ..
    '"write": %d, "status": %d, "timeout": %d, "p50_us": %d, "p90_us": %d, ' ..
    '"p99_us": %d, "max_us": %d}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""
MARKER = "WRK_JSON "


def wrk_command(url: str, body: Path, script: Path, conc: int, seconds: float) -> list[str]:
    threads = min(conc, 2)
    timing = ["-d", f"{max(1, round(seconds))}s", "--timeout", "10s", "--latency"]
    load = ["-t", str(threads), "-c", str(conc), *timing, "-s", str(script)]
    return ["wrk", *load, url, "--", str(body)]


def parse_wrk(output: str) -> dict[str, Any]:
    """req/s (2xx only), latency percentiles (ms) and errors from the script's JSON line."""
    lines = [line for line in output.splitlines() if line.startswith(MARKER)]
    if not lines:
        tail = [line for line in output.splitlines() if line.strip()][-1:]
        raise ValueError(f"wrk printed no summary: {tail[0] if tail else '(nothing)'}")
    raw = json.loads(lines[-1].removeprefix(MARKER))
    seconds = raw["duration_us"] / 1e6
    ok = raw["requests"] - raw["status"]
    sockets = raw["connect"] + raw["read"] + raw["write"]
    return {
        "req_s": ok / seconds,
        "p50_ms": raw["p50_us"] / 1e3,
        "p90_ms": raw["p90_us"] / 1e3,
        "p99_ms": raw["p99_us"] / 1e3,
        "max_ms": raw["max_us"] / 1e3,
        "requests": raw["requests"],
        "errors": raw["status"] + sockets + raw["timeout"],
        "non2xx": raw["status"],
        "socket_errors": sockets,
        "timeouts": raw["timeout"],
        "duration_s": seconds,
    }


def run_wrk(url: str, body: Path, script: Path, conc: int, seconds: float) -> str:
    command = wrk_command(url, body, script, conc, seconds)
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    return done.stdout + done.stderr


def measure_cell(
    handle: Running, url: str, body: Path, script: Path, n: int, conc: int, seconds: float
) -> dict[str, Any]:
    """One wrk window, with the server tree's CPU per answered request."""
    cpu = tree_cpu_s(handle.process.pid)
    result = parse_wrk(run_wrk(url, body, script, conc, seconds))
    cpu = tree_cpu_s(handle.process.pid) - cpu
    answered = max(result["requests"], 1)
    return result | {"rows_s": result["req_s"] * n, "cpu_ms_req": cpu / answered * 1e3}


def drain(url: str, body: Path) -> None:
    """One more request, answered only after the queue wrk left behind: cells don't overlap."""
    import httpx

    with suppress(httpx.HTTPError):
        httpx.post(url, content=body.read_bytes(), timeout=60, headers=JSON_HEADERS)


JSON_HEADERS = {"Content-Type": "application/json"}


# --- results file ---------------------------------------------------------------------------

FIELDS = [
    "model", "server", "rows", "conc", "repeat", "workers", "status", "req_s", "rows_s",
    "p50_ms", "p90_ms", "p99_ms", "max_ms", "requests", "errors", "non2xx", "socket_errors",
    "timeouts", "cpu_ms_req",
    "duration_s", "ready_s", "load1", "keelson_args", "started", "error",
]  # fmt: skip
NUMBERS = {"req_s", "rows_s", "p50_ms", "p90_ms", "p99_ms", "max_ms", "cpu_ms_req", "ready_s"}
INTEGERS = {
    "rows",
    "conc",
    "repeat",
    "workers",
    "requests",
    "errors",
    "non2xx",
    "socket_errors",
    "timeouts",
}
Key = tuple[str, str, int, int, int, int]


def row_key(row: dict[str, Any]) -> Key:
    numbers = (int(row["rows"]), int(row["conc"]), int(row["repeat"]), int(row["workers"]))
    return (str(row["model"]), str(row["server"]), *numbers)


def parsed(row: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = dict(row)
    for name in NUMBERS:
        out[name] = float(row[name]) if row.get(name) else math.nan
    for name in INTEGERS:
        out[name] = int(float(row[name])) if row.get(name) else 0
    return out


def read_results(path: Path) -> dict[Key, dict[str, Any]]:
    """The newest row of each cell, numbers parsed."""
    if not path.exists():
        return {}
    with path.open(newline="", encoding="utf-8") as handle:
        return {row_key(r): r for r in map(parsed, csv.DictReader(handle))}


def append_result(path: Path, row: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists() or path.stat().st_size == 0
    with path.open("a", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, FIELDS, extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow({k: _rounded(v) for k, v in row.items()})
        handle.flush()
        os.fsync(handle.fileno())


def _rounded(value: Any) -> Any:
    return round(value, 3) if isinstance(value, float) else value


# --- the run ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """One measurement: an endpoint, a request size, a concurrency, a repeat."""

    endpoint: Endpoint
    rows: int
    conc: int
    repeat: int


class Run:
    """The matrix of one invocation: what to measure, where results go, what is done."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.options = Options(args.workers, tuple(shlex.split(args.keelson_args)))
        self.done = read_results(args.results)
        self.recorded: set[Key] = set()  # by this invocation
        self.script = args.cache / "post.lua"
        self.script.parent.mkdir(parents=True, exist_ok=True)
        self.script.write_text(LUA, encoding="utf-8")

    def base_row(self, model: ServedModel, server: str, n: int, conc: int, repeat: int) -> dict:
        return {
            "model": model.key,
            "server": server,
            "rows": n,
            "conc": conc,
            "repeat": repeat,
            "workers": self.args.workers,
            "keelson_args": self.args.keelson_args if server in KEELSON_LABELS else "",
            "load1": round(os.getloadavg()[0], 2),
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
        }

    def record(self, row: dict[str, Any]) -> None:
        append_result(self.args.results, row)
        self.done[row_key(row)] = parsed({k: str(v) for k, v in row.items()})
        self.recorded.add(row_key(row))

    def key(self, model: ServedModel, cell: Cell) -> Key:
        where = (cell.rows, cell.conc, cell.repeat, self.args.workers)
        return (model.key, cell.endpoint.label, *where)

    def pending(self, model: ServedModel, server: Server) -> list[Cell]:
        """The server's cells not yet in the results (all of them with ``--redo``)."""
        cells = []
        for endpoint in server.endpoints:
            for n in self.args.rows:
                for conc in self.args.conc:
                    for repeat in range(self.args.repeat):
                        cell = Cell(endpoint, n, conc, repeat)
                        previous = self.done.get(self.key(model, cell))
                        if self.args.redo or not previous or previous["status"] != "ok":
                            cells.append(cell)
        return cells

    def floor(self, model: ServedModel) -> None:
        say(f"{model.key}: in-process floor")
        floor = measure_floor(model, self.args.rows, self.args.floor_calls, self.args.floor_seconds)
        for result in floor:
            self.record(self.base_row(model, result["server"], result["rows"], 1, 0) | result)

    def serve(self, model: ServedModel, server: Server) -> None:
        """Start ``server`` once, check its answers, measure its pending cells, stop it."""
        cells = self.pending(model, server)
        if not cells:
            return
        if not server.installed:
            self.fail(model, cells, "not installed (run --setup)")
            return
        work = self.args.cache / "servers" / model.key
        work.mkdir(parents=True, exist_ok=True)
        say(f"{model.key} {server.name}: starting")
        try:
            server.prepare(model, work)
            with running(server, model, self.options, work, self.args.ready_timeout) as handle:
                say(f"{model.key} {server.name}: ready in {handle.ready_s:.1f}s")
                self.measure(model, handle, cells, work)
        except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:
            left = [c for c in cells if self.key(model, c) not in self.recorded]
            self.fail(model, left, f"{server.name}: {exc}")

    def fail(self, model: ServedModel, cells: Iterable[Cell], error: str) -> None:
        say(f"{model.key}: failed: {error}")
        for c in cells:
            row = self.base_row(model, c.endpoint.label, c.rows, c.conc, c.repeat)
            self.record(row | {"status": "failed", "error": error[:300]})

    def measure(self, model: ServedModel, handle: Running, cells: list[Cell], work: Path) -> None:
        by_endpoint: dict[str, list[Cell]] = {}
        for cell in cells:
            by_endpoint.setdefault(cell.endpoint.label, []).append(cell)
        for group in by_endpoint.values():
            endpoint = group[0].endpoint
            problem = check_answers(endpoint, model, handle.base, self.args.rows)
            if problem:
                self.fail(model, group, f"{endpoint.label}: wrong answers: {problem}")
                continue
            self.measure_endpoint(model, handle, endpoint, group, work)

    def measure_endpoint(
        self, model: ServedModel, handle: Running, endpoint: Endpoint, cells: list[Cell], work: Path
    ) -> None:
        url = endpoint.url(handle.base, model)
        warmed: set[int] = set()
        for cell in cells:
            body = work / f"{endpoint.label}-{cell.rows}.json"
            body.write_text(json.dumps(endpoint.body(model, model.rows.head(cell.rows))))
            if cell.rows not in warmed and self.args.warmup > 0:
                run_wrk(url, body, self.script, 8, self.args.warmup)
                drain(url, body)
                warmed.add(cell.rows)
            row = self.base_row(model, endpoint.label, cell.rows, cell.conc, cell.repeat)
            try:
                result = measure_cell(
                    handle, url, body, self.script, cell.rows, cell.conc, self.args.duration
                )
            except (ValueError, subprocess.TimeoutExpired) as exc:
                self.record(row | {"status": "failed", "error": str(exc)[:300]})
                continue
            finally:
                drain(url, body)
            self.record(row | result | {"status": "ok", "ready_s": handle.ready_s})
            say(
                f"{model.key} {endpoint.label} rows={cell.rows} c={cell.conc}: "
                f"{result['req_s']:.0f} req/s p50={result['p50_ms']:.1f}ms "
                f"p99={result['p99_ms']:.1f}ms errors={result['errors']}"
            )


def served_models(args: argparse.Namespace) -> list[ServedModel]:
    from serving_peers.models import bank_model, lgbm_model

    out = []
    for key in args.models:
        say(f"{key}: preparing the model (the first time, `keelson run` or a fit)")
        if key == "bank":
            out.append(bank_model(args.cache, args.bank_budget))
        else:
            out.append(lgbm_model(args.cache, args.lgbm_trees, args.lgbm_features))
    return out


def run(args: argparse.Namespace) -> tuple[list[dict[str, Any]], list[str]]:
    """Measure everything pending; the rows of this matrix (newest per cell), the models."""
    matrix = Run(args)
    models = served_models(args)
    for model in models:
        matrix.floor(model)
        for name in args.servers:
            matrix.serve(model, SERVERS[name])
    keys = [m.key for m in models]
    # Every server's newest rows, not only this run's: a re-run of keelson alone is compared
    # with the peers as last measured (with the same number of workers).
    labels = {e.label for s in SERVERS.values() for e in s.endpoints} | {"floor", "floor-json"}
    rows = [
        r
        for r in matrix.done.values()
        if r["model"] in keys
        and r["server"] in labels
        and r["rows"] in args.rows
        and (r["conc"] in args.conc or r["server"].startswith("floor"))
        and r["workers"] == args.workers
        and r["repeat"] < args.repeat
    ]
    return rows, keys


# --- tables and the summary line ---------------------------------------------------------------


@dataclass(frozen=True)
class Stat:
    """The median over the repeats of one (model, server, rows, conc) cell."""

    req_s: float
    rows_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_ms_req: float
    runs: int
    failed: int


CellKey = tuple[str, str, int, int]  # model, server, rows, conc


def medians(rows: Iterable[dict[str, Any]]) -> dict[CellKey, Stat]:
    groups: dict[CellKey, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["model"], row["server"], row["rows"], row["conc"]), []).append(row)
    return {key: _stat(group) for key, group in groups.items()}


def _stat(group: list[dict[str, Any]]) -> Stat:
    ok = [r for r in group if r["status"] == "ok"]

    def median(name: str) -> float:
        values = [r[name] for r in ok if not math.isnan(r[name])]
        return statistics.median(values) if values else math.nan

    return Stat(
        req_s=median("req_s"),
        rows_s=median("rows_s"),
        p50_ms=median("p50_ms"),
        p99_ms=median("p99_ms"),
        errors=sum(int(r["errors"]) for r in ok),
        cpu_ms_req=median("cpu_ms_req"),
        runs=len(group),
        failed=len(group) - len(ok),
    )


def best_peer(stats: dict[CellKey, Stat], model: str, n: int, conc: int) -> tuple[str, Stat] | None:
    """The peer (not keelson, not the floor) with the most 2xx req/s in this cell."""
    candidates = [
        (server, s)
        for (m, server, r, c), s in stats.items()
        if m == model and r == n and c == conc and not math.isnan(s.req_s)
        and server not in KEELSON_LABELS and not server.startswith("floor")
    ]  # fmt: skip
    return max(candidates, key=lambda item: item[1].req_s, default=None)


HEADER = ["server", "rows", "c", "req/s", "rows/s", "p50 ms", "p99 ms", "errors", "cpu ms/req"]


def model_table(stats: dict[CellKey, Stat], model: str) -> list[list[str]]:
    """Rows of one model's table: the floor, then per (rows, c) each server and the ratio."""
    mine = {k: s for k, s in stats.items() if k[0] == model}
    table = []
    for (_, server, n, _conc), s in sorted(mine.items(), key=lambda kv: kv[0][1:]):
        if server.startswith("floor"):
            table.append(_line(server, n, "–", s))
    for n, conc in sorted({(k[2], k[3]) for k in mine if not k[1].startswith("floor")}):
        for (_, server, _, _), s in sorted((k, v) for k, v in mine.items() if k[2:] == (n, conc)):
            if not server.startswith("floor"):
                table.append(_line(server, n, str(conc), s))
        ratio = _ratio_line(mine, model, n, conc)
        if ratio:
            table.append(ratio)
    return table


def _line(server: str, n: int, conc: str, s: Stat) -> list[str]:
    if s.failed == s.runs:
        return [server, str(n), conc, "failed", "", "", "", "", ""]
    return [
        server, str(n), conc, _n(s.req_s), _n(s.rows_s), f"{s.p50_ms:.1f}", f"{s.p99_ms:.1f}",
        str(s.errors), "–" if math.isnan(s.cpu_ms_req) else f"{s.cpu_ms_req:.1f}",
    ]  # fmt: skip


def _ratio_line(stats: dict[CellKey, Stat], model: str, n: int, conc: int) -> list[str] | None:
    mine, best = stats.get((model, PRIMARY, n, conc)), best_peer(stats, model, n, conc)
    if mine is None or best is None or math.isnan(mine.req_s):
        return None
    name, peer = best
    speed, p99 = mine.req_s / peer.req_s, mine.p99_ms / peer.p99_ms
    return [f"keelson ÷ {name}", str(n), str(conc), f"{speed:.2f}x", "", "", f"{p99:.2f}x", "", ""]


def _n(value: float) -> str:
    if math.isnan(value):
        return "–"
    return f"{value / 1000:.1f}k" if value >= 10_000 else f"{value:.0f}"


def render(title: str, rows: list[list[str]], markdown: bool) -> str:
    if markdown:
        lines = [f"**{title}**", "", "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
        return "\n".join([*lines, *("| " + " | ".join(r) + " |" for r in rows)]) + "\n"
    widths = [max(len(r[i]) for r in [HEADER, *rows]) for i in range(len(HEADER))]
    return "\n".join([title, *(_aligned(r, widths) for r in [HEADER, *rows])]) + "\n"


def _aligned(row: list[str], widths: list[int]) -> str:
    """The server's name to the left, numbers to the right."""
    cells = [row[0].ljust(widths[0])]
    cells += [text.rjust(width) for text, width in zip(row[1:], widths[1:], strict=True)]
    return "  ".join(cells)


GOAL_SPEED, GOAL_P99, GOAL_FLOOR = 3.0, 0.5, 1 / 1.5


def model_summary(stats: dict[CellKey, Stat], model: str) -> tuple[str, int, int]:
    """'1-row c8 keelson … = …x best peer (…), p99 …x; 100-row c8 … = …x floor', goals met."""
    parts, met, goals = [], 0, 0
    mine = stats.get((model, PRIMARY, 1, 8))
    best = best_peer(stats, model, 1, 8)
    if mine is not None and best is not None and not math.isnan(mine.req_s):
        name, peer = best
        speed, p99 = mine.req_s / peer.req_s, mine.p99_ms / peer.p99_ms
        parts.append(
            f"1-row c8 keelson {_n(mine.req_s)} req/s = {speed:.2f}x best peer "
            f"({name} {_n(peer.req_s)}), p99 {p99:.2f}x"
        )
        met, goals = met + (speed >= GOAL_SPEED and p99 <= GOAL_P99), goals + 1
    batch, floor = stats.get((model, PRIMARY, 100, 8)), stats.get((model, "floor", 100, 1))
    if batch is not None and floor is not None and not math.isnan(batch.rows_s):
        share = batch.rows_s / floor.rows_s
        parts.append(f"100-row c8 keelson {_n(batch.rows_s)} rows/s = {share:.2f}x floor")
        met, goals = met + (share >= GOAL_FLOOR), goals + 1
    return "; ".join(parts) or "keelson or the peers not measured", met, goals


def summary_line(stats: dict[CellKey, Stat], models: Sequence[str], workers: int) -> str:
    texts, met, goals = [], 0, 0
    for model in models:
        text, m, g = model_summary(stats, model)
        texts.append(f"{model}: {text}")
        met, goals = met + m, goals + g
    return f"serving (workers={workers}): {' | '.join(texts)}; goals met {met}/{goals}"


def report(rows: list[dict[str, Any]], models: Sequence[str], args: argparse.Namespace) -> None:
    stats = medians(rows)
    for model in models:
        title = f"{model} (workers={args.workers}; medians over {args.repeat} repeat(s))"
        print(render(title, model_table(stats, model), args.markdown))
    print(summary_line(stats, models, args.workers), flush=True)


# --- command line ---------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    add = parser.add_argument
    add("--setup", action="store_true", help="create the peers' venvs (and install wrk), stop")
    add("--models", nargs="+", choices=MODELS, default=list(MODELS))
    add("--servers", nargs="+", choices=list(SERVERS), default=list(SERVERS))
    add("--rows", type=int, nargs="+", default=[1, 100], help="rows per request")
    add("--conc", type=int, nargs="+", default=[1, 8, 32], help="concurrent connections")
    add("--duration", type=float, default=10.0, help="seconds measured per cell")
    add("--warmup", type=float, default=3.0, help="seconds of load before each payload")
    add("--repeat", type=int, default=1, help="measurements per cell (the tables: medians)")
    add("--workers", type=int, default=1, help="worker processes, the same for every server")
    add("--keelson-args", default="", help='more `keelson serve` arguments: "--batch-wait-ms 2"')
    add("--ready-timeout", type=float, default=180.0, help="seconds a server may take to start")
    add("--redo", action="store_true", help="measure again cells already in the results")
    add("--floor-calls", type=int, default=300, help="calls per floor measurement, at least")
    add("--floor-seconds", type=float, default=3.0, help="seconds per floor measurement, at least")
    add("--bank-budget", type=float, default=None, help="budget of the bank run (its spec's)")
    add("--lgbm-trees", type=int, default=500)
    add("--lgbm-features", type=int, default=40)
    add("--results", type=Path, default=ROOT / "bench" / "results" / "serving.csv")
    add("--cache", type=Path, default=VENVS / "serving-cache", help="models, logs, payloads")
    add("--markdown", action="store_true", help="print the tables as markdown")
    args = parser.parse_args(argv)
    args.cache = args.cache.resolve()
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.setup:
        venvs = {s.venv.name: s.venv for n in args.servers if (s := SERVERS[n]).venv}
        setup(venvs.values())
        return
    if shutil.which("wrk") is None:
        sys.exit("wrk is missing: run `python bench/serving.py --setup` (or apt-get install wrk)")
    missing = [n for n in args.servers if not SERVERS[n].installed]
    if missing:
        say(f"not installed (run --setup): {', '.join(missing)}; their cells count as failed")
    rows, models = run(args)
    report(rows, models, args)


if __name__ == "__main__":
    main()
