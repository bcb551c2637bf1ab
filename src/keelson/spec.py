"""The ``keelson.yaml`` schema: the only place configuration is parsed.

Every section is a pydantic model; a wrong spec raises :class:`SpecError` naming
the key path, what is allowed and what was given (one error grammar).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from keelson.errors import SpecError

SPEC_FILE = "keelson.yaml"

ColumnType = Literal["int", "float", "str", "bool", "date", "datetime"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- sources -----------------------------------------------------------------

Duration = Annotated[
    str,
    Field(
        pattern=r"^\d+(\.\d+)?(ms|s|m|h|d|w)$",
        description="A duration such as 90s, 15m, 36h or 7d.",
    ),
]


class Incremental(_Section):
    """Read only rows whose watermark column is above the last run's maximum.

    New rows are appended to the source's stored snapshot; with ``keys``, a row whose
    key is already there replaces the stored one. The run uses the whole snapshot.
    """

    column: str = Field(description="Watermark column: a timestamp or an increasing number.")
    keys: list[str] = Field(default_factory=list, description="Key of a row, for updates.")


class FileSource(_Section):
    """A file read into a table. ``path`` is relative to the project folder, or an fsspec
    URL (``s3://bucket/key.csv``); ``storage_options`` go to fsspec (``${VAR}`` values are
    read from the environment, e.g. ``key: ${AWS_ACCESS_KEY_ID}``)."""

    kind: Literal["csv", "parquet", "json", "jsonl"]
    path: str
    storage_options: dict[str, str] = Field(default_factory=dict)
    separator: str = Field(",", min_length=1, max_length=1, description="CSV field separator.")
    quote: str = Field('"', min_length=1, max_length=1, description="CSV quote character.")
    encoding: str = Field("utf-8", description="Text encoding of a CSV/JSON file.")
    has_header: bool = True
    columns: list[str] | None = Field(None, description="Column names for a CSV without header.")
    null_values: list[str] = Field(
        default_factory=lambda: [""], description="Strings read as null."
    )
    incremental: Incremental | None = None


class SqlSource(_Section):
    """A SQL query through a SQLAlchemy URL (``sqlite:///data/x.db``, ``postgresql://…``,
    ``mysql+pymysql://…``). A relative SQLite path is resolved against the project folder;
    ``${VAR}`` in the URL is read from the environment (keep passwords out of the spec)."""

    kind: Literal["sql"]
    url: str
    query: str
    incremental: Incremental | None = None


class Pagination(_Section):
    """How an API splits its results into pages."""

    style: Literal["none", "page", "offset", "cursor"] = "none"
    page_param: str = "page"
    first_page: int = 1
    size_param: str | None = Field("per_page", description="Page size parameter (page style).")
    size: int = Field(100, ge=1, le=100_000)
    offset_param: str = "offset"
    limit_param: str = "limit"
    cursor_param: str = "cursor"
    cursor_path: str = Field("next_cursor", description="Dotted path of the next cursor.")
    max_pages: int = Field(10_000, ge=1)


class Retry(_Section):
    attempts: int = Field(5, ge=1, le=20)
    backoff_seconds: float = Field(0.5, ge=0.0, description="First wait; doubles each retry.")
    max_backoff_seconds: float = Field(30.0, ge=0.0)
    statuses: list[int] = Field(default_factory=lambda: [429, 500, 502, 503, 504])


class HttpSource(_Section):
    """A JSON API over HTTP(S), read page by page with retries and a timeout.

    Header values may use ``${VAR}`` from the environment, e.g.
    ``Authorization: "Bearer ${API_TOKEN}"``; secrets never go in the spec.
    """

    kind: Literal["http"]
    url: str = Field(pattern=r"^https?://")
    params: dict[str, str | int | float | bool] = Field(default_factory=dict)
    headers: dict[str, str] = Field(default_factory=dict)
    records_path: str | None = Field(
        None, description="Dotted path of the list of records in a response; none: the body."
    )
    pagination: Pagination = Field(default_factory=Pagination)
    retry: Retry = Field(default_factory=Retry)
    timeout_seconds: float = Field(30.0, gt=0.0)


Source = Annotated[FileSource | SqlSource | HttpSource, Field(discriminator="kind")]


# --- reconciliation ----------------------------------------------------------


class UnitConversion(_Section):
    """Convert a numeric column between units (pint names: lb, kg, degF, degC, mi, km)."""

    from_: str = Field(alias="from")
    to: str


class TimeZone(_Section):
    """Normalise a timestamp column to one zone. Naive values are read as ``from``."""

    from_: str = Field("UTC", alias="from", description="Zone of naive timestamps.")
    to: str = "UTC"
    format: str | None = Field(None, description="strptime format when the column is text.")


class Reconcile(_Section):
    """Make one source agree with the others before its contract is checked.

    Applied in this order: rename, standardize, coerce, units, timezone, derive.
    """

    rename: dict[str, str] = Field(default_factory=dict, description="Old name: new name.")
    standardize: dict[str, dict[str, list[str | int | float | bool]]] = Field(
        default_factory=dict,
        description='Column: {canonical value: [spellings]}, e.g. {"true": [Y, yes, 1]}.',
    )
    coerce: dict[str, ColumnType] = Field(
        default_factory=dict, description="Cast; values that do not convert are quarantined."
    )
    units: dict[str, UnitConversion] = Field(default_factory=dict)
    timezone: dict[str, TimeZone] = Field(default_factory=dict)
    derive: dict[str, str] = Field(
        default_factory=dict, description="New column: Polars SQL expression over the row."
    )


# --- contracts ---------------------------------------------------------------

Severity = Literal["warn", "quarantine", "fail"]
ColumnRuleName = Literal["type", "null", "min", "max", "allowed", "regex"]


class ColumnRule(_Section):
    """Rules for one column. ``severity`` applies to all of them, or per rule:
    ``severity: {min: warn}`` (warn: report only; quarantine: move the row; fail: stop)."""

    type: ColumnType | None = None
    nullable: bool = True
    min: float | None = None
    max: float | None = None
    allowed: list[str | int | float | bool] | None = None
    regex: str | None = Field(None, description="Text values must match (search, not full).")
    severity: Severity | dict[ColumnRuleName, Severity] = "quarantine"

    @model_validator(mode="after")
    def _range_ordered(self) -> ColumnRule:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) must not exceed max ({self.max})")
        return self

    def severity_of(self, rule: ColumnRuleName) -> Severity:
        if isinstance(self.severity, str):
            return self.severity
        return self.severity.get(rule, "quarantine")


class Reference(_Section):
    """Referential integrity: values of ``columns`` must exist in ``source``'s ``to``."""

    columns: list[str] = Field(min_length=1)
    source: str
    to: list[str] | None = Field(None, description="Columns in the referenced source.")
    severity: Severity = "quarantine"


class Freshness(_Section):
    """The newest value of a timestamp column must be at most ``max_age`` old."""

    column: str
    max_age: Duration
    severity: Literal["warn", "fail"] = "fail"


class RowCount(_Section):
    min: int | None = Field(None, ge=0)
    max: int | None = Field(None, ge=0)
    severity: Literal["warn", "fail"] = "fail"


class Check(_Section):
    """A custom rule: a Polars SQL expression that is true for a valid row."""

    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
    expr: str = Field(description='e.g. "arr_time >= 0 OR arr_time IS NULL"')
    severity: Severity = "quarantine"


class SchemaChanges(_Section):
    """What to do when a source's columns differ from its contract.

    added: columns the contract does not list (adopt keeps them, ignore drops them).
    missing: declared columns the source lacks (ignore adds them as nulls).
    retyped: a column whose values do not read as the declared type (ignore casts and
    quarantines what does not convert, adopt keeps the source's type).
    """

    added: Literal["adopt", "ignore", "fail"] = "adopt"
    missing: Literal["fail", "ignore"] = "fail"
    retyped: Literal["ignore", "adopt", "fail"] = "ignore"


class Contract(_Section):
    """Rules for one source. Rows that break a rule are quarantined with the reason."""

    columns: dict[str, ColumnRule] = Field(default_factory=dict)
    unique: list[str] | list[list[str]] = Field(
        default_factory=list, description="A key (list of columns) or several keys."
    )
    exact_duplicates: Literal["keep", "drop", "quarantine"] = Field(
        "keep", description="Rows identical in every column after the first."
    )
    references: list[Reference] = Field(default_factory=list)
    freshness: Freshness | None = None
    rows: RowCount | None = None
    checks: list[Check] = Field(default_factory=list)
    schema_changes: SchemaChanges = Field(default_factory=SchemaChanges)
    max_quarantine_share: float = Field(0.05, ge=0.0, le=1.0)

    @property
    def unique_keys(self) -> list[list[str]]:
        if not self.unique:
            return []
        return (
            [[key] if isinstance(key, str) else list(key) for key in self.unique]
            if isinstance(self.unique[0], list)
            else [[str(c) for c in self.unique]]
        )


# --- integration -------------------------------------------------------------

ConflictPolicy = Literal["latest", "priority", "most_complete", "fail"]


class Union(_Section):
    """The same entities from several sources, stacked and made unique by key.

    Exact duplicates are removed; rows sharing a key are merged column by column with a
    policy: latest (by ``timestamp``), priority (first source in ``priority`` that has a
    value), most_complete (the row with the fewest nulls), or fail.
    """

    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
    sources: list[str] = Field(min_length=2)
    keys: list[str] = Field(min_length=1)
    timestamp: str | None = None
    priority: list[str] = Field(default_factory=list, description="Defaults to sources order.")
    default: ConflictPolicy = "latest"
    conflicts: dict[str, ConflictPolicy] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _latest_needs_time(self) -> Union:
        uses_latest = self.default == "latest" or "latest" in self.conflicts.values()
        if uses_latest and self.timestamp is None:
            raise ValueError("the 'latest' policy needs a 'timestamp' column")
        return self


class AsOf(_Section):
    """Point-in-time join: each left row takes the last right row at or before its time."""

    left_on: str
    right_on: str
    tolerance: Duration | None = None
    strategy: Literal["backward", "forward", "nearest"] = "backward"
    allow_exact_matches: bool = True


class Join(_Section):
    source: str
    keys: list[str] = Field(
        default_factory=list, description="Columns present in both tables (as-of: entity keys)."
    )
    how: Literal["left", "inner"] = "left"
    validate_: Literal["m:1", "1:1", "1:m", "m:m"] = Field("m:1", alias="validate")
    as_of: AsOf | None = None

    @model_validator(mode="after")
    def _keys_or_time(self) -> Join:
        if not self.keys and self.as_of is None:
            raise ValueError("a join needs 'keys', or 'as_of' for a point-in-time join")
        return self


class Integrate(_Section):
    base: str
    unions: list[Union] = Field(default_factory=list)
    joins: list[Join] = Field(default_factory=list)
    derive: dict[str, str] = Field(
        default_factory=dict, description="New column: Polars SQL expression, after joins."
    )
    drop: list[str] = Field(default_factory=list, description="Columns dropped after joining.")


class Execution(_Section):
    """Where data work and trials run: Polars and worker processes on this machine, or a
    Dask cluster (partitioned sources are validated there and trials run as futures)."""

    engine: Literal["polars", "dask"] = "polars"
    address: str | None = Field(None, description="Dask scheduler; none: a local cluster.")
    workers: int = Field(
        2, ge=1, le=256, description="Processes of the local cluster (one thread each)."
    )


# --- learning ----------------------------------------------------------------


TaskKind = Literal["binary", "multiclass", "regression"]


class Target(_Section):
    column: str
    task: Literal["auto", "binary", "multiclass", "regression"] = Field(
        "auto",
        description="auto: two values: binary; a few values: multiclass; numbers: regression.",
    )
    positive: str | int | bool | None = Field(
        None, description="Binary only: the label of the positive class (default: the rarer one)."
    )


class Split(_Section):
    """The untouched test set, then K-fold cross-validation inside the rest."""

    method: Literal["auto", "random", "stratified", "time", "group"] = Field(
        "auto", description="auto: stratified for classification, random for regression."
    )
    test: float = Field(0.2, ge=0.0, lt=0.9, description="Share held out; 0 keeps no test set.")
    time_column: str | None = Field(None, description="method time: the column that orders rows.")
    group_column: str | None = Field(
        None, description="method group: rows sharing it stay together."
    )
    gap: int = Field(
        0, ge=0, description="method time: rows left out between training and scoring."
    )
    time_feature: bool = Field(
        False,
        description="method time: also learn from the time column itself. Off by default: "
        "every future row lies past the training range, where a model extrapolates flat.",
    )
    seed: int = 42

    @model_validator(mode="after")
    def _columns_named(self) -> Split:
        if self.method == "time" and not self.time_column:
            raise ValueError("method 'time' needs 'time_column'")
        if self.method == "group" and not self.group_column:
            raise ValueError("method 'group' needs 'group_column'")
        return self


Metric = Literal[
    "roc_auc",
    "pr_auc",
    "log_loss",
    "accuracy",
    "macro_f1",
    "balanced_accuracy",
    "roc_auc_ovr",
    "rmse",
    "mae",
    "r2",
]
TASK_METRICS: dict[str, tuple[str, ...]] = {
    "binary": ("roc_auc", "pr_auc", "log_loss"),
    "multiclass": ("log_loss", "macro_f1", "accuracy", "balanced_accuracy", "roc_auc_ovr"),
    "regression": ("rmse", "mae", "r2"),
}
ThresholdMetric = Literal["f1", "precision", "recall", "balanced_accuracy", "cost"]
Family = Literal[
    "linear", "random_forest", "extra_trees", "hist_gradient_boosting", "lightgbm", "xgboost"
]
FAMILY_NAMES: tuple[Family, ...] = (
    "linear",
    "random_forest",
    "extra_trees",
    "hist_gradient_boosting",
    "lightgbm",
)
Imbalance = Literal["weights", "over", "under", "smote", "balanced_bagging"]


class Budget(_Section):
    seconds: float = Field(
        90.0, gt=0.0, description="Wall-clock seconds for the whole run, data stage included."
    )
    max_trials: int | None = Field(None, ge=1, description="Stop after this many trials.")


class Costs(_Section):
    """Binary: what a wrong decision costs; the threshold then minimises the expected cost."""

    false_positive: float = Field(1.0, ge=0.0)
    false_negative: float = Field(1.0, ge=0.0)


class Train(_Section):
    candidates: list[Family] = Field(default_factory=lambda: list(FAMILY_NAMES), min_length=1)
    metric: Metric | None = Field(
        None,
        description="What the search optimises; default roc_auc (binary), log_loss (multiclass), "
        "rmse (regression).",
    )
    threshold_metric: ThresholdMetric = Field(
        "f1", description="Binary: what the decision threshold is tuned for (cost: uses costs)."
    )
    costs: Costs = Field(default_factory=Costs)
    budget: Budget = Field(default_factory=Budget)
    validation: Literal["cv", "holdout"] = Field(
        "cv",
        description="How trials are scored: cv (K folds; forward-chaining for a time split) or "
        "holdout (one share, the latest rows for a time split: faster on large tables).",
    )
    cv_folds: int = Field(5, ge=2, le=10)
    cv_repeats: Literal["auto"] | Annotated[int, Field(ge=1, le=10)] = Field(
        "auto",
        description="Stratified or random CV: repeats of the K folds, each time with other rows "
        "in each fold; a trial's score averages them, which steadies the scores of small "
        "tables. auto: enough repeats to score about 2,000 rows (at most 5).",
    )
    holdout: float = Field(0.2, gt=0.0, lt=0.5, description="validation holdout: the share scored.")
    imbalance: Literal["auto", "none"] | list[Imbalance] = Field(
        "auto",
        description="Classification: resampling/weighting the search may choose by CV. auto: all "
        "of them when the rarest class is under 30 %; none: never; or a list to choose from.",
    )
    calibration: Literal["auto", "isotonic", "sigmoid", "none"] = Field(
        "auto", description="Binary: calibrate probabilities on out-of-fold predictions."
    )
    ensemble: bool = Field(True, description="Greedy ensemble of the best trials if it wins in CV.")
    feature_selection: bool = Field(
        False, description="Drop features whose permutation importance does not pay, if CV agrees."
    )
    learning_curve: bool = Field(True, description="Measure CV score vs training rows.")
    workers: int | None = Field(
        None, ge=1, le=64, description="Trials run at once; default: the number of cores."
    )
    shared: bool = Field(
        False,
        description="Let `keelson worker` processes (on this or other machines) join this run's "
        "search: its Optuna study lives in the store (PostgreSQL for several machines).",
    )
    bootstrap: int = Field(1000, ge=50, description="Bootstrap resamples for the intervals.")
    seed: int = 42


class Registry(_Section):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,99}$")
    alias: str | None = Field("production", pattern=r"^[a-z][a-z0-9_-]{0,49}$")


