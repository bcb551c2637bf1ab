"""The protections of ``keelson serve`` (issue 5, point 5), each over real HTTP against the
real process: SIGTERM drains requests in flight and loses no prediction-log row,
backpressure, the request timeout, API keys and per-key rate limits, the public-bind
guard, TLS, worker processes, and the checks on a request's body.

The toy model is registered once per module; each server runs on a copy of that project
whose ``keelson.yaml`` ends with the ``serve:`` settings under test. Servers are shared
by the tests their settings allow.
"""

from __future__ import annotations

import datetime as dt
import http.client
import ipaddress
import json
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
import polars as pl
import psutil
import pytest
from tests.conftest import write_project
from tests.e2e.servers import (
    INFER,
    KEELSON,
    MODEL,
    free_port,
    keelson_server,
    register_toy,
    wait_ready,
)

from keelson.serve.feedback import read_feedback
from keelson.serve.prediction_log import read_log

FEEDBACK = f"/v2/models/{MODEL}/feedback"
PLANS = ("basic", "plus", "pro")
DATATYPES = {"age": "INT64", "income": "FP64", "plan": "BYTES"}
MAX_BODY_BYTES = 5 * 1024 * 1024  # the serve section's default


@dataclass(frozen=True)
class Server:
    process: subprocess.Popen[bytes]
    url: str  # scheme://127.0.0.1:port
    project: Path

    @property
    def address(self) -> str:
        return self.url.split("://", 1)[1]


@dataclass(frozen=True)
class Row:
    """One single-row request: its id, its inputs and the protocol it goes by."""

    request_id: str
    age: int
    income: float
    plan: str
    protocol: Literal["v2", "invocations"]  # the id goes in the body, or in X-Request-Id

    @property
    def columns(self) -> dict[str, list[Any]]:
        return {"age": [self.age], "income": [self.income], "plan": [self.plan]}


# --- projects and servers ------------------------------------------------------------


@pytest.fixture(scope="module")
def toy_project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A project with ``toy@production`` registered, and no store override in the
    environment (the servers inherit it)."""
    with pytest.MonkeyPatch.context() as env:
        env.delenv("KEELSON_STORE_URL", raising=False)
        env.delenv("KEELSON_ARTIFACTS", raising=False)
        project = write_project(tmp_path_factory.mktemp("toy") / "churn")
        register_toy(project)
        yield project


def project_with(base: Path, folder: Path, serve: str) -> Path:
    """A copy of ``base`` in ``folder`` whose spec ends with ``serve: <serve>``."""
    project = Path(shutil.copytree(base, folder / "churn"))
    with (project / "keelson.yaml").open("a", encoding="utf-8") as spec:
        spec.write(f"\nserve: {serve}\n")
    return project


@contextmanager
def started(project: Path, *options: str, scheme: str = "http", **client: Any) -> Iterator[Server]:
    """``keelson serve`` of ``project`` with ``options``, once ready (``client``: e.g. TLS
    ``verify`` for the readiness probe)."""
    with keelson_server(project, project.parent, 1, *options) as (process, address):
        url = f"{scheme}://{address}"
        wait_ready(url, process, **client)
        yield Server(process, url, project)


@pytest.fixture(scope="module")
def strict_server(toy_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Every prediction times out (a millisecond is too short for any batch)."""
    folder = tmp_path_factory.mktemp("strict")
    with started(project_with(toy_project, folder, "{timeout_seconds: 0.001}")) as server:
        yield server


@pytest.fixture(scope="module")
def keyed_server(
    toy_project: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, dict[str, str]]]:
    """API keys required; keys by role: ``predict``, ``read`` and ``limited`` (1/s, burst 2)."""
    project = project_with(toy_project, tmp_path_factory.mktemp("keys"), "{auth: keys}")
    keys = {
        "predict": create_key(project, "scorer", "--scope", "predict"),
        "read": create_key(project, "reader", "--scope", "read"),
        "limited": create_key(
            project, "metered", "--scope", "predict", "--rate", "1", "--burst", "2"
        ),
    }
    with started(project) as server:
        yield server, keys


