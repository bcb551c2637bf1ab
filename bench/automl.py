"""AutoML at equal budget: keelson against FLAML and AutoGluon-Tabular on five binary tasks.

For each dataset and seed, one fixed 25 % test split (stratified; electricity: the last
25 % of rows in time order) is written once as Parquet and shared by every tool. Each
tool runs in a subprocess of its own (a runner in ``bench/automl_runners/``, with that
tool's venv): it gets the training table and the test *features*, fits with the budget
and the seed, and writes P(positive) per test row. The harness keeps the test labels,
scores ROC-AUC, PR-AUC and log-loss, and measures the wall time of the whole subprocess
(interpreter start and imports included: what a user waits for) and the peak RSS of its
process tree. A run still going at 2 x budget + 120 s is killed; a killed or failed run
is reported as failed and counts as a loss.

Every run appends one row to the results CSV; runs already there are skipped, so a long
matrix can be stopped and resumed. Then, per dataset and budget, a table of means over
the seeds and the ratio keelson/peer, and one summary line.

    uv run python bench/automl.py --setup        # the peers' venvs in bench/.venvs/
    uv run python bench/automl.py --budgets 60 300 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from peer_venvs import PEER_PYTHON, Venv

ROOT = Path(__file__).resolve().parent.parent
RUNNERS = ROOT / "bench" / "automl_runners"
TEST_SHARE = 0.25
EPS = 1e-15
SAMPLE_S = 0.2


# --- datasets ------------------------------------------------------------------------


@dataclass(frozen=True)
class Dataset:
    """A binary task read from the shared data folder; ``time_column`` marks a time split."""

    key: str
    title: str
    target: str
    positive: str | int
    read: Callable[[Path], pl.DataFrame]
    time_column: str | None = None


def read_bank(root: Path) -> pl.DataFrame:
    """bank-additional-full without ``duration`` (known only after the call: it leaks)."""
    frame = pl.read_csv(
        root / "bank_marketing" / "bank-additional-full.csv",
        separator=";",
        infer_schema_length=None,
    )
    return _snake(frame.drop("duration"))


ADULT_COLUMNS = [
    "age", "workclass", "fnlwgt", "education", "education_num", "marital_status",
    "occupation", "relationship", "race", "sex", "capital_gain", "capital_loss",
    "hours_per_week", "native_country", "income",
]  # fmt: skip
ADULT_NUMBERS = [
    "age", "fnlwgt", "education_num", "capital_gain", "capital_loss", "hours_per_week"
]  # fmt: skip


def read_adult(root: Path) -> pl.DataFrame:
    """adult.data and adult.test stacked; ``?`` is null, test labels lose their period."""
    folder = root / "adult_census_income"
    parts = [
        pl.read_csv(
            folder / name,
            has_header=False,
            new_columns=ADULT_COLUMNS,
            skip_rows=skip,
            infer_schema=False,  # every field but the first starts with a space
        )
        for name, skip in (("adult.data", 0), ("adult.test", 1))
    ]
    text = pl.all().str.strip_chars()
    frame = pl.concat(parts).with_columns(pl.when(text != "?").then(text).name.keep())
    return frame.filter(pl.col("income").is_not_null()).with_columns(
        pl.col(ADULT_NUMBERS).cast(pl.Int64), pl.col("income").str.strip_chars_end(".")
    )


def read_telco(root: Path) -> pl.DataFrame:
    """IBM telco churn; the 11 blank ``TotalCharges`` (tenure 0) are null."""
    path = root / "telco_churn" / "WA_Fn-UseC_-Telco-Customer-Churn.csv"
    frame = pl.read_csv(path, null_values=[" "], infer_schema_length=None)
    return frame.drop("customerID")


GERMAN_COLUMNS = [
    "checking_status", "duration", "credit_history", "purpose", "credit_amount",
    "savings", "employment", "installment_rate", "personal_status", "other_debtors",
    "residence_since", "property", "age", "other_installment_plans", "housing",
    "existing_credits", "job", "num_dependents", "telephone", "foreign_worker", "class",
]  # fmt: skip


def read_german(root: Path) -> pl.DataFrame:
    """Statlog German credit (names from german.doc); class 2 = bad credit."""
    return pl.read_csv(
        root / "german_credit" / "german.data",
        separator=" ",
        has_header=False,
        new_columns=GERMAN_COLUMNS,
        infer_schema_length=None,
    )


def read_electricity(root: Path) -> pl.DataFrame:
    """Elec2 in its file order, which is time order (``date`` then ``period``)."""
    return pl.read_csv(root / "electricity_elec2" / "electricity.csv", infer_schema_length=None)


def _snake(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.rename({c: c.replace(".", "_") for c in frame.columns})


DATASETS = {
    d.key: d
    for d in (
        Dataset("bank", "bank_marketing", "y", "yes", read_bank),
        Dataset("adult", "adult", "income", ">50K", read_adult),
        Dataset("telco", "telco_churn", "Churn", "Yes", read_telco),
        Dataset("german", "german_credit", "class", 2, read_german),
        Dataset("elec2", "electricity_elec2", "class", "UP", read_electricity, "date"),
    )
}


# --- split and cache -----------------------------------------------------------------


def split_rows(
    labels: np.ndarray, seed: int, *, in_time_order: bool, test_share: float = TEST_SHARE
) -> tuple[np.ndarray, np.ndarray]:
    """Train and test row positions, each sorted: stratified, or the last rows in time."""
    rows = np.arange(labels.size)
    n_test = math.ceil(labels.size * test_share)
    if in_time_order:
        return rows[:-n_test], rows[-n_test:]
    from sklearn.model_selection import train_test_split

    train, test = train_test_split(rows, test_size=n_test, random_state=seed, stratify=labels)
    return np.sort(train), np.sort(test)


@dataclass(frozen=True)
class Prepared:
    """One dataset and seed, on disk: what the tools read, and the labels they never see."""

    dataset: Dataset
    seed: int
    folder: Path

    @property
    def train(self) -> Path:
        return self.folder / "train.parquet"

    @property
    def test(self) -> Path:
        return self.folder / "test_features.parquet"

    @property
    def labels(self) -> np.ndarray:
        return np.load(self.folder / "test_labels.npy")

    @property
    def meta(self) -> dict[str, Any]:
        return json.loads((self.folder / "meta.json").read_text(encoding="utf-8"))


def prepare(dataset: Dataset, seed: int, data: Path, cache: Path) -> Prepared:
    """Write the split once (atomically: a whole folder, renamed into place)."""
    prepared = Prepared(dataset, seed, cache / "splits" / f"{dataset.key}-seed{seed}")
    if prepared.folder.exists():
        return prepared
    frame = dataset.read(data)
    positive = (frame[dataset.target] == dataset.positive).to_numpy()
    train, test = split_rows(positive, seed, in_time_order=dataset.time_column is not None)
    staging = prepared.folder.with_name(prepared.folder.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    frame[train].write_parquet(staging / "train.parquet")
    frame[test].drop(dataset.target).write_parquet(staging / "test_features.parquet")
    np.save(staging / "test_labels.npy", positive[test].astype(np.int8))
    meta = {"n_train": train.size, "n_test": test.size, "pos_rate": float(positive[test].mean())}
    (staging / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    staging.rename(prepared.folder)
    return prepared


# --- metrics -------------------------------------------------------------------------

METRICS = ("roc_auc", "pr_auc", "log_loss")


def scores(labels: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """ROC-AUC, PR-AUC (average precision) and log-loss (probabilities clipped to 1e-15)."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    p = np.clip(proba, EPS, 1 - EPS)
    log_loss = -np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p))
    return {
        "roc_auc": float(roc_auc_score(labels, proba)),
        "pr_auc": float(average_precision_score(labels, proba)),
        "log_loss": float(log_loss),
    }


