"""Two ``keelson serve`` processes behind nginx: kill one under load, no client sees a failure.

The load comes from a separate process (this module run with ``-m``): a few threads post
single-row inference requests through nginx and record every answer. Mid-load one server
gets SIGKILL; nginx retries the requests it had in flight on the survivor. nginx's access
log, which names the upstream(s) of every request, shows who served what.

Run from the repository root, this module is the load generator:
``python -m tests.e2e.test_high_availability URL PATH --threads 4 --after-kill 150 --max 4000``.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.e2e.servers import (
    BODY,
    INFER,
    free_port,
    keelson_server,
    register_toy,
    stop_process,
    wait_ready,
)

ROOT = Path(__file__).resolve().parents[2]  # the load generator runs as ``-m`` from here
_LOG_LINE = re.compile(  # balancer.py's log format; $upstream_addr lists every server tried
    r'"POST (?P<path>\S+) [^"]*" (?P<status>\d{3}) \S+ upstream=(?P<upstreams>.*) upstream_status='
)


@pytest.fixture
def nginx() -> Path:
    from keelson.deploy.balancer import BalancerError, find_nginx

    try:
        return find_nginx()
    except BalancerError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"nginx is required in CI: {exc}")
        pytest.skip(f"{exc} (apt-get install -y nginx)")


@pytest.fixture
def served_project(project: Path) -> Path:
    """The test project with the toy classifier registered as ``toy@production``."""
    register_toy(project)
    return project


def test_killing_one_server_under_load_fails_no_request(
    served_project: Path, nginx: Path, tmp_path: Path
) -> None:
    from keelson.deploy.balancer import nginx_config, run_nginx, stop_nginx

    with ExitStack() as stack:
        servers = [stack.enter_context(keelson_server(served_project, tmp_path, i)) for i in (1, 2)]
        for process, address in servers:
            wait_ready(f"http://{address}", process)
        run_dir = tmp_path / "balancer"
        run_dir.mkdir()
        listen = f"127.0.0.1:{free_port()}"
        conf = run_dir / "nginx.conf"
        conf.write_text(
            nginx_config(
                [address for _, address in servers],
                listen,
                run_dir=run_dir,
                access_log=True,
                user=getpass.getuser() if os.geteuid() == 0 else None,
            )
        )
        balancer = run_nginx(conf, nginx)
        stack.callback(stop_nginx, balancer)
        wait_ready(f"http://{listen}", balancer)
        (victim, victim_address), (_, survivor_address) = servers
        log = run_dir / "access.log"

        load = start_load(f"http://{listen}")
        stack.callback(stop_process, load)
        wait_until_both_served(log, [victim_address, survivor_address], load)
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(timeout=30)
        at_kill = served_by(log)
        out, _ = load.communicate(b"killed\n", timeout=300)  # the load's cue: kill done

    summary = json.loads(out)
    after = served_by(log)
    assert summary["failures"] == [], f"clients saw failures: {summary['failures'][:5]}"
    assert summary["statuses"] == {"200": summary["sent"]}
    assert summary["sent_after_kill"] > 0
    assert at_kill[victim_address] > 0 and at_kill[survivor_address] > 0
    assert after[survivor_address] > at_kill[survivor_address], "the survivor served nothing"
    assert after[victim_address] == at_kill[victim_address]
    assert retried(log) >= 1, "nginx retried no request on the survivor"


def test_balancer_answers_in_the_server_error_shape(nginx: Path, tmp_path: Path) -> None:
    """nginx's own answers (no server up, body over the limit) are ``{"error": ...}`` JSON."""
    from keelson.deploy.balancer import nginx_config, run_nginx, stop_nginx

    listen = f"127.0.0.1:{free_port()}"
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        nginx_config(
            [f"127.0.0.1:{free_port()}"],  # nothing listens there
            listen,
            run_dir=tmp_path,
            max_body_bytes=1024,
            user=getpass.getuser() if os.geteuid() == 0 else None,
        )
    )
    balancer = run_nginx(conf, nginx)
    try:
        wait_listening(listen, balancer)
        with httpx.Client(base_url=f"http://{listen}", timeout=30) as client:
            down = client.post(INFER, json=BODY)
            too_large = client.post(INFER, content=b"x" * 2048)
    finally:
        stop_nginx(balancer)
    assert down.status_code == 502
    assert "no model server answered" in down.json()["error"]
    assert too_large.status_code == 413
    assert "limit of 1024 bytes" in too_large.json()["error"]


