"""The whole flow: `keelson run` on a generated project, then `keelson serve` over real HTTP."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from keelson.cli.main import app
from keelson.data.versions import load_version
from keelson.registry import versions as registry
from keelson.registry.model import LoadedModel
from keelson.registry.signature import V2_DATATYPES
from keelson.spec import load_spec
from keelson.store.store import Store, locate, open_store
from keelson.store.tables import Run, Step

pytestmark = pytest.mark.slow
EXAMPLE = Path(__file__).parents[2] / "examples" / "bank-marketing"


def run_cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def project_store(project: Path) -> Store:
    return open_store(locate(project, load_spec(project).store))


def test_run_registers_a_model_and_accounts_for_every_row(project: Path) -> None:
    code, output = run_cli("run", str(project), "--quiet")
    assert code == 0, output
    assert "Registered churn-demo version 1 (alias production)" in output
    assert "roc_auc" in output and "Report:" in output
    store = project_store(project)
    with store.session() as session:
        run = session.query(Run).one()
        steps = {s.name: s for s in session.query(Step).filter(Step.run_id == run.id)}
    assert run.status == "succeeded"
    for name in (
        "read.customers",
        "validate.customers",
        "integrate",
        "search",
        "register",
        "report",
    ):
        assert steps[name].status == "succeeded" and steps[name].wall_s > 0
    checked = steps["validate.customers"].detail
    assert checked["rows_in"] == checked["kept"] + checked["quarantined"] == 603
    assert checked["quarantined"] == 3  # 'abc' age, 'gold' plan, a ragged line
    quarantine = pl.read_parquet(Path(run.report_uri).parent / "quarantine.parquet")
    assert set(quarantine["_rule"]) >= {"type", "allowed", "ragged_row"}
    report = Path(run.report_uri).read_text(encoding="utf-8")
    assert "<svg" in report and "churn-demo" in report
    model = registry.load(store, "churn-demo@production")
    assert model.version == 1 and model.signature.classes == ["no", "yes"]
    assert "churn" not in model.signature.names and "usage_id" not in model.signature.names


def test_rerun_reuses_the_dataset_version_and_adds_a_model_version(project: Path) -> None:
    assert run_cli("run", str(project), "--quiet", "--budget", "2")[0] == 0
    code, output = run_cli("run", str(project), "--quiet", "--budget", "2")
    assert code == 0, output
    store = project_store(project)
    versions = registry.list_versions(store, "churn-demo")
    assert [v.version for v in versions] == [1, 2]
    assert versions[0].dataset_version_id == versions[1].dataset_version_id
    table = load_version(store, versions[1].dataset_version_id or "")
    assert table.height == 1200 and "churn" in table.columns
    assert registry.aliases_of(store, "churn-demo") == {"production": 2}


@pytest.mark.postgres
def test_run_with_a_postgresql_store(
    project: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KEELSON_STORE_URL", postgres_url)
    code, output = run_cli("run", str(project), "--quiet", "--budget", "2")
    assert code == 0, output
    store = project_store(project)
    assert store.engine.dialect.name == "postgresql"
    assert registry.load(store, "churn-demo@production").version == 1
    assert not (project / ".keelson" / "keelson.db").exists()
    code, output = run_cli("models", "list", "--project", str(project))
    assert code == 0 and "churn-demo" in output
    store.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serving(project: Path, ref: str) -> Iterator[str]:
    """`keelson serve REF` as a real process on a free loopback port; yields its URL."""
    port = _free_port()
    keelson = Path(sys.executable).with_name("keelson")
    server = subprocess.Popen(
        [str(keelson), "serve", ref, "--port", str(port)],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=os.environ.copy(),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            server.kill()
            pytest.fail(f"server did not start: {server.communicate()[0]!r}")
        yield url
    finally:
        server.terminate()
        server.wait(10)


@pytest.fixture
def served(project: Path) -> Iterator[tuple[str, Path]]:
    assert run_cli("run", str(project), "--quiet", "--budget", "2")[0] == 0
    with serving(project, "churn-demo@production") as url:
        yield url, project


def v2_inputs(model: LoadedModel, rows: pl.DataFrame) -> list[dict[str, Any]]:
    return [
        {
            "name": c.name,
            "datatype": V2_DATATYPES[c.type],
            "shape": [rows.height],
            "data": rows[c.name].to_list(),
        }
        for c in model.signature.inputs
    ]


def test_served_model_answers_with_the_in_process_probabilities(served: tuple[str, Path]) -> None:
    url, project = served
    model = registry.load(project_store(project), "churn-demo@production")
    rows = pl.DataFrame(
        {
            "month": ["2024-01", "2024-05", None],
            "spend": [10.5, 200.0, 55.0],
            "calls": [7, 0, 3],
            "age": [22, 61, 45],
            "plan": ["basic", "pro", "plus"],
            "region": ["north", "south", None],
            "index": [101.2, 98.0, 100.0],
        }
    )
    expected = model.predict(rows.select(model.signature.names))
    v2 = httpx.post(
        f"{url}/v2/models/churn-demo/infer",
        json={
            "inputs": [
                {
                    "name": c.name,
                    "datatype": {"int64": "INT64", "float64": "FP64", "string": "BYTES"}[c.type],
                    "shape": [3],
                    "data": rows[c.name].to_list(),
                }
                for c in model.signature.inputs
            ]
        },
        timeout=30,
    )
    assert v2.status_code == 200, v2.text
    outputs = {o["name"]: o for o in v2.json()["outputs"]}
    assert np.allclose(
        np.reshape(outputs["probabilities"]["data"], (3, 2)), expected.probabilities, atol=1e-12
    )
    assert outputs["label"]["data"] == expected.labels
    mlflow = httpx.post(
        f"{url}/invocations", json={"dataframe_records": rows.to_dicts()}, timeout=30
    )
    assert mlflow.status_code == 200, mlflow.text
    served_yes = [p["probabilities"]["yes"] for p in mlflow.json()["predictions"]]
    assert np.allclose(served_yes, expected.probabilities[:, 1], atol=1e-12)
    missing = httpx.post(
        f"{url}/invocations", json={"dataframe_records": [{"spend": 1.0}]}, timeout=30
    )
    assert missing.status_code == 422 and "calls" in missing.text


def test_bundled_example_is_served_with_the_in_process_probabilities(tmp_path: Path) -> None:
    example = tmp_path / "bank-marketing"
    shutil.copytree(EXAMPLE, example, ignore=shutil.ignore_patterns(".keelson"))
    code, output = run_cli("run", str(example), "--quiet", "--budget", "3")
    assert code == 0, output
    model = registry.load(project_store(example), "bank-marketing@production")
    rows = load_version(project_store(example), model_dataset(example)).drop("y").sample(50, seed=1)
    expected = model.predict(rows)
    with serving(example, "bank-marketing@production") as url:
        v2 = httpx.post(
            f"{url}/v2/models/bank-marketing/infer",
            json={"inputs": v2_inputs(model, rows)},
            timeout=30,
        )
        mlflow = httpx.post(
            f"{url}/invocations",
            json={"dataframe_split": {"columns": rows.columns, "data": rows.rows()}},
            timeout=30,
        )
    assert v2.status_code == 200 and mlflow.status_code == 200, (v2.text, mlflow.text)
    outputs = {o["name"]: o for o in v2.json()["outputs"]}
    served = np.reshape(outputs["probabilities"]["data"], (50, 2))
    assert np.allclose(served, expected.probabilities, atol=1e-12)
    answers = mlflow.json()["predictions"]
    assert np.allclose([a["probabilities"]["yes"] for a in answers], expected.probabilities[:, 1])
    assert [a["label"] for a in answers] == expected.labels


def model_dataset(project: Path) -> str:
    store = project_store(project)
    version = registry.resolve(store, registry.ModelRef.parse("bank-marketing@production"))
    return version.dataset_version_id or ""