@pytest.fixture(scope="module")
def public_project(toy_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return project_with(toy_project, tmp_path_factory.mktemp("public"), "{auth: none}")


@pytest.fixture(scope="module")
def public_server(public_project: Path) -> Iterator[tuple[Server, ssl.SSLContext]]:
    """Auth 'none' on every interface (allowed by the flag), over TLS, with two workers;
    with the client context that trusts its self-signed certificate."""
    certfile, keyfile = self_signed(public_project.parent)
    trust = ssl.create_default_context(cafile=str(certfile))
    options = [
        *("--host", "0.0.0.0", "--allow-public-without-auth", "--workers", "2"),
        *("--tls-certfile", str(certfile), "--tls-keyfile", str(keyfile)),
    ]
    with started(public_project, *options, scheme="https", verify=trust) as server:
        yield server, trust


def create_key(project: Path, name: str, *options: str) -> str:
    """``keelson keys create``: the key is the one line on stdout."""
    command = [str(KEELSON), "keys", "create", name, *options, "--project", str(project)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    return done.stdout.strip()


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 signed by its own key: (certfile, keyfile) in PEM."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "keelson test server")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    certfile, keyfile = folder / "cert.pem", folder / "key.pem"
    certfile.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return certfile, keyfile


# --- requests --------------------------------------------------------------------------


def rows(count: int) -> list[Row]:
    """``count`` distinct rows, every other one by ``/invocations``."""
    protocols: tuple[Literal["v2", "invocations"], ...] = ("v2", "invocations")
    return [
        Row(f"req-{i:04d}", 18 + i % 60, i + 0.5, PLANS[i % 3], protocols[i % 2])
        for i in range(count)
    ]


def v2_request(request_id: str, columns: dict[str, list[Any]]) -> dict[str, Any]:
    """A v2 inference body: one tensor per column."""
    inputs = [
        {"name": name, "shape": [len(values)], "datatype": DATATYPES[name], "data": values}
        for name, values in columns.items()
    ]
    return {"id": request_id, "inputs": inputs}


def v2_body(request_id: str, height: int = 1) -> dict[str, Any]:
    """A v2 inference body of ``height`` rows."""
    incomes = [i + 0.5 for i in range(height)]
    return v2_request(
        request_id, {"age": [41] * height, "income": incomes, "plan": ["pro"] * height}
    )


Answer = tuple[str | None, int, str | None]  # (the id the answer names, status, first label)


def post_row(client: httpx.Client, row: Row) -> Answer:
    """Send ``row`` by its protocol."""
    if row.protocol == "v2":
        answer = client.post(INFER, json=v2_request(row.request_id, row.columns))
        body = answer.json()
        label = body["outputs"][0]["data"][0] if answer.status_code == 200 else None
        return body.get("id"), answer.status_code, label
    records = {"dataframe_records": [{name: values[0] for name, values in row.columns.items()}]}
    answer = client.post("/invocations", json=records, headers={"X-Request-Id": row.request_id})
    label = answer.json()["predictions"][0]["label"] if answer.status_code == 200 else None
    return answer.headers.get("x-request-id"), answer.status_code, label


def post_rows(url: str, sent: list[Row], threads: int = 6, **client: Any) -> list[Answer]:
    """``sent`` posted from ``threads`` threads, a connection each; answers in ``sent`` order."""

    def post_share(share: list[Row]) -> list[Answer]:
        with httpx.Client(base_url=url, timeout=60, **client) as http:
            return [post_row(http, row) for row in share]

    with ThreadPoolExecutor(threads) as pool:
        shares = list(pool.map(post_share, [sent[i::threads] for i in range(threads)]))
    answers: list[Answer] = [(None, 0, None)] * len(sent)
    for first, share in enumerate(shares):
        answers[first::threads] = share
    return answers


class HeldRequest:
    """A POST whose headers the server has read (it answered ``100 Continue``) and whose
    body is not sent yet: a request in flight for as long as the test wants."""

    def __init__(self, address: str, path: str, body: bytes) -> None:
        host, port = address.rsplit(":", 1)
        self.body = body
        self.socket = socket.create_connection((host, int(port)), timeout=60)
        self.socket.sendall(
            f"POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n".encode()
        )
        interim = b""
        while not interim.endswith(b"\r\n\r\n"):
            chunk = self.socket.recv(1)
            assert chunk, f"the server closed the connection after {interim!r}"
            interim += chunk
        assert interim.startswith(b"HTTP/1.1 100 "), interim

    def finish(self) -> tuple[int, dict[str, Any]]:
        """Send the body; the answer's status and JSON body."""
        self.socket.sendall(self.body)
        return read_answer(self.socket)


def read_answer(sock: socket.socket) -> tuple[int, dict[str, Any]]:
    answer = http.client.HTTPResponse(sock)
    try:
        answer.begin()
        return answer.status, json.loads(answer.read())
    finally:
        answer.close()
        sock.close()


def wait_refused(address: str, deadline_s: float = 30) -> None:
    """Until new connections to ``address`` are refused (bounded)."""
    host, port = address.rsplit(":", 1)
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, int(port)), timeout=5).close()
        except ConnectionRefusedError:
            return
        time.sleep(0.02)
    pytest.fail(f"{address} still accepted connections {deadline_s} s after SIGTERM")


