"""The flight-delays example: five sources, reconciliation, references, a point-in-time join."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from keelson.cli.main import app
from keelson.data.contracts import validate, validation_order
from keelson.data.integrate import integrate
from keelson.data.reconcile import reconcile
from keelson.data.sources import read_source
from keelson.registry import versions as registry
from keelson.spec import load_spec
from keelson.store.store import locate, open_store

pytestmark = pytest.mark.slow
EXAMPLE = Path(__file__).parents[2] / "examples" / "flight-delays"


def joined_without_drop() -> pl.DataFrame:
    """The example's integration with every column kept, to inspect the as-of join."""
    spec = load_spec(EXAMPLE)
    reads = {}
    for name, source in spec.sources.items():
        read = read_source(name, source, EXAMPLE)
        reads[name] = (
            reconcile(read, spec.reconcile[name], name) if name in spec.reconcile else read
        )
    kept: dict[str, pl.DataFrame] = {}
    for name in validation_order(spec.contracts, reads):
        contract = spec.contracts.get(name)
        refs = {r.source: kept[r.source] for r in (contract.references if contract else [])}
        kept[name] = validate(reads[name], contract, refs).kept
    assert spec.integrate is not None
    return integrate(kept, spec.integrate.model_copy(update={"drop": []})).table


def test_weather_is_never_from_after_the_scheduled_departure() -> None:
    table = joined_without_drop()
    matched = table.filter(pl.col("time_hour_weather").is_not_null())
    assert matched.height > 0.95 * table.height
    assert (matched["time_hour_weather"] <= matched["time_hour"]).all()
    assert (matched["time_hour"] - matched["time_hour_weather"] <= timedelta(hours=3)).all()
    # the as-of join takes the latest observation: an exact hour match whenever one exists
    assert (matched["time_hour_weather"] == matched["time_hour"]).mean() > 0.9  # type: ignore[operator]


def test_example_runs_end_to_end_and_registers(tmp_path: Path) -> None:
    project = tmp_path / "flight-delays"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns(".keelson"))
    result = CliRunner().invoke(app, ["run", str(project), "--quiet", "--budget", "3"])
    assert result.exit_code == 0, result.output
    store = open_store(locate(project))
    model = registry.load(store, "flight-delays@production")
    assert "temp" in model.signature.names and "arr_delay" not in model.signature.names
    assert not any(name.endswith("_weather") for name in model.signature.names)
    report = next((project / ".keelson" / "runs").glob("*/validation.json")).read_text()
    assert '"null": 850' in report  # cancelled or diverted flights, quarantined