class Store(_Section):
    url: str | None = Field(None, description="SQLAlchemy URL; default: SQLite in .keelson/")
    artifacts: str | None = Field(None, description="fsspec URL; default: .keelson/artifacts")


# --- serving -----------------------------------------------------------------


class Batching(_Section):
    max_wait_ms: float = Field(
        2.0,
        ge=0.0,
        le=1000.0,
        description="Under concurrent traffic, take more requests into a batch while they "
        "keep arriving, for this long at most; a lone request never waits.",
    )
    max_rows: int = Field(2000, ge=1, description="Rows scored in one model call at most.")
    inline_ms: float = Field(
        1.0,
        ge=0.0,
        le=1000.0,
        description="A batch the model last scored (at about its size) in under this many CPU "
        "milliseconds is scored on the event loop instead of the predict thread: the hand-off "
        "costs more than such a call blocks the loop. 0: always the predict thread.",
    )


class Traffic(_Section):
    policy: Literal["none", "canary", "ab", "shadow"] = Field(
        "none",
        description="canary: a random percent to the challenger; ab: the same share, sticky by "
        "the key header; shadow: the challenger scores a copy, only logged.",
    )
    challenger: str | None = Field(None, description="NAME@ALIAS or NAME@VERSION under trial.")
    percent: float = Field(10.0, ge=0.0, le=100.0, description="canary/ab: the challenger's share.")
    key_header: str = Field(
        "x-request-key", description="ab: the header that keeps a caller on one variant."
    )

    @model_validator(mode="after")
    def _challenger_named(self) -> Traffic:
        if self.policy != "none" and not self.challenger:
            raise ValueError(f"traffic policy '{self.policy}' needs 'challenger'")
        return self