# --- SIGTERM: drain and the prediction log --------------------------------------------


def test_sigterm_drains_requests_in_flight_and_the_log_keeps_every_request(
    toy_project: Path, tmp_path: Path
) -> None:
    # Parts of 64 rows while serving; the rest waits for the flush at shutdown.
    settings = "{prediction_log: {flush_rows: 64, flush_seconds: 60}}"
    sent = rows(300)
    with started(project_with(toy_project, tmp_path, settings)) as server:
        answers = post_rows(server.url, sent)
        labelled = {
            row.request_id: label
            for row, (_, _, label) in zip(sent[:25], answers[:25], strict=True)
        }
        with httpx.Client(base_url=server.url, timeout=30) as client:
            feedback = {"feedback": [{"id": i, "labels": [v]} for i, v in labelled.items()]}
            accepted = client.post(FEEDBACK, json=feedback)
        held = [
            HeldRequest(server.address, INFER, json.dumps(v2_body(f"held-{k}", 500)).encode())
            for k in range(3)
        ]
        server.process.send_signal(signal.SIGTERM)
        wait_refused(server.address)
        finished = [request.finish() for request in held]
        exit_code = server.process.wait(timeout=120)

    assert [(i, s) for i, s, _ in answers] == [(row.request_id, 200) for row in sent]
    assert accepted.status_code == 202 and accepted.json() == {"accepted": 25}
    assert [(status, body.get("id")) for status, body in finished] == [
        (200, f"held-{k}") for k in range(3)
    ]
    assert exit_code == 0, f"keelson serve exited with {exit_code} after SIGTERM"
    url = str(server.project / ".keelson" / "predictions")
    check_log(read_log(url, MODEL), sent, {f"held-{k}": 500 for k in range(3)})
    got = read_feedback(url, MODEL).select("request_id", "label").rows()
    assert sorted(got) == sorted(labelled.items())


def check_log(log: pl.DataFrame, sent: list[Row], held: dict[str, int]) -> None:
    """Each request once (a row per input row), by version 1 and the primary, with its inputs."""
    counts = dict(log.group_by("request_id").len().iter_rows())
    assert counts == {row.request_id: 1 for row in sent} | held
    assert log["version"].unique().to_list() == [1]
    assert log["variant"].unique().to_list() == ["primary"]
    expected = pl.DataFrame(
        [(r.request_id, r.age, r.income, r.plan) for r in sent],
        schema=["request_id", "input.age", "input.income", "input.plan"],
        orient="row",
    )
    logged = log.filter(pl.col("request_id").is_in(expected["request_id"].implode()))
    logged = logged.select(expected.columns).sort("request_id")
    assert logged.equals(expected.sort("request_id"))


# --- backpressure and the timeout ------------------------------------------------------


def test_a_full_queue_answers_503_with_retry_after_and_the_server_stays_up(
    toy_project: Path, tmp_path: Path
) -> None:
    body = v2_body("flood", 200)
    with started(project_with(toy_project, tmp_path, "{max_queue: 1}")) as server:
        answers = flood(server.url, body, threads=16, each=10)
        after = httpx.post(f"{server.url}{INFER}", json=body, timeout=30)
        alive = server.process.poll() is None

    statuses = {answer.status_code for answer in answers}
    refused = [answer for answer in answers if answer.status_code == 503]
    assert statuses == {200, 503}, statuses
    shapes = {(a.headers.get("retry-after"), a.headers.get("content-type")) for a in refused}
    assert shapes == {("1", "application/json")}, f"503 answers: {shapes}, e.g. {refused[0].text!r}"
    assert all("requests waiting" in answer.json()["error"] for answer in refused)
    assert alive and after.status_code == 200


