"""Bad input through the CLI: one clear line, a non-zero exit, nothing lost."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from typer.testing import CliRunner

from keelson.cli.main import app


def run_cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_malformed_spec_names_the_key_path(project: Path) -> None:
    spec = project / "keelson.yaml"
    spec.write_text(spec.read_text().replace("budget: {seconds: 60", "budget: {seconds: -1"))
    code, output = run_cli("run", str(project))
    assert code == 1
    assert "train.budget.seconds" in output and "Got -1" in output
    assert "Traceback" not in output


def test_invalid_yaml_names_the_line(project: Path) -> None:
    (project / "keelson.yaml").write_text("name: x\nsources: [unclosed\n")
    code, output = run_cli("spec", "check", str(project))
    assert code == 1 and "line" in output and "not valid YAML" in output


def test_missing_source_file(project: Path) -> None:
    (project / "data" / "months.parquet").unlink()
    code, output = run_cli("run", str(project), "--quiet")
    assert code == 1
    assert "months" in output and "months.parquet" in output


def test_non_utf8_byte_names_the_line(project: Path) -> None:
    path = project / "data" / "customers.csv"
    lines = path.read_bytes().split(b"\n")
    lines[5] = lines[5].replace(b"north", b"n\xe9rth").replace(b"south", b"s\xe9uth")
    path.write_bytes(b"\n".join(lines))
    code, output = run_cli("run", str(project), "--quiet")
    assert code == 1
    assert "customers.csv" in output and "line 6" in output and "encoding" in output


def test_contract_violation_above_threshold_fails_and_keeps_the_quarantine(project: Path) -> None:
    spec = project / "keelson.yaml"
    spec.write_text(
        spec.read_text().replace("max_quarantine_share: 0.05", "max_quarantine_share: 0.001")
    )
    code, output = run_cli("run", str(project), "--quiet")
    assert code == 1
    assert "customers" in output and "0.5" in output  # 3 of 603 rows = 0.50 %
    quarantines = list((project / ".keelson" / "runs").glob("*/quarantine.parquet"))
    assert len(quarantines) == 1
    assert pl.read_parquet(quarantines[0]).height == 3


def test_unknown_model_reference(project: Path) -> None:
    code, output = run_cli("models", "show", "nope@production", "--project", str(project))
    assert code == 1 and "nope" in output


def test_init_scaffolds_a_valid_spec(tmp_path: Path) -> None:
    code, output = run_cli("init", str(tmp_path / "My Project"))
    assert code == 0, output
    code, output = run_cli("spec", "check", str(tmp_path / "My Project"))
    assert code == 0 and "my-project" in output


def test_spec_schema_is_json_schema() -> None:
    import json

    code, output = run_cli("spec", "schema")
    assert code == 0
    schema = json.loads(output)
    assert "sources" in schema["properties"] and "registry" in schema["required"]
