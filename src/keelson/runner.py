"""``keelson run``: raw sources to a registered model, one metered step at a time.

data stage (read, reconcile, validate, quarantine, integrate, profile, version; cached)
→ split → search → final fit (threshold, test with intervals) → register (+ alias) → report.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from keelson import __version__
from keelson.data.pipeline import DataResult, prepare_data
from keelson.data.profile import profile
from keelson.errors import KeelsonError
from keelson.registry import versions as registry
from keelson.registry.signature import Signature
from keelson.report import run_report
from keelson.run_context import RunContext
from keelson.store.tables import DatasetVersion
from keelson.train.final import FinalModel, LabelledRows, fit_final
from keelson.train.search import SearchResult, search
from keelson.train.split import Splits, split
from keelson.train.target import classes_of, features_and_labels


@dataclass(frozen=True)
class RunResult:
    run_id: str
    model_name: str
    model_version: int
    alias: str | None
    family: str
    threshold: float
    test_metrics: dict[str, dict[str, float]]
    report_path: Path
    steps: list[dict[str, Any]]
    dataset_version: str


def run(ctx: RunContext) -> RunResult:
    """Execute the whole flow; the run is marked failed (with the reason) on any error."""
    ctx.start()
    try:
        result = _run(ctx)
    except BaseException as exc:
        ctx.finish("failed", error=str(exc) if isinstance(exc, KeelsonError) else repr(exc))
        raise
    ctx.finish("succeeded", report=str(result.report_path))
    return result


def _labelled(frame: pl.DataFrame, ctx: RunContext) -> LabelledRows:
    features, labels = features_and_labels(frame, ctx.spec.target)
    return LabelledRows(features, labels)


def _train(ctx: RunContext, splits: Splits) -> tuple[SearchResult, FinalModel]:
    train, validation, test = (
        _labelled(part, ctx) for part in (splits.train, splits.validation, splits.test)
    )
    with ctx.step("search") as detail:
        from keelson.progress import search_progress

        with search_progress(ctx.spec.train.budget.seconds, ctx.quiet, ctx.console) as on_trial:
            result = search(train.features, train.labels, ctx.spec.train, on_trial)
        detail.update(trials=len(result.trials), best=result.best.to_dict(), seconds=result.seconds)
    with ctx.step("final_fit") as detail:
        final = fit_final(result.best, train, validation, test, ctx.spec.train)
        detail.update(threshold=final.threshold)
    return result, final


def _run(ctx: RunContext) -> RunResult:
    data = prepare_data(ctx)
    table, dataset = data.table, data.version
    classes = classes_of(table, ctx.spec.target)
    with ctx.step("split") as detail:
        splits = split(table, ctx.spec.target.column, ctx.spec.split)
        detail.update(splits.sizes())
    result, final = _train(ctx, splits)
    with ctx.step("register") as detail:
        version = _register(
            ctx,
            final,
            result,
            dataset,
            Signature.from_frame(table.drop(ctx.spec.target.column), classes),
        )
        detail.update(name=version.name, version=version.version)
    report_path = ctx.output_dir / "report.html"
    with ctx.step("report"):
        run_report.write(
            _report(ctx, data, classes, result, final, version.version),
            report_path,
        )
        ctx.save_artifact("report", report_path, "html")
    steps = [step.to_dict() for step in ctx.steps]
    metrics = {name: interval.to_dict() for name, interval in final.test_metrics.items()}
    return RunResult(
        run_id=ctx.run_id,
        model_name=version.name,
        model_version=version.version,
        alias=ctx.spec.registry.alias,
        family=result.best.family,
        threshold=final.threshold,
        test_metrics=metrics,
        report_path=report_path,
        steps=steps,
        dataset_version=dataset.id,
    )


def _register(
    ctx: RunContext,
    final: FinalModel,
    result: SearchResult,
    dataset: DatasetVersion,
    signature: Signature,
) -> Any:
    metrics = {name: interval.to_dict() for name, interval in final.test_metrics.items()}
    ctx.log_metrics({f"test.{n}": (i.value, i.low, i.high) for n, i in final.test_metrics.items()})
    ctx.log_metrics({f"cv.{result.metric}": (result.best.score or 0.0, None, None)})
    ctx.log_params(
        {
            "family": result.best.family,
            "threshold": final.threshold,
            **{f"param.{k}": v for k, v in result.best.params.items()},
        }
    )
    version = registry.register(
        ctx.store,
        registry.NewVersion(
            name=ctx.spec.registry.name,
            pipeline=final.pipeline,
            signature=signature,
            threshold=final.threshold,
            family=result.best.family,
            metrics=metrics,
            lineage={
                "dataset_version": dataset.id,
                "run_id": ctx.run_id,
                "spec_sha256": ctx.spec.digest(),
                "keelson_version": __version__,
                "search": result.best.to_dict(),
                "split": ctx.spec.split.model_dump(mode="json"),
                "target": ctx.spec.target.model_dump(mode="json"),
            },
            dataset_version_id=dataset.id,
            run_id=ctx.run_id,
        ),
    )
    if ctx.spec.registry.alias:
        registry.set_alias(ctx.store, version.name, ctx.spec.registry.alias, version.version)
    return version


def _report(
    ctx: RunContext,
    data: DataResult,
    classes: list[str],
    result: SearchResult,
    final: FinalModel,
    model_version: int,
) -> run_report.RunReport:
    table, dataset = data.table, data.version
    positives = (table[ctx.spec.target.column].cast(pl.String) == classes[1]).to_numpy()
    return run_report.RunReport(
        project=ctx.spec.name,
        run_id=ctx.run_id,
        created_at=datetime.now(UTC).isoformat(),
        keelson_version=__version__,
        model_name=ctx.spec.registry.name,
        model_version=model_version,
        dataset={
            "version": dataset.id,
            "content_hash": dataset.content_hash,
            "rows": table.height,
            "columns": table.width,
            "target": ctx.spec.target.column,
            "positive": classes[1],
            "negative": classes[0],
            "positive_share": float(positives.mean()),
        },
        sources=data.sources,
        quarantine_path=None if data.reused else str(ctx.output_dir / "quarantine.parquet"),
        profile=profile(table),
        search=[trial.to_dict() for trial in result.trials],
        search_metric=result.metric,
        best={
            "family": result.best.family,
            "params": result.best.params,
            "cv_score": result.best.score,
        },
        threshold=final.threshold,
        threshold_metric=ctx.spec.train.threshold_metric,
        y_true=final.test_labels.tolist(),
        y_score=final.test_scores.tolist(),
        test_metrics={
            n: run_report.MetricInterval(i.value, i.low, i.high)
            for n, i in final.test_metrics.items()
        },
        feature_importance=final.importance,
        steps=[step.to_dict() for step in ctx.steps],
        budget_seconds=ctx.spec.train.budget.seconds,
        search_seconds=result.seconds,
    )
