"""`keelson models compare`: two registered models on the same held-out rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from keelson.cli.main import app

pytestmark = pytest.mark.slow


def run_cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_compare_tests_two_models_on_the_same_rows(project: Path) -> None:
    assert run_cli("run", str(project), "--quiet")[0] == 0
    spec_path = project / "keelson.yaml"
    spec = yaml.safe_load(spec_path.read_text())
    spec["train"]["candidates"] = ["linear"]
    spec_path.write_text(yaml.safe_dump(spec))
    assert run_cli("run", str(project), "--quiet")[0] == 0
    code, output = run_cli("models", "compare", "churn-demo@1", "churn-demo@2", "-p", str(project))
    assert code == 0, output
    assert "DeLong" in output and "McNemar" in output and "95 % CI" in output
    code, output = run_cli(
        "models", "compare", "churn-demo@1", "churn-demo@2", "--json", "-p", str(project)
    )
    document = json.loads(output)
    auc = next(d for d in document["differences"] if d["metric"] == "roc_auc")
    assert auc["method"] == "DeLong" and auc["low"] <= auc["delta"] <= auc["high"]


def test_compare_refuses_models_from_different_splits(project: Path) -> None:
    assert run_cli("run", str(project), "--quiet")[0] == 0
    spec_path = project / "keelson.yaml"
    spec = yaml.safe_load(spec_path.read_text())
    spec["split"]["seed"] = 99
    spec_path.write_text(yaml.safe_dump(spec))
    assert run_cli("run", str(project), "--quiet")[0] == 0
    code, output = run_cli("models", "compare", "churn-demo@1", "churn-demo@2", "-p", str(project))
    assert code == 1 and "same dataset version, split and target" in output