def wait_listening(address: str, process: subprocess.Popen[bytes]) -> None:
    host, port = address.rsplit(":", 1)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, f"nginx exited with {process.returncode}"
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"nginx did not listen on {address}")


def start_load(base_url: str) -> subprocess.Popen[bytes]:
    module = "tests.e2e.test_high_availability"
    command = [
        sys.executable,
        "-m",
        module,
        base_url,
        INFER,
        "--threads",
        "4",
        "--after-kill",
        "150",
    ]
    return subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT)


def wait_until_both_served(log: Path, addresses: list[str], load: Any, each: int = 10) -> None:
    """Poll nginx's access log until every address has answered ``each`` inferences."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert load.poll() is None, "the load generator ended before the kill"
        counts = served_by(log)
        if all(counts[address] >= each for address in addresses):
            return
        time.sleep(0.02)
    pytest.fail(f"both servers did not serve {each} requests: {dict(served_by(log))}")


def inference_lines(log: Path) -> list[re.Match[str]]:
    text = log.read_text(encoding="utf-8") if log.exists() else ""
    matches = (_LOG_LINE.search(line) for line in text.splitlines())
    return [m for m in matches if m is not None and m["path"] == INFER]


def served_by(log: Path) -> Counter[str]:
    """Successful inferences per upstream that answered them (the last one tried)."""
    return Counter(
        m["upstreams"].split(", ")[-1] for m in inference_lines(log) if m["status"] == "200"
    )


def retried(log: Path) -> int:
    return sum(", " in m["upstreams"] for m in inference_lines(log))


# The load generator: this file run as a script in its own process.


class Load:
    """Threads posting ``BODY`` until ``after_kill`` more requests followed the kill."""

    def __init__(self, base_url: str, path: str, after_kill: int, max_requests: int) -> None:
        self.base_url, self.path = base_url, path
        self.after_kill, self.max_requests = after_kill, max_requests
        self.lock = threading.Lock()
        self.sent = 0
        self.sent_at_kill: int | None = None
        self.statuses: Counter[str] = Counter()
        self.failures: list[str] = []

    def next_request(self) -> bool:
        with self.lock:
            done_after_kill = (
                self.sent_at_kill is not None and self.sent >= self.sent_at_kill + self.after_kill
            )
            if done_after_kill or self.sent >= self.max_requests:
                return False
            self.sent += 1
            return True

    def mark_kill(self) -> None:
        with self.lock:
            self.sent_at_kill = self.sent

    def worker(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=60) as client:
            while self.next_request():
                try:
                    response = client.post(self.path, json=BODY)
                    outcome, detail = str(response.status_code), response.text[:200]
                except httpx.HTTPError as exc:
                    outcome, detail = "error", repr(exc)
                with self.lock:
                    self.statuses[outcome] += 1
                    if outcome != "200":
                        self.failures.append(f"{outcome}: {detail}")

    def summary(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "sent_after_kill": self.sent - (self.sent_at_kill or self.sent),
            "statuses": dict(self.statuses),
            "failures": self.failures,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description="Bounded load; a line on stdin marks the kill.")
    parser.add_argument("base_url")
    parser.add_argument("path")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--after-kill", type=int, default=150)
    parser.add_argument("--max", type=int, default=4000)
    args = parser.parse_args()
    load = Load(args.base_url, args.path, args.after_kill, args.max)
    threads = [threading.Thread(target=load.worker) for _ in range(args.threads)]
    for thread in threads:
        thread.start()
    if sys.stdin.readline():
        load.mark_kill()
    for thread in threads:
        thread.join()
    print(json.dumps(load.summary()))


if __name__ == "__main__":
    main()