# --- tools and runs --------------------------------------------------------------------


PEER_VENVS = {
    # pyarrow: FLAML does not pull it, and the runner reads Parquet.
    "flaml": Venv("flaml", ("flaml[automl]", "pyarrow")),
    "autogluon": Venv("autogluon", ("autogluon.tabular[lightgbm,catboost,xgboost]",)),
}


@dataclass(frozen=True)
class Tool:
    name: str
    label: str
    runner: str
    venv: Venv | None = None  # None: the project's own environment
    preset: str | None = None

    @property
    def python(self) -> Path:
        return self.venv.python if self.venv else Path(sys.executable)


TOOLS = {
    t.name: t
    for t in (
        Tool("keelson", "keelson", "keelson_runner.py"),
        Tool("flaml", "FLAML", "flaml_runner.py", PEER_VENVS["flaml"]),
        Tool(
            "autogluon-medium",
            "AG-medium",
            "autogluon_runner.py",
            PEER_VENVS["autogluon"],
            "medium_quality",
        ),
        Tool(
            "autogluon-best",
            "AG-best",
            "autogluon_runner.py",
            PEER_VENVS["autogluon"],
            "best_quality",
        ),
    )
}


@dataclass(frozen=True)
class Watched:
    """How a subprocess ended: exit code (None: killed at the deadline), wall time, and the
    peak memory of its process tree (PSS: shared pages split among the processes; RSS sum)."""

    returncode: int | None
    wall_s: float
    peak_mb: float
    peak_rss_mb: float


