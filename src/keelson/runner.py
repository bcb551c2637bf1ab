"""``keelson run``: raw sources to a registered model, one metered step at a time.

data stage (read, reconcile, validate, quarantine, integrate, profile, version; cached)
→ split → search → final fit (threshold, test with intervals) → register (+ alias) → report.
"""

from __future__ import annotations

import importlib
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from keelson import __version__
from keelson.data.pipeline import DataResult, prepare_data
from keelson.data.profile import profile
from keelson.environment import library_versions
from keelson.errors import KeelsonError
from keelson.registry import versions as registry
from keelson.registry.signature import Signature
from keelson.report import run_report
from keelson.run_context import RunContext
from keelson.spec import ProjectSpec
from keelson.store.tables import DatasetVersion
from keelson.train.budget import Deadline, workers_and_threads
from keelson.train.candidates import require_installed
from keelson.train.crossval import Problem
from keelson.train.final import FinalModel, LabelledRows, finish
from keelson.train.generalisation import LearningPoint, assess_gap, more_data_verdict
from keelson.train.leakage import Finding, check_leakage
from keelson.train.metrics import metric
from keelson.train.search import SearchResult, imbalance_choices, search
from keelson.train.split import Splits, not_features, split, validation_folds
from keelson.train.task import Task
from keelson.train.workers import Pool, WorkerPool

if TYPE_CHECKING:
    from keelson.train.shared_study import SharedStudy


@dataclass(frozen=True)
class RunResult:
    run_id: str
    model_name: str
    model_version: int
    alias: str | None
    task: str
    family: str
    threshold: float | None
    test_metrics: dict[str, dict[str, float]]
    cv_metrics: dict[str, float]
    report_path: Path
    steps: list[dict[str, Any]]
    dataset_version: str
    wall_seconds: float
    budget_seconds: float


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


@dataclass(frozen=True)
class _Training:
    task: Task
    problem: Problem
    splits: Splits
    test: LabelledRows
    leakage: list[Finding]


def _prepare_training(ctx: RunContext, table: pl.DataFrame) -> _Training:
    """The task, the split, the folds, and the leakage checks: all before any fitting."""
    spec = ctx.spec
    require_installed(list(spec.train.candidates))
    task = Task.of(table, spec.target, spec.train)
    with ctx.step("split") as detail:
        splits, problem, test = training_problem(spec, table, task)
        leakage = check_leakage(
            splits.train.drop(task.column),
            problem.labels,
            None if test.empty else test.features,
            task.kind,
            spec.split.time_column if splits.method == "time" else None,
            spec.train.seed,
        )
        detail.update(splits.sizes(), task=task.kind, leakage=len(leakage))
    return _Training(task, problem, splits, test, leakage)


def training_problem(
    spec: ProjectSpec, table: pl.DataFrame, task: Task
) -> tuple[Splits, Problem, LabelledRows]:
    """The split and the cross-validation problem of its training part; `keelson worker`
    rebuilds the same one from the same dataset version and spec."""
    splits = split(table, task, spec.split)
    dropped = not_features(spec.split, splits.method)
    train_features, labels = task.split_frame(splits.train.drop(dropped))
    test_features, test_labels = task.split_frame(splits.test.drop(dropped))
    problem = Problem(
        features=train_features,
        labels=labels,
        folds=validation_folds(splits.train, labels, spec.split, splits.method, spec.train),
        task=task.kind,
        n_classes=len(task.classes),
        metric=task.metric,
        seed=spec.train.seed,
        threads=workers_and_threads(spec.train)[1],
    )
    return splits, problem, LabelledRows(test_features, test_labels)


def _train(
    ctx: RunContext,
    training: _Training,
    pool: Pool,
    deadline: Deadline,
    shared: SharedStudy | None = None,
) -> tuple[SearchResult, FinalModel]:
    spec, problem = ctx.spec.train, training.problem
    pool.load(problem)
    _warm_up()
    with ctx.step("search") as detail:
        from keelson.progress import search_progress

        imbalance = imbalance_choices(spec, problem.task, problem.labels)
        with search_progress(deadline.remaining(), ctx.quiet, ctx.console) as on_trial:
            result = search(problem, pool, spec, deadline, imbalance, on_trial, shared)
        detail.update(trials=len(result.trials), best=result.best.to_dict(), seconds=result.seconds)
        if shared is not None:
            detail.update(from_workers=[t.trial for t in result.trials if t.worker])
    with ctx.step("final_fit") as detail:
        ordered = training.splits.method == "time"
        final = finish(problem, result, pool, deadline, spec, training.test, ordered)
        detail.update(threshold=final.threshold, members=len(final.members))
    return result, final


