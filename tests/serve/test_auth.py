"""API keys over real HTTP: 401 without a valid key, 403 with too weak a scope, probes open."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import Request

from keelson.registry.model import LoadedModel
from keelson.security.keys import KeyRing, create_key, revoke_key
from keelson.serve import create_app
from keelson.serve.auth import ApiKeyAuth, route_scope
from keelson.store.store import Store, locate, open_store

from .conftest import serving
from .helpers import INFER, ROWS, invocation_bodies, v2_body


@dataclass
class Server:
    url: str
    store: Store
    ring: KeyRing
    keys: dict[str, str]  # scope -> plaintext key
    rejections: list[str] = field(default_factory=list)

    def get(self, path: str, key: str | None = None, **kwargs: Any) -> httpx.Response:
        return httpx.get(self.url + path, headers=_bearer(key), **kwargs)

    def post(self, path: str, body: Any, key: str | None = None) -> httpx.Response:
        return httpx.post(self.url + path, json=body, headers=_bearer(key))


def _bearer(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


@pytest.fixture(scope="module")
def server(model: LoadedModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    store = open_store(locate(tmp_path_factory.mktemp("keys")))
    keys = {scope: create_key(store, f"{scope}-client", scope)[1] for scope in ("read", "predict")}
    keys["admin"] = create_key(store, "operator", "admin")[1]
    ring = KeyRing.load(store)
    app = create_app(model)

    @app.get("/whoami")
    async def whoami(request: Request) -> dict[str, Any]:
        principal = request.state.principal
        return {"name": principal.name, "scopes": sorted(principal.scopes)}

    rejections: list[str] = []
    with serving(ApiKeyAuth(app, ring, route_scope, on_reject=rejections.append)) as url:
        yield Server(url, store, ring, keys, rejections)
    store.close()


@pytest.mark.parametrize("path", ["/v2/health/live", "/v2/health/ready", "/ping", "/health"])
def test_health_probes_need_no_key(server: Server, path: str) -> None:
    assert server.get(path).status_code == 200


def test_no_key_is_401_with_a_bearer_challenge(server: Server, model: LoadedModel) -> None:
    response = server.post(INFER, v2_body(model, ROWS))
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="keelson"'
    message = response.json()["error"]
    assert f"POST {INFER} needs an API key with the 'predict' scope" in message
    assert "Authorization: Bearer <key>" in message and "keelson keys create" in message


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer kls_00000000_" + "x" * 43},
        {"Authorization": "Bearer not-a-key"},
        {"Authorization": "Bearer"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"X-API-Key": "kls_00000000_" + "x" * 43},
    ],
)
def test_a_key_that_is_not_valid_is_401(server: Server, headers: dict[str, str]) -> None:
    response = httpx.get(server.url + "/v2/models/toy", headers=headers)
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert "not valid" in response.json()["error"]


def test_unknown_routes_still_need_a_key(server: Server) -> None:
    assert server.get("/no/such/route").status_code == 401
    assert server.get("/no/such/route", server.keys["read"]).status_code == 404


def test_a_read_key_reads_but_does_not_predict(server: Server, model: LoadedModel) -> None:
    read = server.keys["read"]
    assert server.get("/v2/models/toy", read).json()["name"] == "toy"
    assert server.get("/metrics", read).status_code == 200
    assert server.get("/openapi.json", read).status_code == 200
    response = server.post(INFER, v2_body(model, ROWS), read)
    assert response.status_code == 403
    assert "'read-client' does not have the 'predict' scope" in response.json()["error"]
    assert "--scope predict" in response.json()["error"]
    challenge = response.headers["www-authenticate"]
    assert 'error="insufficient_scope"' in challenge and 'scope="predict"' in challenge


def test_a_predict_key_scores_by_either_header(server: Server, model: LoadedModel) -> None:
    key = server.keys["predict"]
    by_bearer = server.post(INFER, v2_body(model, ROWS), key)
    by_api_key = httpx.post(
        server.url + INFER, json=v2_body(model, ROWS), headers={"X-API-Key": key}
    )
    assert by_bearer.status_code == by_api_key.status_code == 200
    assert by_bearer.json()["outputs"] == by_api_key.json()["outputs"]
    body = invocation_bodies(ROWS)["dataframe_records"]
    assert server.post("/invocations", body, key).status_code == 200
    assert server.get("/v2/models/toy", key).status_code == 200  # predict implies read


def test_admin_routes_and_unknown_writes_need_admin(server: Server, model: LoadedModel) -> None:
    predict, admin = server.keys["predict"], server.keys["admin"]
    assert server.get("/admin/models", predict).status_code == 403
    assert server.post("/v2/repository/models/toy/load", {}, predict).status_code == 403
    assert server.get("/admin/models", admin).status_code == 404  # through auth, no such route
    assert server.post(INFER, v2_body(model, ROWS), admin).status_code == 200


def test_the_principal_reaches_the_endpoint(server: Server) -> None:
    response = server.get("/whoami", server.keys["predict"])
    assert response.json() == {"name": "predict-client", "scopes": ["predict", "read"]}


def test_refusals_are_reported_by_reason(server: Server, model: LoadedModel) -> None:
    server.rejections.clear()
    server.get("/v2/models/toy")
    server.post(INFER, v2_body(model, ROWS), server.keys["read"])
    server.get("/v2/health/live")
    assert server.rejections == ["unauthenticated", "forbidden"]


def test_a_revoked_key_is_refused_after_a_refresh(server: Server) -> None:
    _, key = create_key(server.store, "short-lived", "read")
    server.ring.refresh(server.store)
    assert server.get("/v2/models/toy", key).status_code == 200
    revoke_key(server.store, "short-lived")
    server.ring.refresh(server.store)
    assert server.get("/v2/models/toy", key).status_code == 401


@pytest.mark.parametrize(
    ("method", "path", "root_path", "needed"),
    [
        ("GET", "/v2/health/live", "", None),
        ("GET", "/ping", "", None),
        ("GET", "/health", "", None),
        ("GET", "/v2", "", "read"),
        ("GET", "/v2/models/toy", "", "read"),
        ("GET", "/v2/models/toy/ready", "", "read"),
        ("HEAD", "/metrics", "", "read"),
        ("GET", "/docs", "", "read"),
        ("GET", "/healthz", "", "read"),
        ("POST", "/v2/models/toy/infer", "", "predict"),
        ("POST", "/v2/models/toy/versions/3/infer", "", "predict"),
        ("POST", "/v2/models/toy/feedback", "", "predict"),
        ("POST", "/invocations", "", "predict"),
        ("GET", "/v2/models/toy/infer", "", "read"),
        ("POST", "/v2/models/toy/infer/x", "", "admin"),
        ("POST", "/v2/health/live/../../models/toy/infer", "", "admin"),
        ("GET", "/v2/health/live/../../models/toy", "", "read"),
        ("GET", "/v2/health/other", "", "read"),
        ("DELETE", "/v2/models/toy", "", "admin"),
        ("GET", "/admin", "", "admin"),
        ("GET", "/administrator", "", "read"),
        ("GET", "/admin/keys", "", "admin"),
        ("GET", "/api/ping", "/api", None),
        ("POST", "/api/invocations", "/api", "predict"),
        ("GET", "/apiping", "/api", "read"),
    ],
)
def test_route_scopes(method: str, path: str, root_path: str, needed: str | None) -> None:
    scope = {"type": "http", "method": method, "path": path, "root_path": root_path}
    assert route_scope(scope) == needed
