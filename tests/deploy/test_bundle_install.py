"""A bundle installed into a fresh virtual environment serves the model it was made from.

The README's no-Docker path, step for step (uv instead of pip for speed): install
requirements.lock with --no-deps, check the environment, `keelson serve --project OUT`.
"""

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

import httpx
import numpy as np
import pytest
from tests.deploy.test_bundle import MODEL, project_keys, registered_project
from tests.e2e.servers import stop_process
from tests.serve.helpers import ROWS, in_process, v2_body

from keelson.cli.common import open_project_store
from keelson.deploy.bundle import build_bundle, verify_bundle
from keelson.registry import versions as registry
from keelson.spec import Serve

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
REFERENCE = f"{MODEL}@production"
READY_WITHIN_S = 240  # import, load and warm-up on a shared 2-core machine


def uv_or_skip() -> str:
    tools = Path(__file__).resolve().parents[2] / ".tools" / "bin" / "uv"  # scripts/setup's
    uv = shutil.which("uv") or (str(tools) if tools.exists() else None)
    if uv:
        return uv
    if os.environ.get("CI") == "true":
        pytest.fail("uv is required in CI to install a bundle into a fresh environment")
    pytest.skip("uv is not on PATH: cannot install the bundle into a fresh environment")


def clean_environment() -> dict[str, str]:
    """This shell's environment without anything that would point at the project's venv or store."""
    dropped = {"VIRTUAL_ENV", "PYTHONPATH", "KEELSON_STORE_URL", "KEELSON_ARTIFACTS"}
    return {key: value for key, value in os.environ.items() if key not in dropped}


def run(command: list[str], cwd: Path | None = None) -> str:
    done = subprocess.run(
        command, cwd=cwd, env=clean_environment(), capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, f"{command} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def install(uv: str, bundle: Path, venv: Path) -> Path:
    """A new venv holding exactly what requirements.lock pins; returns its interpreter."""
    run([uv, "venv", "--quiet", "--python", sys.executable, str(venv)])
    python = venv / "bin" / "python"
    lock = ["-r", "requirements.lock"]
    run([uv, "pip", "install", "--quiet", "--python", str(python), "--no-deps", *lock], bundle)
    run([uv, "pip", "check", "--python", str(python)])
    return python


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def serving(keelson: Path, bundle: Path, log: Path) -> Iterator[str]:
    """`keelson serve` from the bundle, as a subprocess; yields its URL once it is ready."""
    port = free_port()
    command = [str(keelson), "serve", REFERENCE, "--project", str(bundle), "--port", str(port)]
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, cwd=log.parent, env=clean_environment(), stdout=output, stderr=output
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(process, url, log)
        yield url
    finally:
        stop_process(process)


def wait_until_ready(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    """Poll the readiness probe, as Kubernetes does, until 200 or the server exits."""
    deadline = time.monotonic() + READY_WITHIN_S
    with httpx.Client(base_url=url, timeout=5) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"the server exited with {process.returncode}:\n{log.read_text()}")
            try:
                if client.get("/v2/health/ready").status_code == 200:
                    return
            except httpx.TransportError:
                pass  # not listening yet
            time.sleep(0.2)
    pytest.fail(f"the server was not ready within {READY_WITHIN_S} s:\n{log.read_text()}")


def test_installed_bundle_serves_the_packaged_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uv = uv_or_skip()
    monkeypatch.delenv("KEELSON_STORE_URL", raising=False)
    monkeypatch.delenv("KEELSON_ARTIFACTS", raising=False)
    project = registered_project(tmp_path / "project")
    token = project_keys(project)
    store = open_project_store(project)
    try:
        bundle = tmp_path / "bundle"
        keys_on_loopback = Serve(auth="keys")  # what a container bound to 0.0.0.0 gets
        build_bundle(store, REFERENCE, bundle, serve=keys_on_loopback, with_keys=True)
        model = registry.load(store, REFERENCE)
    finally:
        store.close()

    python = install(uv, bundle, tmp_path / "venv")
    location = run([str(python), "-c", "import keelson; print(keelson.__file__)"])
    assert Path(location.strip()).is_relative_to(tmp_path / "venv"), location

    with (
        serving(python.parent / "keelson", bundle, tmp_path / "serve.log") as url,
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        infer, body = f"/v2/models/{MODEL}/infer", v2_body(model, ROWS)
        refused = client.post(infer, json=body)
        response = client.post(infer, json=body, headers={"Authorization": f"Bearer {token}"})
    assert refused.status_code == 401, refused.text
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["model_name"], body["model_version"]) == (MODEL, "2")
    outputs = {output["name"]: output for output in body["outputs"]}
    probabilities = outputs["probabilities"]
    matrix = np.asarray(probabilities["data"], dtype=np.float64).reshape(probabilities["shape"])
    expected = in_process(model, ROWS)
    assert outputs["label"]["data"] == expected.labels
    np.testing.assert_allclose(matrix, expected.probabilities, rtol=0, atol=1e-12)
    assert verify_bundle(bundle) == [], "serving changed the bundle"
