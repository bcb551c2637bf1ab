"""``keelson serve`` follows its alias: under steady load, the alias moves twice (a new
version, then a rollback) and no request fails; every answer names a version that was
being served. Readiness is false until the aliased model is loaded."""

from __future__ import annotations

import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from tests.e2e.servers import BODY, INFER, MODEL, keelson_server, register_toy, wait_ready

from keelson.registry import versions as registry
from keelson.store.store import locate, open_store


def register_versions(project: Path, count: int) -> None:
    for seed in range(count):
        register_toy(project, seed=seed, alias=False)


def move_alias(project: Path, version: int | None) -> None:
    """Point production at ``version``, or roll it back (None), as the CLI does."""
    store = open_store(locate(project))
    try:
        if version is None:
            registry.rollback(store, MODEL)
        else:
            registry.set_alias(store, MODEL, "production", version)
    finally:
        store.close()


@pytest.fixture
def following_project(project: Path) -> Path:
    with (project / "keelson.yaml").open("a") as spec:
        spec.write("\nserve: {follow_seconds: 0.2}\n")
    register_versions(project, 2)
    return project


class Load:
    """Threads posting inference requests until stopped, recording every answer."""

    def __init__(self, base_url: str, threads: int = 4) -> None:
        self.base_url = base_url
        self.answers: list[tuple[int, str | None]] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._post) for _ in range(threads)]

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)

    def _post(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=30) as client:
            while not self.stop.is_set():
                response = client.post(INFER, json=BODY)
                version = response.json().get("model_version") if response.is_success else None
                self.answers.append((response.status_code, version))

    def wait_for(self, version: str, timeout_s: float = 120) -> None:
        """Until an answer from ``version`` arrives after this call (bounded)."""
        start = len(self.answers)
        for _ in range(int(timeout_s * 10)):
            if any(v == version for _, v in self.answers[start:]):
                return
            self.stop.wait(0.1)
        pytest.fail(f"no answer from version {version} within {timeout_s} s")


def test_alias_moves_under_load_fail_no_request(following_project: Path, tmp_path: Path) -> None:
    move_alias(following_project, 1)
    with keelson_server(following_project, tmp_path, 1) as (process, address):
        base_url = f"http://{address}"
        wait_ready(base_url, process)
        with Load(base_url) as load:
            load.wait_for("1")
            move_alias(following_project, 2)
            load.wait_for("2")
            move_alias(following_project, None)  # the rollback
            load.wait_for("1")

    statuses = Counter(status for status, _ in load.answers)
    versions = Counter(version for _, version in load.answers)
    assert statuses == {200: len(load.answers)}, statuses
    assert set(versions) == {"1", "2"}


def test_not_ready_until_the_alias_points_at_a_model(
    following_project: Path, tmp_path: Path
) -> None:
    with keelson_server(following_project, tmp_path, 1) as (process, address):
        base_url = f"http://{address}"
        with httpx.Client(base_url=base_url, timeout=10) as client:
            answer = _first_answer(client, "/v2/health/ready", process)
            infer = client.post(INFER, json=BODY)
            assert answer.status_code == 503 and answer.json() == {"ready": False}
            assert infer.status_code == 503 and infer.headers["retry-after"] == "1"

            move_alias(following_project, 2)
            wait_ready(base_url, process)
            assert client.post(INFER, json=BODY).json()["model_version"] == "2"


def _first_answer(
    client: httpx.Client, path: str, process: subprocess.Popen[bytes]
) -> httpx.Response:
    """The first answer the starting server gives to ``path`` (bounded)."""
    for _ in range(1800):
        assert process.poll() is None, f"the server exited with {process.returncode}"
        try:
            return client.get(path)
        except httpx.TransportError:
            time.sleep(0.1)
    pytest.fail(f"the server never answered {path}")