def flood(url: str, body: dict[str, Any], threads: int, each: int) -> list[httpx.Response]:
    """``body`` posted ``each`` times from each of ``threads`` threads at once."""

    def post_many(_: int) -> list[httpx.Response]:
        with httpx.Client(base_url=url, timeout=60) as client:
            return [client.post(INFER, json=body) for _ in range(each)]

    with ThreadPoolExecutor(threads) as pool:
        return [answer for share in pool.map(post_many, range(threads)) for answer in share]


def test_a_request_past_the_timeout_answers_503_and_health_still_answers(
    strict_server: Server,
) -> None:
    with httpx.Client(base_url=strict_server.url, timeout=30) as client:
        answers = [client.post(INFER, json=v2_body(f"slow-{i}", 5000)) for i in range(3)]
        health = [client.get(path).status_code for path in ("/v2/health/live", "/v2/health/ready")]

    for answer in answers:
        assert answer.status_code == 503, answer.text
        assert answer.headers["retry-after"] == "1"
        assert "no answer within 0.001 s" in answer.json()["error"]
    assert health == [200, 200]


# --- the body: size, JSON, types --------------------------------------------------------


def test_a_body_over_the_limit_is_refused_before_it_is_sent(strict_server: Server) -> None:
    host, port = strict_server.address.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=30)
    sock.sendall(  # the headers only: the server must answer without waiting for the body
        f"POST {INFER} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {10 * MAX_BODY_BYTES}\r\n\r\n".encode()
    )
    status, body = read_answer(sock)

    assert status == 413
    assert f"limit of {MAX_BODY_BYTES} bytes" in body["error"]


def test_malformed_json_is_400(strict_server: Server) -> None:
    answer = httpx.post(
        f"{strict_server.url}{INFER}",
        content=b'{"inputs": [{"name": "age",',
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert answer.status_code == 400
    assert "not valid JSON" in answer.json()["error"]


def test_a_value_of_the_wrong_type_is_422_naming_the_column(strict_server: Server) -> None:
    wrong_tensor = v2_body("wrong")
    wrong_tensor["inputs"][0] = {"name": "age", "shape": [1], "datatype": "BYTES", "data": ["x"]}
    wrong_record = {"dataframe_records": [{"age": "forty", "income": 1.0, "plan": "pro"}]}
    with httpx.Client(base_url=strict_server.url, timeout=30) as client:
        v2 = client.post(INFER, json=wrong_tensor)
        mlflow = client.post("/invocations", json=wrong_record)

    assert v2.status_code == 422 and "'age'" in v2.json()["error"], v2.text
    assert mlflow.status_code == 422 and "'age'" in mlflow.json()["error"], mlflow.text


# --- API keys and per-key rate limits -----------------------------------------------------


def test_api_keys_guard_inference_and_leave_health_open(
    keyed_server: tuple[Server, dict[str, str]],
) -> None:
    server, keys = keyed_server
    body = v2_body("keyed")
    with httpx.Client(base_url=server.url, timeout=30) as client:
        anonymous = client.post(INFER, json=body)
        forged = client.post(INFER, json=body, headers=bearer(keys["predict"] + "x"))
        reader = client.post(INFER, json=body, headers=bearer(keys["read"]))
        metadata = client.get(f"/v2/models/{MODEL}", headers=bearer(keys["read"]))
        scorer = client.post(INFER, json=body, headers={"X-API-Key": keys["predict"]})
        health = [client.get(path).status_code for path in ("/v2/health/live", "/v2/health/ready")]

    assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"].startswith(
        "Bearer"
    )
    assert "keelson keys create" in anonymous.json()["error"]
    assert (
        forged.status_code == 401 and 'error="invalid_token"' in forged.headers["www-authenticate"]
    )
    assert reader.status_code == 403
    assert "'reader' does not have the 'predict' scope" in reader.json()["error"]
    assert metadata.status_code == 200
    assert scorer.status_code == 200 and scorer.json()["id"] == "keyed"
    assert health == [200, 200]