class RateLimit(_Section):
    per_second: float = Field(50.0, gt=0.0, description="Sustained requests per second per key.")
    burst: int = Field(100, ge=1, description="Requests a key may send at once.")


class PredictionLogSpec(_Section):
    enabled: bool = True
    path: str | None = Field(None, description="Folder or fsspec URL; default .keelson/predictions")
    flush_rows: int = Field(1000, ge=1)
    flush_seconds: float = Field(1.0, gt=0.0)


class Serve(_Section):
    model: str | None = Field(None, description="NAME@ALIAS to serve; default registry name@alias.")
    host: str = Field("127.0.0.1", description="Loopback by default.")
    port: int = Field(8080, ge=1, le=65535)
    workers: int = Field(1, ge=1, le=64, description="Server processes (one intra-op thread each).")
    auth: Literal["auto", "keys", "none"] = Field(
        "auto", description="auto: API keys unless bound to loopback only."
    )
    allow_public_without_auth: bool = Field(
        False, description="Let auth 'none' bind beyond loopback (behind your own gateway)."
    )
    tls_certfile: str | None = None
    tls_keyfile: str | None = None
    rate_limit: RateLimit | None = Field(
        None,
        description="Every caller's limit, per API key (or client address without auth); "
        "null: only keys created with their own --rate are limited.",
    )
    max_body_bytes: int = Field(5 * 1024 * 1024, ge=1024)
    max_rows: int = Field(10_000, ge=1, description="Rows per request at most (413 beyond).")
    timeout_seconds: float = Field(10.0, gt=0.0, description="A request waits this long at most.")
    max_queue: int = Field(512, ge=1, description="Requests waiting at most; 503 beyond.")
    batching: Batching = Field(default_factory=Batching)
    compiled: bool = Field(
        True,
        description="Answer the model's tree ensembles (LightGBM, XGBoost, random forests, "
        "extra trees) with ONNX Runtime where they match the pipeline to 1e-6.",
    )
    follow_seconds: float = Field(2.0, gt=0.0, description="How often the alias is checked.")
    traffic: Traffic = Field(default_factory=Traffic)
    prediction_log: PredictionLogSpec = Field(default_factory=PredictionLogSpec)

    @model_validator(mode="after")
    def _tls_pair(self) -> Serve:
        if bool(self.tls_certfile) != bool(self.tls_keyfile):
            raise ValueError("TLS needs both 'tls_certfile' and 'tls_keyfile'")
        return self