def watch(command: list[str], log: Path, limit_s: float, env: dict[str, str]) -> Watched:
    """Run ``command`` in its own process group, sampling the tree's memory; kill at the limit."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env
        )
        pss, rss, killed = 0, 0, False
        try:
            while process.poll() is None:
                sample = tree_memory(process.pid)
                pss, rss = max(pss, sample[0]), max(rss, sample[1])
                killed = time.perf_counter() - start > limit_s
                if killed:
                    break
                time.sleep(SAMPLE_S)
        finally:  # the deadline, or the harness itself interrupted: no orphaned tree
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    largest = after * 1024 if after > before else 0  # KiB on Linux; the largest one process
    code = None if killed else process.returncode
    return Watched(code, wall, pss / 2**20, max(rss, largest) / 2**20)


def tree_memory(pid: int) -> tuple[int, int]:
    """Bytes in memory of a process and all its descendants: (PSS, RSS), 0 once gone."""
    import psutil

    try:
        root = psutil.Process(pid)
        members = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0, 0
    pss = rss = 0
    for member in members:
        try:
            info = member.memory_full_info()
        except psutil.Error:
            continue
        rss += info.rss
        pss += getattr(info, "pss", info.rss)  # PSS is Linux-only
    return pss, rss


def tool_env(tool: Tool) -> dict[str, str]:
    """The caller's environment, minus uv's pointer to keelson's venv for the peers."""
    env = dict(os.environ)
    if tool.venv is not None:
        env.pop("VIRTUAL_ENV", None)
        env["PATH"] = f"{tool.venv.python.parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def run_tool(tool: Tool, prepared: Prepared, budget: float, runs: Path) -> dict[str, Any]:
    """Fit and predict in the tool's subprocess; return the result row (status and scores)."""
    folder = runs / f"{tool.name}-{prepared.dataset.key}-b{budget:g}-seed{prepared.seed}"
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "work").mkdir(parents=True)
    out = folder / "proba.npy"
    task = _task(tool, prepared, budget, out, folder / "work")
    (folder / "task.json").write_text(json.dumps(task, indent=2), encoding="utf-8")
    command = [str(tool.python), str(RUNNERS / tool.runner), str(folder / "task.json")]
    load1, started = os.getloadavg()[0], datetime.now(UTC).isoformat(timespec="seconds")
    watched = watch(command, folder / "log.txt", 2 * budget + 120, tool_env(tool))
    row = {
        "tool": tool.name,
        "dataset": prepared.dataset.key,
        "budget_s": budget,
        "seed": prepared.seed,
        "wall_s": round(watched.wall_s, 2),
        "wall_budget": round(watched.wall_s / budget, 4),
        "peak_mb": round(watched.peak_mb, 1),
        "peak_rss_mb": round(watched.peak_rss_mb, 1),
        "load1": round(load1, 2),
        "started": started,
        **prepared.meta,
    }
    row |= _outcome(watched, out, prepared.labels, folder / "log.txt")
    if row["status"] == "ok":  # the budget governs fitting (imports included), not predicting
        row["wall_budget"] = round(row["fit_s"] / budget, 4)
    if row["status"] == "ok":  # a failed run keeps its models and project, to be inspected
        shutil.rmtree(folder / "work", ignore_errors=True)
    return row


