"""The ``keelson.yaml`` schema: the only place configuration is parsed.

Every section is a pydantic model; a wrong spec raises :class:`SpecError` naming
the key path, what is allowed and what was given (one error grammar).
"""

from __future__ import annotations

import hashlib
import json
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


class FileSource(_Section):
    """A local file read into a table; ``path`` is relative to the project folder."""

    kind: Literal["csv", "parquet", "json", "jsonl"]
    path: str
    separator: str = Field(",", min_length=1, max_length=1, description="CSV field separator.")
    encoding: str = Field("utf-8", description="Text encoding of a CSV/JSON file.")
    has_header: bool = True
    columns: list[str] | None = Field(None, description="Column names for a CSV without header.")
    null_values: list[str] = Field(
        default_factory=lambda: [""], description="Strings read as null."
    )


class SqlSource(_Section):
    """A SQL query through a SQLAlchemy URL (``sqlite:///data/x.db``, ``postgresql://…``).

    A relative SQLite path is resolved against the project folder.
    """

    kind: Literal["sql"]
    url: str
    query: str


Source = Annotated[FileSource | SqlSource, Field(discriminator="kind")]


# --- contracts ---------------------------------------------------------------


class ColumnRule(_Section):
    type: ColumnType | None = None
    nullable: bool = True
    min: float | None = None
    max: float | None = None
    allowed: list[str | int | float | bool] | None = None

    @model_validator(mode="after")
    def _range_ordered(self) -> ColumnRule:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) must not exceed max ({self.max})")
        return self


class Contract(_Section):
    """Rules for one source. Rows that break a rule are quarantined with the reason."""

    columns: dict[str, ColumnRule] = Field(default_factory=dict)
    unique: list[str] = Field(default_factory=list, description="Columns forming a unique key.")
    max_quarantine_share: float = Field(0.05, ge=0.0, le=1.0)
    strict_columns: bool = Field(
        False, description="Fail when the source has columns the contract does not list."
    )


# --- integration -------------------------------------------------------------


class Join(_Section):
    source: str
    keys: list[str] = Field(min_length=1, description="Columns present in both tables.")
    how: Literal["left", "inner"] = "left"
    validate_: Literal["m:1", "1:1", "1:m", "m:m"] = Field("m:1", alias="validate")


class Integrate(_Section):
    base: str
    joins: list[Join] = Field(default_factory=list)
    drop: list[str] = Field(default_factory=list, description="Columns dropped after joining.")


# --- learning ----------------------------------------------------------------


class Target(_Section):
    column: str
    task: Literal["binary"] = "binary"
    positive: str | int | bool = Field(1, description="The label value of the positive class.")


class Split(_Section):
    test: float = Field(0.2, gt=0.0, lt=0.5)
    validation: float = Field(0.2, gt=0.0, lt=0.5)
    stratify: bool = True
    seed: int = 42


Metric = Literal["roc_auc", "pr_auc", "log_loss"]
ThresholdMetric = Literal["f1", "precision", "recall", "balanced_accuracy"]
Family = Literal["logistic", "hist_gradient_boosting", "lightgbm"]
FAMILY_NAMES: tuple[Family, ...] = ("logistic", "hist_gradient_boosting", "lightgbm")


class Budget(_Section):
    seconds: float = Field(90.0, gt=0.0, description="Wall-clock seconds for the search.")
    max_trials: int | None = Field(None, ge=1)


class Train(_Section):
    candidates: list[Family] = Field(default_factory=lambda: list(FAMILY_NAMES), min_length=1)
    metric: Metric = Field("roc_auc", description="Metric the search maximises (log_loss: min).")
    threshold_metric: ThresholdMetric = Field(
        "f1", description="Metric the threshold is tuned for."
    )
    budget: Budget = Field(default_factory=Budget)
    cv_folds: int = Field(3, ge=2, le=10)
    class_weight: Literal["auto", "balanced", "none"] = Field(
        "auto", description="auto: the search tries both balanced class weights and none."
    )
    bootstrap: int = Field(1000, ge=50, description="Bootstrap resamples for the intervals.")
    seed: int = 42


class Registry(_Section):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,99}$")
    alias: str | None = Field("production", pattern=r"^[a-z][a-z0-9_-]{0,49}$")


class Store(_Section):
    url: str | None = Field(None, description="SQLAlchemy URL; default: SQLite in .keelson/")
    artifacts: str | None = Field(None, description="fsspec URL; default: .keelson/artifacts")


class ProjectSpec(_Section):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
    store: Store = Field(default_factory=Store)
    sources: dict[str, Source] = Field(min_length=1)
    contracts: dict[str, Contract] = Field(default_factory=dict)
    integrate: Integrate | None = None
    target: Target
    split: Split = Field(default_factory=Split)
    train: Train = Field(default_factory=Train)
    registry: Registry

    @model_validator(mode="after")
    def _names_resolve(self) -> ProjectSpec:
        known = set(self.sources)
        for name in self.contracts:
            if name not in known:
                raise ValueError(f"contract for unknown source {name!r}; sources: {sorted(known)}")
        if self.integrate is None:
            if len(self.sources) > 1:
                raise ValueError("several sources need an 'integrate' section saying how to join")
            return self
        for name in [self.integrate.base, *(j.source for j in self.integrate.joins)]:
            if name not in known:
                raise ValueError(
                    f"integrate names unknown source {name!r}; sources: {sorted(known)}"
                )
        return self

    @property
    def base_source(self) -> str:
        return self.integrate.base if self.integrate else next(iter(self.sources))

    def digest(self) -> str:
        """SHA-256 of the canonical JSON of the spec: part of every lineage record."""
        canonical = json.dumps(self.model_dump(mode="json", by_alias=True), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()


# --- loading -----------------------------------------------------------------


def _key_path(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif item in {"FileSource", "SqlSource"} or item in {
            "csv",
            "parquet",
            "json",
            "jsonl",
            "sql",
        }:
            continue  # discriminator tags pydantic inserts; not part of the user's key path
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
