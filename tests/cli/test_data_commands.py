"""`keelson data …` and `keelson explain` on a real project, through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from keelson.cli.main import app
from keelson.spec import Contract

pytestmark = pytest.mark.slow


def run_cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def run_project(project: Path) -> str:
    code, output = run_cli("run", str(project), "--budget", "1")
    assert code == 0, output
    return output


def test_unchanged_inputs_reuse_the_dataset_and_explain_says_why(project: Path) -> None:
    first = run_project(project)
    assert "dataset.cached" not in first
    second = run_project(project)
    assert "dataset.cached" in second and "validate.customers" not in second
    code, output = run_cli("explain", "--project", str(project))
    assert code == 0 and "unchanged: reused" in output
    with (project / "data" / "customers.csv").open("a") as handle:
        handle.write("9100,33,pro,north\n")
    third = run_project(project)
    assert "dataset.cached" not in third and "validate.customers" in third
    code, output = run_cli("explain", "dataset", "--project", str(project))
    assert code == 0 and "input customers changed" in output


def test_log_show_diff_and_profile(project: Path, tmp_path: Path) -> None:
    run_project(project)
    spec = project / "keelson.yaml"
    spec.write_text(spec.read_text().replace("drop: [usage_id, customer_id]", "drop: [usage_id]"))
    run_project(project)
    code, output = run_cli("data", "log", "--project", str(project))
    assert code == 0
    ids = [line.split("│")[1].strip() for line in output.splitlines() if line.count("│") > 4]
    assert len(ids) == 2, output
    code, output = run_cli("data", "show", "latest", "--project", str(project))
    document = json.loads(output)
    assert document["version"] == ids[0] and "customer_id" in document["schema"]
    assert set(document["lineage"]["sources"]) == {"customers", "usage", "months"}
    code, output = run_cli("data", "diff", ids[1], ids[0], "--project", str(project))
    assert code == 0, output
    assert json.loads(output)["columns_added"] == {"customer_id": "Int64"}
    out = tmp_path / "profile"
    code, output = run_cli(
        "data", "profile", "latest", "--out", str(out), "--project", str(project)
    )
    assert code == 0, output
    assert "<svg" in out.with_suffix(".html").read_text()
    assert json.loads(out.with_suffix(".json").read_text())["rows"] == 1200


def test_infer_contract_proposes_a_contract_the_source_passes(project: Path) -> None:
    code, output = run_cli("data", "infer-contract", "usage", "--project", str(project))
    assert code == 0, output
    proposed = yaml.safe_load(output)["contracts"]["usage"]
    contract = Contract.model_validate(proposed)
    assert contract.columns["churn"].allowed is not None
    code, output = run_cli("data", "infer-contract", "nope", "--project", str(project))
    assert code == 1 and "usage" in output


def test_validate_streams_a_source_to_kept_and_quarantine_files(
    project: Path, tmp_path: Path
) -> None:
    import polars as pl

    out = tmp_path / "validated"
    code, output = run_cli(
        "data", "validate", "customers", "--out", str(out), "--project", str(project)
    )
    assert code == 0, output
    summary = json.loads(output)
    assert summary["rows_in"] == 603 and summary["quarantined"] == 3
    assert pl.read_parquet(out / "customers.kept.parquet").height == 600
    assert pl.read_parquet(out / "customers.quarantine.parquet").height == 3
    code, output = run_cli("data", "validate", "usage", "--project", str(project))
    assert code == 1 and "not a CSV or Parquet file source" in output