def _task(tool: Tool, prepared: Prepared, budget: float, out: Path, work: Path) -> dict[str, Any]:
    dataset = prepared.dataset
    return {
        "train": str(prepared.train),
        "test": str(prepared.test),
        "out": str(out),
        "workdir": str(work),
        "target": dataset.target,
        "positive": dataset.positive,
        "time_column": dataset.time_column,
        "budget": budget,
        "seed": prepared.seed,
        "preset": tool.preset,
    }


def _outcome(watched: Watched, out: Path, labels: np.ndarray, log: Path) -> dict[str, Any]:
    """Scores of a finished run, or why it counts as failed."""
    if watched.returncode is None:
        return {"status": "timeout", "error": f"killed after {watched.wall_s:.0f}s"}
    if watched.returncode != 0 or not out.exists():
        return {"status": "failed", "error": _last_line(log) or f"exit {watched.returncode}"}
    proba = np.load(out)
    if proba.shape != labels.shape or not np.all(np.isfinite(proba)):
        return {"status": "failed", "error": f"bad predictions: shape {proba.shape}"}
    info = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    details = {"fit_s": round(info["fit_s"], 2), "version": info.get("version", "")}
    return {"status": "ok", **scores(labels, proba), **details, "model": info.get("model", "")}


def _last_line(log: Path) -> str:
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1].strip()[:300] if lines else ""


# --- results file --------------------------------------------------------------------

FIELDS = [
    "tool", "dataset", "budget_s", "seed", "status", "roc_auc", "pr_auc", "log_loss",
    "wall_s", "wall_budget", "peak_mb", "peak_rss_mb", "fit_s", "n_train", "n_test",
    "pos_rate", "load1", "version", "model", "started", "error",
]  # fmt: skip
Key = tuple[str, str, float, int]


def row_key(row: dict[str, Any]) -> Key:
    return (row["tool"], row["dataset"], float(row["budget_s"]), int(row["seed"]))


def read_results(path: Path) -> dict[Key, dict[str, Any]]:
    """The last row of each (tool, dataset, budget, seed), numbers parsed."""
    if not path.exists():
        return {}
    with path.open(newline="", encoding="utf-8") as handle:
        rows = [_parsed(row) for row in csv.DictReader(handle)]
    return {row_key(row): row for row in rows}


def _parsed(row: dict[str, str]) -> dict[str, Any]:
    numbers = {*METRICS, "wall_s", "wall_budget", "peak_mb", "peak_rss_mb", "budget_s"}
    parsed: dict[str, Any] = dict(row)
    for name in numbers:
        parsed[name] = float(row[name]) if row.get(name) else math.nan
    parsed["seed"] = int(row["seed"])
    return parsed