def test_a_key_past_its_rate_answers_429_with_retry_after(
    keyed_server: tuple[Server, dict[str, str]],
) -> None:
    server, keys = keyed_server
    body = v2_body("metered")
    with httpx.Client(base_url=server.url, timeout=30) as client:
        metered = [client.post(INFER, json=body, headers=bearer(keys["limited"])) for _ in range(6)]
        other = client.post(INFER, json=body, headers=bearer(keys["predict"]))

    statuses = [answer.status_code for answer in metered]
    assert statuses[:2] == [200, 200], statuses  # the burst
    limited = [answer for answer in metered if answer.status_code == 429]
    assert limited and set(statuses) == {200, 429}, statuses
    assert all(int(answer.headers["retry-after"]) >= 1 for answer in limited)
    assert "'metered'" in limited[0].json()["error"]
    assert other.status_code == 200  # buckets are per key


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# --- public bind, TLS, workers -------------------------------------------------------------


def test_a_public_bind_without_auth_is_refused_and_binds_nothing(public_project: Path) -> None:
    port = free_port()
    command = [str(KEELSON), "serve", f"{MODEL}@production", "--project", str(public_project)]
    done = subprocess.run(
        [*command, "--host", "0.0.0.0", "--port", str(port)],
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 1, done.stderr
    assert "refusing to bind 0.0.0.0 without authentication" in done.stderr
    assert "--allow-public-without-auth" in done.stderr
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_the_flag_binds_every_interface(public_server: tuple[Server, ssl.SSLContext]) -> None:
    server, trust = public_server
    port = int(server.address.rsplit(":", 1)[1])
    listening = {
        (c.laddr.ip, c.laddr.port)
        for c in psutil.Process(server.process.pid).net_connections("tcp")
        if c.status == psutil.CONN_LISTEN
    }
    answer = httpx.post(f"{server.url}{INFER}", json=v2_body("public"), verify=trust, timeout=30)

    assert listening == {("0.0.0.0", port)}
    assert answer.status_code == 200


def test_tls_serves_https_only(public_server: tuple[Server, ssl.SSLContext]) -> None:
    server, trust = public_server
    plain = server.url.replace("https://", "http://")
    answer = httpx.post(f"{server.url}{INFER}", json=v2_body("tls"), verify=trust, timeout=30)

    assert answer.status_code == 200 and answer.json()["id"] == "tls"
    with pytest.raises(httpx.ConnectError):  # not signed by a CA the system trusts
        httpx.get(f"{server.url}/v2/health/live", timeout=30)
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{plain}/v2/health/live", timeout=30)


def test_workers_answer_right_and_sigterm_leaves_no_process(
    public_server: tuple[Server, ssl.SSLContext],
) -> None:
    """Last of the tests on ``public_server``: it stops it."""
    server, trust = public_server
    main = psutil.Process(server.process.pid)
    family = main.children(recursive=True)
    workers = [p for p in family if any("spawn_main" in part for part in p.cmdline())]
    sent = rows(40)
    answers = post_rows(server.url, sent, threads=4, verify=trust)
    server.process.send_signal(signal.SIGTERM)
    exit_code = server.process.wait(timeout=120)
    _, survivors = psutil.wait_procs(family, timeout=60)

    assert len(workers) == 2, [p.cmdline() for p in family]
    assert [status for _, status, _ in answers] == [200] * len(sent)
    assert [label for _, _, label in answers] == expected_labels(server.project, sent)
    assert exit_code == 0
    assert survivors == [], f"processes outlived the server: {survivors}"


def expected_labels(project: Path, sent: list[Row]) -> list[str]:
    """The toy model's labels for ``sent``, predicted in this process."""
    from keelson.registry import versions as registry
    from keelson.store.store import locate, open_store

    store = open_store(locate(project))
    try:
        model = registry.load(store, f"{MODEL}@production")
    finally:
        store.close()
    columns: dict[str, list[Any]] = {
        "age": [row.age for row in sent],
        "income": [row.income for row in sent],
        "plan": [row.plan for row in sent],
    }
    return list(model.predict(model.signature.frame(columns)).labels)