def _warm_up() -> None:
    """Import what registering and the report need (skops alone takes seconds) in the
    background, while the search mostly waits on its workers: not after it."""

    def imports() -> None:
        for module in ("skops.io", "matplotlib.figure", "sklearn.frozen", "jinja2"):
            importlib.import_module(module)

    threading.Thread(target=imports, name="keelson-warm-up", daemon=True).start()


def _run(ctx: RunContext) -> RunResult:
    deadline = Deadline(ctx.spec.train.budget.seconds, started=ctx.started)
    workers, threads = workers_and_threads(ctx.spec.train)
    with _pool(ctx.spec, workers, threads) as pool:  # its start overlaps the data stage
        data = prepare_data(ctx)
        training = _prepare_training(ctx, data.table)
        shared = None
        if ctx.spec.train.shared:
            from keelson.train.shared_study import SharedStudy

            shared = SharedStudy.for_run(ctx, data.version.id, training.problem, deadline)
        result, final = _train(ctx, training, pool, deadline, shared)
    task, dataset = training.task, data.version
    with ctx.step("register") as detail:
        signature = Signature.from_frame(training.problem.features, task.classes)
        version = _register(ctx, task, final, result, dataset, signature)
        detail.update(name=version.name, version=version.version)
    report_path = ctx.output_dir / "report.html"
    with ctx.step("report"):
        report = _report(ctx, data, training, result, final, version.version, deadline)
        run_report.write(report, report_path)
        ctx.save_artifact("report", report_path, "html")
        if data.profile is not None:  # its JSON was written by the data stage
            from keelson.report.html import write_text_atomic
            from keelson.report.profile_report import render_profile

            page = render_profile(data.profile, ctx.spec.name)
            write_text_atomic(ctx.output_dir / "profile.html", page)
    metrics = {name: interval.to_dict() for name, interval in final.test_metrics.items()}
    return RunResult(
        run_id=ctx.run_id,
        model_name=version.name,
        model_version=version.version,
        alias=ctx.spec.registry.alias,
        task=task.kind,
        family=_family(final),
        threshold=final.threshold,
        test_metrics=metrics,
        cv_metrics=final.cv_metrics,
        report_path=report_path,
        steps=[step.to_dict() for step in ctx.steps],
        dataset_version=dataset.id,
        wall_seconds=deadline.elapsed(),
        budget_seconds=deadline.budget,
    )


def _pool(spec: ProjectSpec, workers: int, threads: int) -> Pool:
    """Trials in worker processes here, or as futures on Dask (``execution.engine: dask``)."""
    if spec.execution.engine != "dask":
        return WorkerPool(workers, threads)
    from keelson.train.dask_pool import DaskPool

    return DaskPool(spec.execution)


def _family(final: FinalModel) -> str:
    families = [member.trial.family for member in final.members]
    return families[0] if len(families) == 1 else "ensemble(" + "+".join(families) + ")"


