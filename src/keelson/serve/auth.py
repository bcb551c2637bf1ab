"""API-key authentication for the data plane: a pure ASGI middleware and the route table.

Every route has an explicit scope and anything unknown needs a key (deny by default):
health probes are open; reads need ``read``; scoring needs ``predict``; ``/admin`` and
any unrecognised write need ``admin``. Errors follow RFC 6750: 401 with
``WWW-Authenticate: Bearer`` when the key is missing or not valid, 403 with
``error="insufficient_scope"`` when it is valid but too weak.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from keelson.security.keys import KeyRing, Principal, ScopeName
from keelson.serve.errors import error_response

REALM = 'Bearer realm="keelson"'
_OPEN = frozenset({"/v2/health/live", "/v2/health/ready", "/ping", "/health"})  # exact paths
_SCORING = re.compile(r"^/v2/models/[^/]+(?:/versions/[^/]+)?/(?:infer|feedback)$|^/invocations$")
_READ_METHODS = frozenset({"GET", "HEAD"})
_MAX_TOKEN = 256  # characters; a longer header value is not one of our keys


def route_scope(scope: Scope) -> ScopeName | None:
    """The scope a request needs; None for the open health probes."""
    path, method = _path(scope), scope.get("method", "GET")
    if path in _OPEN:
        return None
    if path == "/admin" or path.startswith("/admin/"):
        return "admin"
    if method == "POST" and _SCORING.match(path):
        return "predict"
    return "read" if method in _READ_METHODS else "admin"


def principal_of(scope: Scope) -> Principal | None:
    """The principal :class:`ApiKeyAuth` verified for this request, if any."""
    principal = scope.get("state", {}).get("principal")
    return principal if isinstance(principal, Principal) else None


class ApiKeyAuth:
    """Require a valid API key with the route's scope; store its principal in the request state.

    The key comes from ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``. Endpoints
    read it as ``request.state.principal``. ``on_reject(reason)`` is called for each
    refusal (``unauthenticated`` or ``forbidden``), e.g. to count it in metrics.
    """

    def __init__(
        self,
        app: ASGIApp,
        keyring: KeyRing,
        required_scope: Callable[[Scope], str | None] = route_scope,
        on_reject: Callable[[str], None] | None = None,
    ) -> None:
        self.app = app
        self.keyring = keyring
        self.required_scope = required_scope
        self.on_reject = on_reject

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        needed = self.required_scope(scope)
        if needed is None:
            await self.app(scope, receive, send)
            return
        token = bearer_token(Headers(scope=scope))
        principal = self.keyring.verify(token) if token else None
        if principal is not None and principal.allows(needed):
            scope.setdefault("state", {})["principal"] = principal
            await self.app(scope, receive, send)
            return
        await self._refuse(scope, receive, send, needed, token, principal)

    async def _refuse(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        needed: str,
        token: str | None,
        principal: Principal | None,
    ) -> None:
        reason = "unauthenticated" if principal is None else "forbidden"
        if self.on_reject is not None:
            self.on_reject(reason)
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        status, message, challenge = _refusal(scope, needed, token, principal)
        response = error_response(status, message, {"WWW-Authenticate": challenge})
        await response(scope, receive, send)


def _refusal(
    scope: Scope, needed: str, token: str | None, principal: Principal | None
) -> tuple[int, str, str]:
    """(status, message, WWW-Authenticate challenge) for a refused request (RFC 6750)."""
    if principal is not None:
        challenge = f'{REALM}, error="insufficient_scope", scope="{needed}"'
        return 403, _forbidden(scope, needed, principal), challenge
    if token is None:
        return 401, _missing(scope, needed), REALM
    return 401, _invalid(), f'{REALM}, error="invalid_token"'


def bearer_token(headers: Headers) -> str | None:
    """The key from ``Authorization: Bearer <key>``, else ``X-API-Key``; None when neither.

    An ``Authorization`` header of another scheme gives "" (a credential that fails).
    """
    authorization = headers.get("authorization")
    if authorization is not None:
        scheme, _, value = authorization.strip().partition(" ")
        return value.strip()[:_MAX_TOKEN] if scheme.lower() == "bearer" else ""
    value = headers.get("x-api-key", "").strip()
    return value[:_MAX_TOKEN] or None


def _missing(scope: Scope, needed: str) -> str:
    return (
        f"{_request(scope)} needs an API key with the '{needed}' scope; send it as "
        "'Authorization: Bearer <key>' or 'X-API-Key: <key>'. "
        f"Create one with `keelson keys create NAME --scope {needed}`."
    )


def _invalid() -> str:
    return (
        "the API key is not valid: it is malformed, unknown or revoked, or the Authorization "
        "header is not 'Bearer <key>'. Check it with `keelson keys list`, or create a new one."
    )


def _forbidden(scope: Scope, needed: str, principal: Principal) -> str:
    return (
        f"the API key '{principal.name}' does not have the '{needed}' scope that "
        f"{_request(scope)} needs; use a key created with --scope {needed}."
    )


def _request(scope: Scope) -> str:
    path = _path(scope)
    return f"{scope.get('method', 'GET')} {path[:200]}"


def _path(scope: Scope) -> str:
    """The path the router matches: without the ``root_path`` prefix, as Starlette strips it."""
    path: str = scope.get("path", "/")
    root = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("", "/"):
        return path[len(root) :] or "/"
    return path
