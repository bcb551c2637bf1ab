"""The data stage: sources to one versioned training table, every row accounted for.

read (incremental when configured) → reconcile → validate in reference order →
quarantine and validation report → enforce → integrate → profile → version.
The stage is cached: when the sources' content, the spec's data sections and the
data code are unchanged, the stored version is reused (``keelson explain`` says why not).
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

import polars as pl

from keelson import __version__
from keelson.cache import CacheKey, StepCache, cache_key, code_version
from keelson.data.contracts import Validation, enforce, validate, validation_order, write_quarantine
from keelson.data.executor import dask_client, partitioned_sources, validate_partitioned
from keelson.data.sources import SourceRead, read_source
from keelson.data.versions import load_version, save_version
from keelson.run_context import RunContext
from keelson.store.tables import DatasetVersion

STEP = "dataset"


@dataclass(frozen=True)
class DataResult:
    version: DatasetVersion
    table: pl.DataFrame
    sources: list[dict[str, Any]]  # per source: validation summary + kind and location
    integration: dict[str, Any]  # joins, unions (with conflicts), derived columns
    reused: bool
    profile: dict[str, Any] | None = None  # this run's table profile (None when reused)


def prepare_data(ctx: RunContext) -> DataResult:
    reads = {name: _read(ctx, name) for name in ctx.spec.sources}
    key = _cache_key(ctx, reads)
    cache = StepCache(ctx.store, ctx.spec.name)
    ctx.log_params({f"explain.{STEP}": str(cache.explain(STEP, key))})
    hit = cache.lookup(key)
    if hit is not None:
        with ctx.step("dataset.cached") as detail:
            detail.update(version=hit["version"])
            return _reuse(ctx, hit)
    result = _build(ctx, reads)
    cache.save(
        key,
        {
            "version": result.version.id,
            "sources": result.sources,
            "integration": result.integration,
        },
    )
    return result


def _read(ctx: RunContext, name: str) -> SourceRead:
    source = ctx.spec.sources[name]
    with ctx.step(f"read.{name}") as detail:
        if getattr(source, "incremental", None) is not None:
            from keelson.data.incremental import read_incremental

            read = read_incremental(ctx.store, ctx.spec.name, name, source, ctx.project_dir)  # type: ignore[arg-type]
        else:
            read = read_source(name, source, ctx.project_dir)
        detail.update(rows=read.rows_in, rejected=read.rejected.height)
        if "incremental" in read.fingerprint:
            detail.update(incremental=read.fingerprint["incremental"])
    if name not in ctx.spec.reconcile:
        return read
    from keelson.data.reconcile import reconcile

    with ctx.step(f"reconcile.{name}") as detail:
        read = reconcile(read, ctx.spec.reconcile[name], name)
        detail.update(rows=read.frame.height, rejected=read.rejected.height)
    return read


def _data_code() -> list[ModuleType]:
    from keelson.data import (
        contracts,
        dedup,
        executor,
        integrate,
        joins,
        reconcile,
        rules,
        sources,
        versions,
    )

    return [sources, reconcile, rules, contracts, executor, dedup, joins, integrate, versions]


def _cache_key(ctx: RunContext, reads: dict[str, SourceRead]) -> CacheKey:
    spec = ctx.spec
    params: dict[str, Any] = spec.model_dump(
        mode="json", by_alias=True, include={"sources", "reconcile", "contracts", "integrate"}
    )
    if any(c.freshness for c in spec.contracts.values()):
        params["checked_on"] = datetime.now(UTC).date().isoformat()  # freshness ages daily
    inputs = {name: str(read.fingerprint.get("sha256", "")) for name, read in reads.items()}
    return cache_key(STEP, code_version(*_data_code()), inputs, params)


def _reuse(ctx: RunContext, hit: dict[str, Any]) -> DataResult:
    from keelson.data.versions import get_version

    version = get_version(ctx.store, hit["version"])
    table = load_version(ctx.store, version.id)
    return DataResult(version, table, hit["sources"], hit["integration"], reused=True)


def _validate_all(ctx: RunContext, reads: dict[str, SourceRead]) -> list[Validation]:
    validations: dict[str, Validation] = {}
    partitioned = partitioned_sources(ctx.spec, ctx.project_dir)  # {} unless engine: dask
    with dask_client(ctx.spec.execution) if partitioned else nullcontext() as client:
        for name in validation_order(ctx.spec.contracts, reads):
            contract = ctx.spec.contracts.get(name)
            referenced = {
                r.source: validations[r.source].kept
                for r in (contract.references if contract else [])
            }
            with ctx.step(f"validate.{name}") as detail:
                if name in partitioned:
                    parts = partitioned[name]
                    validations[name] = validate_partitioned(
                        parts.paths,
                        contract,
                        source=name,
                        execution=ctx.spec.execution,
                        references=referenced,
                        client=client,
                        storage_options=parts.storage_options,
                    )
                    detail.update(engine="dask", partitions=len(parts.paths))
                else:
                    validations[name] = validate(reads[name], contract, referenced)
                detail.update(validations[name].summary())
    return [validations[name] for name in reads]


def _build(ctx: RunContext, reads: dict[str, SourceRead]) -> DataResult:
    from keelson.data.integrate import integrate
    from keelson.report.validation_report import write_validation_report

    validations = _validate_all(ctx, reads)
    quarantine = write_quarantine(validations, ctx.output_dir / "quarantine.parquet")
    ctx.log_params({"quarantine": ctx.save_artifact("quarantine", quarantine, "parquet")})
    html, document = ctx.output_dir / "validation.html", ctx.output_dir / "validation.json"
    write_validation_report(validations, html, document)
    ctx.save_artifact("validation_report", html, "html")
    for validation in validations:
        enforce(validation, ctx.spec.contracts.get(validation.source))
    with ctx.step("integrate") as detail:
        integration = integrate({v.source: v.kept for v in validations}, ctx.spec.integrate)
        summary = {
            "joins": integration.joins,
            "unions": [u.summary() for u in integration.unions],
            "derived": integration.derived,
        }
        detail.update(rows=integration.table.height, columns=integration.table.width, **summary)
    _write_conflicts(ctx, integration.unions)
    version, table_profile = _version(ctx, integration.table, reads)
    sources = [_source_summary(v, reads[v.source]) for v in validations]
    return DataResult(version, integration.table, sources, summary, False, table_profile)


def _write_conflicts(ctx: RunContext, unions: list[Any]) -> None:
    for union in unions:
        if union.conflicts.height:
            path = ctx.output_dir / f"conflicts.{union.name}.parquet"
            union.conflicts.write_parquet(path)
            ctx.save_artifact("conflict_report", path, "parquet")


def _source_summary(validation: Validation, read: SourceRead) -> dict[str, Any]:
    return validation.summary() | {
        "kind": read.fingerprint.get("kind"),
        "location": read.fingerprint.get("location"),
    }


def _version(
    ctx: RunContext, table: pl.DataFrame, reads: dict[str, SourceRead]
) -> tuple[DatasetVersion, dict[str, Any]]:
    """Profile (the JSON reference now; its HTML page is drawn with the run report) and
    version the table."""
    from keelson.data.profile import profile_table
    from keelson.report.profile_report import write_profile_document

    with ctx.step("profile"):
        table_profile = profile_table(table)
        document = ctx.output_dir / "profile.json"
        write_profile_document(table_profile, document)
        ctx.save_artifact("profile", document, "json")
    with ctx.step("version") as detail:
        lineage = {
            "sources": {name: read.fingerprint for name, read in reads.items()},
            "spec_sha256": ctx.spec.digest(),
            "keelson_version": __version__,
            "run_id": ctx.run_id,
        }
        version, created = save_version(ctx.store, ctx.spec.name, table, lineage, ctx.run_id)
        detail.update(version=version.id, created=created, rows=table.height)
    return version, table_profile