def _register(
    ctx: RunContext,
    task: Task,
    final: FinalModel,
    result: SearchResult,
    dataset: DatasetVersion,
    signature: Signature,
) -> Any:
    metrics = {name: interval.to_dict() for name, interval in final.test_metrics.items()}
    ctx.log_metrics({f"test.{n}": (i.value, i.low, i.high) for n, i in final.test_metrics.items()})
    ctx.log_metrics({f"cv.{n}": (v, None, None) for n, v in final.cv_metrics.items()})
    best = result.best
    environment = library_versions()
    ctx.log_params(
        {
            "task": task.kind,
            "family": _family(final),
            "threshold": final.threshold,
            **{f"param.{k}": v for k, v in best.config.params.items()},
            **{f"env.{k}": v for k, v in environment.items()},
        }
    )
    version = registry.register(
        ctx.store,
        registry.NewVersion(
            name=ctx.spec.registry.name,
            pipeline=final.pipeline,
            signature=signature,
            threshold=final.threshold,
            family=_family(final),
            task=task.kind,
            metrics=metrics or {"cv": final.cv_metrics},
            lineage={
                "dataset_version": dataset.id,
                "run_id": ctx.run_id,
                "spec_sha256": ctx.spec.digest(),
                "keelson_version": __version__,
                "environment": environment,
                "search": best.to_dict(),
                "members": [member.to_dict() for member in final.members],
                "split": ctx.spec.split.model_dump(mode="json"),
                "target": ctx.spec.target.model_dump(mode="json"),
                "task": task.kind,
                "classes": task.classes,
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
    training: _Training,
    result: SearchResult,
    final: FinalModel,
    model_version: int,
    deadline: Deadline,
) -> run_report.RunReport:
    table, dataset, task = data.table, data.version, training.task
    spec = ctx.spec.train
    best = result.best
    higher = metric(task.kind, task.metric).higher_is_better
    gap = None
    if best.train_score is not None and best.score is not None:
        gap = assess_gap(best.train_score, best.score, task.metric, higher).to_dict()
    curve = [LearningPoint(**point) for point in final.learning_curve]
    return run_report.RunReport(
        project=ctx.spec.name,
        run_id=ctx.run_id,
        created_at=datetime.now(UTC).isoformat(),
        keelson_version=__version__,
        model_name=ctx.spec.registry.name,
        model_version=model_version,
        dataset=_dataset_summary(table, task, dataset),
        sources=data.sources,
        quarantine_path=None if data.reused else str(ctx.output_dir / "quarantine.parquet"),
        profile=profile(table),
        search=[trial.to_dict() for trial in result.trials],
        search_metric=task.metric,
        best=_chosen(final),
        threshold=final.threshold,
        threshold_metric=spec.threshold_metric if task.kind == "binary" else None,
        costs=spec.costs.model_dump() if spec.threshold_metric == "cost" else None,
        task=task.kind,
        classes=task.classes,
        y_true=final.test_labels.tolist(),
        y_score=final.test_scores.tolist(),
        test_metrics={
            n: run_report.MetricInterval(i.value, i.low, i.high)
            for n, i in final.test_metrics.items()
        },
        cv_metrics=final.cv_metrics,
        feature_importance=final.importance,
        steps=[step.to_dict() for step in ctx.steps],
        budget_seconds=spec.budget.seconds,
        search_seconds=result.seconds,
        wall_seconds=deadline.elapsed(),
        ensemble=final.ensemble,
        calibration=_calibration(final),
        imbalance=best.config.imbalance if task.is_classification else None,
        evidence={
            "gap": gap,
            "learning_curve": final.learning_curve,
            "learning_verdict": more_data_verdict(curve, higher, task.metric) if curve else None,
            "leakage": [finding.to_dict() for finding in training.leakage],
        },
        environment=library_versions(),
        feature_selection=final.selection.to_dict() if final.selection else None,
    )


def _chosen(final: FinalModel) -> dict[str, Any]:
    """The served model for the report: one trial, or the blend with its OOF score."""
    lead = final.members[0].trial
    if len(final.members) == 1:
        return {
            "family": lead.family,
            "params": lead.config.params,
            "imbalance": lead.config.imbalance,
            "cv_score": lead.score,
        }
    return {
        "family": _family(final),
        "params": {f"trial {m.trial.trial}": round(m.weight, 3) for m in final.members},
        "cv_score": (final.ensemble or {}).get("score"),
    }


def _dataset_summary(table: pl.DataFrame, task: Task, dataset: DatasetVersion) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "version": dataset.id,
        "content_hash": dataset.content_hash,
        "rows": table.height,
        "columns": table.width,
        "target": task.column,
        "task": task.kind,
    }
    if task.kind == "binary":
        positives = (table[task.column].cast(pl.String) == task.classes[1]).to_numpy()
        summary |= {
            "positive": task.classes[1],
            "negative": task.classes[0],
            "positive_share": float(positives.mean()),
        }
    return summary


def _calibration(final: FinalModel) -> dict[str, Any] | None:
    choice = final.calibration
    if choice is None:
        return None
    before, after = choice.before, choice.after
    return {
        "method": choice.method,
        "reason": choice.reason,
        "log_loss_before": before.get("log_loss"),
        "log_loss_after": after.get("log_loss"),
        "brier_before": before.get("brier"),
        "brier_after": after.get("brier"),
        "ece_before": before.get("ece"),
        "ece_after": after.get("ece"),
        "before": choice.reliability_before,
        "after": choice.reliability_after if choice.method != "none" else None,
    }
