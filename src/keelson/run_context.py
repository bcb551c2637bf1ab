"""The context the runner gives every stage: store, run record, metering, progress."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from keelson import __version__
from keelson.cost.meter import Usage, meter
from keelson.spec import ProjectSpec
from keelson.store.store import Store
from keelson.store.tables import Metric, Param, Run, Step


@dataclass
class StepRecord:
    name: str
    status: str
    usage: Usage
    detail: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "wall_s": self.usage.wall_s,
            "cpu_s": self.usage.cpu_s,
            "peak_mb": self.usage.peak_mb,
        }


@dataclass
class RunContext:
    spec: ProjectSpec
    project_dir: Path
    store: Store
    console: Console
    quiet: bool = False
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    started: float = field(default_factory=time.monotonic)  # the budget counts from here
    steps: list[StepRecord] = field(default_factory=list)

    @property
    def output_dir(self) -> Path:
        path = self.project_dir / ".keelson" / "runs" / self.run_id
        path.mkdir(parents=True, exist_ok=True)
        return path

    def start(self) -> None:
        with self.store.session() as session:
            session.add(
                Run(
                    id=self.run_id,
                    project=self.spec.name,
                    status="running",
                    spec_hash=self.spec.digest(),
                    keelson_version=__version__,
                )
            )

    def finish(self, status: str, error: str | None = None, report: str | None = None) -> None:
        with self.store.session() as session:
            run = session.get(Run, self.run_id)
            if run is not None:
                run.status, run.error, run.report_uri = status, error, report
                run.ended_at = datetime.now(UTC)

    @contextmanager
    def step(self, name: str) -> Iterator[dict[str, Any]]:
        """Meter a stage and record it (also when it fails); yields a detail dict to fill."""
        detail: dict[str, Any] = {}
        try:
            with meter() as usage:
                yield detail
        except BaseException:
            self._record(StepRecord(name, "failed", usage, detail))
            raise
        self._record(StepRecord(name, "succeeded", usage, detail))

    def _record(self, record: StepRecord) -> None:
        self.steps.append(record)
        with self.store.session() as session:
            session.add(
                Step(
                    run_id=self.run_id,
                    name=record.name,
                    status=record.status,
                    wall_s=record.usage.wall_s,
                    cpu_s=record.usage.cpu_s,
                    peak_mb=record.usage.peak_mb,
                    detail=record.detail,
                )
            )
        if not self.quiet:
            mark = "[green]✓[/]" if record.status == "succeeded" else "[red]✗[/]"
            self.console.print(
                f"{mark} {record.name:<22} {record.usage.wall_s:7.1f} s  "
                f"{record.usage.peak_mb:7.0f} MB",
                highlight=False,
            )

    def save_artifact(self, kind: str, path: Path, fmt: str) -> str:
        """Copy a file the run wrote into the artifact store; returns its URI there."""
        artifact = self.store.put_artifact(
            path.read_bytes(), kind=kind, fmt=fmt, run_id=self.run_id
        )
        return artifact.uri

    def log_params(self, params: dict[str, Any]) -> None:
        with self.store.session() as session:
            for key, value in params.items():
                session.merge(Param(run_id=self.run_id, key=key, value=str(value)))

    def log_metrics(self, metrics: dict[str, tuple[float, float | None, float | None]]) -> None:
        with self.store.session() as session:
            for key, (value, low, high) in metrics.items():
                session.merge(Metric(run_id=self.run_id, key=key, value=value, low=low, high=high))
