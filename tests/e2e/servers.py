"""``keelson serve`` as a subprocess for end-to-end tests: the toy model registered in a
project's store, the server on a free loopback port, readiness, and a clean stop."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

MODEL = "toy"
INFER = f"/v2/models/{MODEL}/infer"
BODY = {
    "inputs": [
        {"name": "age", "shape": [1], "datatype": "INT64", "data": [41]},
        {"name": "income", "shape": [1], "datatype": "FP64", "data": [52.5]},
        {"name": "plan", "shape": [1], "datatype": "BYTES", "data": ["pro"]},
    ]
}
KEELSON = Path(sys.executable).parent / "keelson"
START_SECONDS = 180  # servers importing on two shared cores


def register_toy(project: Path, seed: int = 0, alias: bool = True) -> int:
    """Fit the toy classifier on ``seed``'s rows and register it in ``project``'s store (as
    ``toy@production`` if ``alias``); its version number."""
    from tests.serve.conftest import toy_frame, toy_pipeline

    from keelson.registry import versions as registry
    from keelson.registry.signature import Signature
    from keelson.store.store import locate, open_store

    frame, target = toy_frame(300, seed=seed)
    pipeline = toy_pipeline().fit(frame, target)
    new = registry.NewVersion(
        name=MODEL,
        pipeline=pipeline,
        signature=Signature.from_frame(frame, classes=[str(c) for c in pipeline.classes_]),
        threshold=0.4,
        family="hist_gradient_boosting",
        metrics={},
        lineage={},
        dataset_version_id=None,
        run_id=None,
    )
    store = open_store(locate(project))
    try:
        version = registry.register(store, new).version
        if alias:
            registry.set_alias(store, MODEL, "production", version)
    finally:
        store.close()
    return version


@contextmanager
def keelson_server(
    project: Path, tmp_path: Path, index: int, *options: str
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """``keelson serve toy@production [options]`` on a free port; yields (process,
    127.0.0.1:port). Its output goes to ``tmp_path/server-<index>.log``."""
    port = free_port()
    log = server_log(tmp_path, index).open("wb")
    command = [str(KEELSON), "serve", f"{MODEL}@production", "--project", str(project)]
    process = subprocess.Popen(
        [*command, "--port", str(port), *options], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        yield process, f"127.0.0.1:{port}"
    finally:
        stop_process(process)
        log.close()


def server_log(tmp_path: Path, index: int) -> Path:
    return tmp_path / f"server-{index}.log"


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_ready(base_url: str, process: subprocess.Popen[bytes], **client: Any) -> None:
    """Poll ``/v2/health/ready`` until 200; fail at once if ``process`` dies. ``client``
    goes to :class:`httpx.Client` (e.g. ``verify`` for TLS)."""
    deadline = time.monotonic() + START_SECONDS
    with httpx.Client(base_url=base_url, timeout=5, **client) as http:
        while time.monotonic() < deadline:
            assert process.poll() is None, f"{process.args!r} exited with {process.returncode}"
            try:
                if http.get("/v2/health/ready").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    pytest.fail(f"{base_url} was not ready within {START_SECONDS} s")