class ProjectSpec(_Section):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
    store: Store = Field(default_factory=Store)
    sources: dict[str, Source] = Field(min_length=1)
    reconcile: dict[str, Reconcile] = Field(default_factory=dict)
    contracts: dict[str, Contract] = Field(default_factory=dict)
    integrate: Integrate | None = None
    execution: Execution = Field(default_factory=Execution)
    target: Target
    split: Split = Field(default_factory=Split)
    train: Train = Field(default_factory=Train)
    registry: Registry
    serve: Serve = Field(default_factory=Serve)

    @model_validator(mode="after")
    def _names_resolve(self) -> ProjectSpec:
        sources = set(self.sources)
        _known("reconcile", self.reconcile, sources)
        _known("contracts", self.contracts, sources)
        for name, contract in self.contracts.items():
            _known(f"contracts.{name}.references", [r.source for r in contract.references], sources)
        if self.integrate is None:
            if len(self.sources) > 1:
                raise ValueError("several sources need an 'integrate' section saying how to join")
            return self
        for union in self.integrate.unions:
            _known(f"integrate.unions {union.name!r}", union.sources, sources)
        tables = sources | {union.name for union in self.integrate.unions}
        _known(
            "integrate", [self.integrate.base, *(j.source for j in self.integrate.joins)], tables
        )
        return self

    @property
    def base_source(self) -> str:
        return self.integrate.base if self.integrate else next(iter(self.sources))

    def digest(self) -> str:
        """SHA-256 of the canonical JSON of the spec but its serving part: part of every
        lineage record."""
        trained = self.model_dump(mode="json", by_alias=True, exclude={"serve"})
        canonical = json.dumps(trained, sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()


def _known(where: str, names: Iterable[str], known: set[str]) -> None:
    for name in names:
        if name not in known:
            raise ValueError(f"{where} names unknown source {name!r}; known: {sorted(known)}")


# --- loading -----------------------------------------------------------------


_SOURCE_KINDS = {"csv", "parquet", "json", "jsonl", "sql", "http"}


def _key_path(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for index, item in enumerate(loc):
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif index == 2 and loc[0] == "sources" and item in _SOURCE_KINDS:
            continue  # the discriminator tag pydantic inserts; not part of the user's key path
        else:
            parts.append(f".{item}" if parts else str(item))
    return "".join(parts) or "(top level)"


def _describe(error: dict[str, Any]) -> str:
    field = f"The '{_key_path(error['loc'])}' field"
    if error["type"] == "missing":
        return f"{field} is required."
    if error["type"] == "extra_forbidden":
        return f"{field} is not a known key."
    shown = repr(error.get("input"))
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return f"{field}: {error['msg'].rstrip('.')}. Got {shown} instead."


def parse_spec(data: Any, where: str = SPEC_FILE) -> ProjectSpec:
    """Validate a decoded YAML document; raise one SpecError listing every problem."""
    if not isinstance(data, dict):
        raise SpecError("must be a mapping of sections (name, sources, target, ...).", where=where)
    try:
        return ProjectSpec.model_validate(data)
    except ValidationError as exc:
        problems = " ".join(_describe(e) for e in exc.errors(include_url=False))  # type: ignore[arg-type]
        raise SpecError(
            problems, where=where, hint="See `keelson spec schema` for every allowed key."
        ) from None


def load_spec(project_dir: Path) -> ProjectSpec:
    path = project_dir / SPEC_FILE if project_dir.is_dir() else project_dir
    if not path.exists():
        raise SpecError(
            "no spec file here.", where=str(path), hint="Run `keelson init DIR` to scaffold one."
        )
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SpecError(
            f"is not valid YAML{line}: {getattr(exc, 'problem', exc)}.", where=str(path)
        ) from None
    except UnicodeDecodeError as exc:
        raise SpecError(f"is not UTF-8 text (byte {exc.start}).", where=str(path)) from None
    return parse_spec(data, where=str(path))


def json_schema() -> dict[str, Any]:
    return ProjectSpec.model_json_schema(by_alias=True)