def append_result(path: Path, row: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and path.stat().st_size and _header(path) != FIELDS:
        _rewrite(path)
    new = not path.exists() or path.stat().st_size == 0
    with path.open("a", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, FIELDS, extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow(row)
        handle.flush()
        os.fsync(handle.fileno())


def _header(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8") as handle:
        return next(csv.reader(handle), [])


def _rewrite(path: Path) -> None:
    """A results file from an older harness, rewritten under today's columns (atomically)."""
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    staging = path.with_name(path.name + ".tmp")
    with staging.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    staging.replace(path)


# --- summary -------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """One tool on one dataset and budget: means over the seeds that finished."""

    roc_auc: float
    pr_auc: float
    log_loss: float
    wall_budget: float  # over every run, failed ones included (their time was spent)
    peak_mb: float
    runs: int
    failed: int

    def ratio(self, peer: Cell) -> dict[str, float]:
        """keelson (self) against a peer, each > 1 when keelson is better (or spends more)."""
        return {
            "roc_auc": self.roc_auc / peer.roc_auc,
            "pr_auc": self.pr_auc / peer.pr_auc,
            "log_loss": peer.log_loss / self.log_loss,
            "wall_budget": self.wall_budget / peer.wall_budget,
            "peak_mb": self.peak_mb / peer.peak_mb,
        }


def cell(rows: Sequence[dict[str, Any]]) -> Cell:
    ok = [r for r in rows if r["status"] == "ok"]

    def mean(name: str, among: Sequence[dict[str, Any]]) -> float:
        values = [r[name] for r in among if not math.isnan(r[name])]
        return float(np.mean(values)) if values else math.nan

    return Cell(
        roc_auc=mean("roc_auc", ok),
        pr_auc=mean("pr_auc", ok),
        log_loss=mean("log_loss", ok),
        wall_budget=mean("wall_budget", rows),
        peak_mb=mean("peak_mb", ok),
        runs=len(rows),
        failed=len(rows) - len(ok),
    )


def cells(rows: Iterable[dict[str, Any]]) -> dict[tuple[str, float], dict[str, Cell]]:
    """(dataset, budget) -> tool -> Cell, in the order the rows come."""
    groups: dict[tuple[str, float], dict[str, list[dict[str, Any]]]] = {}
    for row in rows:
        where = groups.setdefault((row["dataset"], row["budget_s"]), {})
        where.setdefault(row["tool"], []).append(row)
    return {k: {t: cell(rs) for t, rs in tools.items()} for k, tools in groups.items()}


def beats(keelson: Cell | None, peer: Cell | None) -> bool:
    """keelson's mean ROC-AUC ≥ the peer's; a cell with a failed run is a loss for its tool."""
    if keelson is None or keelson.failed:
        return False
    return peer is None or peer.failed > 0 or keelson.roc_auc >= peer.roc_auc


def summary_line(table: dict[tuple[str, float], dict[str, Cell]], tools: Sequence[str]) -> str:
    """One line: where keelson's ROC-AUC is at least each peer's, mean wall/budget, failures."""
    peers = [t for t in tools if t != "keelson"]
    budgets = {budget for _, budget in table}
    unit = "datasets" if len(budgets) == 1 else "(dataset, budget) pairs"
    n = len(table)
    wins = []
    for peer in peers:
        won = sum(beats(c.get("keelson"), c.get(peer)) for c in table.values())
        wins.append(f"≥ {TOOLS[peer].label} on {won}/{n}")
    walls, fails = [], []
    for tool in tools:
        mine = [c[tool] for c in table.values() if tool in c]
        wall = [c.wall_budget for c in mine if not math.isnan(c.wall_budget)]
        walls.append(f"{TOOLS[tool].label} {np.mean(wall) if wall else math.nan:.2f}")
        failed, runs = sum(c.failed for c in mine), sum(c.runs for c in mine)
        fails.append(f"{TOOLS[tool].label} {failed}/{runs}")
    if "keelson" not in tools:
        head = "keelson not run"
    else:
        head = f"keelson ROC-AUC {', '.join(wins)} {unit}" if peers else "keelson only"
    return f"automl: {head}; mean wall/budget {' '.join(walls)}; failed {' '.join(fails)}"


def cell_table(cells_: dict[str, Cell], tools: Sequence[str]) -> list[list[str]]:
    """Rows of one dataset x budget table: each tool's means, then keelson ÷ each peer."""
    rows = []
    for tool in tools:
        if tool in cells_:
            c = cells_[tool]
            values = [c.roc_auc, c.pr_auc, c.log_loss, c.wall_budget, c.peak_mb]
            rows.append(
                [TOOLS[tool].label, *_numbers(values, CELL_FORMATS), f"{c.failed}/{c.runs}"]
            )
    mine = cells_.get("keelson")
    for tool in tools:
        if mine is not None and tool != "keelson" and tool in cells_:
            ratio = mine.ratio(cells_[tool])
            formats = ["{:.3f}"] * len(ratio)
            rows.append([f"keelson ÷ {TOOLS[tool].label}", *_numbers(ratio.values(), formats), ""])
    return rows


CELL_FORMATS = ["{:.4f}", "{:.4f}", "{:.4f}", "{:.2f}", "{:.0f}"]


def _numbers(values: Iterable[float], formats: Sequence[str]) -> list[str]:
    return [
        "–" if math.isnan(v) else form.format(v) for v, form in zip(values, formats, strict=True)
    ]


HEADER = ["tool", "roc_auc", "pr_auc", "log_loss", "wall/budget", "peak_mb", "failed"]


def render(title: str, rows: list[list[str]], markdown: bool) -> str:
    if markdown:
        lines = [f"**{title}**", "", "| " + " | ".join(HEADER) + " |"]
        lines.append("|" + "---|" * len(HEADER))
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines) + "\n"
    widths = [max(len(r[i]) for r in [HEADER, *rows]) for i in range(len(HEADER))]
    lines = [_aligned(row, widths) for row in [HEADER, *rows]]
    return "\n".join([title, *lines]) + "\n"


def _aligned(row: list[str], widths: list[int]) -> str:
    """The tool name to the left, numbers to the right."""
    cells = [row[0].ljust(widths[0])]
    cells += [text.rjust(width) for text, width in zip(row[1:], widths[1:], strict=True)]
    return "  ".join(cells)


# --- setup and the run ---------------------------------------------------------------


def setup(venvs: Iterable[Venv]) -> None:
    """Create each peer venv with uv (Python 3.11) and report install time and size."""
    uv = shutil.which("uv") or sys.exit("--setup needs uv on the PATH")
    for venv in venvs:
        start = time.perf_counter()
        subprocess.run(
            [uv, "venv", "--python", PEER_PYTHON, "--allow-existing", str(venv.folder)], check=True
        )
        install = [uv, "pip", "install", "--python", str(venv.python), *venv.packages]
        subprocess.run(install, check=True)
        size = sum(f.stat().st_size for f in venv.folder.rglob("*") if f.is_file())
        seconds = time.perf_counter() - start
        print(f"setup {venv.name}: {seconds:.0f}s, {size / 2**20:.0f} MB", flush=True)


def installed(tool: Tool) -> bool:
    return tool.python.exists()


def run_matrix(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every (dataset, seed, budget, tool) not yet in the results; returns the matrix's rows."""
    done = read_results(args.results)
    wanted: list[Key] = []
    for key in args.datasets:
        for seed in args.seeds:
            prepared = prepare(DATASETS[key], seed, args.data, args.cache)
            for budget in args.budgets:
                for name in args.tools:
                    wanted.append((name, key, float(budget), seed))
                    previous = done.get(wanted[-1])
                    if previous and (previous["status"] == "ok" or not args.retry_failed):
                        continue
                    row = _one(TOOLS[name], prepared, float(budget), args)
                    append_result(args.results, row)
                    done[wanted[-1]] = _parsed({k: str(v) for k, v in row.items()})
    return [done[k] for k in wanted]


def _one(tool: Tool, prepared: Prepared, budget: float, args: argparse.Namespace) -> dict[str, Any]:
    what = f"{tool.name} {prepared.dataset.key} budget={budget:g}s seed={prepared.seed}"
    say(f"{what}: running (limit {2 * budget + 120:.0f}s)")
    if not installed(tool):
        row = {"tool": tool.name, "dataset": prepared.dataset.key, "budget_s": budget}
        return row | {"seed": prepared.seed, "status": "failed", "error": "not installed"}
    row = run_tool(tool, prepared, budget, args.cache / "runs")
    shown = f"roc_auc={row['roc_auc']:.4f}" if row["status"] == "ok" else row["error"]
    say(f"{what}: {row['status']} {shown} wall={row['wall_s']:.0f}s peak={row['peak_mb']:.0f}MB")
    return row


def report(rows: list[dict[str, Any]], tools: Sequence[str], markdown: bool) -> None:
    table = cells(rows)
    for (dataset, budget), by_tool in table.items():
        title = f"{DATASETS[dataset].title}, budget {budget:g} s (means over seeds)"
        print(render(title, cell_table(by_tool, tools), markdown))
    print(summary_line(table, tools), flush=True)


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--setup", action="store_true", help="create the peers' venvs and stop")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--budgets", type=float, nargs="+", default=[60, 300])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--tools", nargs="+", choices=list(TOOLS), default=list(TOOLS))
    parser.add_argument("--datasets", nargs="+", choices=list(DATASETS), default=list(DATASETS))
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "results" / "automl.csv")
    parser.add_argument(
        "--cache",
        type=Path,
        default=ROOT / "bench" / ".venvs" / "automl-cache",
        help="splits, predictions and run logs",
    )
    parser.add_argument("--retry-failed", action="store_true", help="run failed rows again")
    parser.add_argument("--markdown", action="store_true", help="print the tables as markdown")
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    if args.setup:
        venvs = {v.name: v for t in args.tools if (v := TOOLS[t].venv) is not None}
        setup(venvs.values())
        return
    missing = [t for t in args.tools if not installed(TOOLS[t])]
    if missing:
        say(f"not installed (run --setup): {', '.join(missing)}; their runs count as failed")
    report(run_matrix(args), args.tools, args.markdown)


if __name__ == "__main__":
    main()
