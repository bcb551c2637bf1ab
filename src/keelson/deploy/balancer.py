"""nginx as a load balancer in front of several ``keelson serve`` processes.

``nginx_config`` renders the configuration; ``run_nginx`` starts nginx in the foreground
with every path it writes (pid, logs, temporary bodies) inside the run folder, so it
needs neither root nor ``/var``. A request that fails on one server (connection
error, timeout, 502, 503) is retried on the next, POST included: inference has no
side effect but the prediction log, so a retry loses nothing.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
from pathlib import Path

from keelson import __version__
from keelson.errors import KeelsonError
from keelson.net import is_loopback
from keelson.spec import Serve

DEFAULT_MAX_BODY_BYTES: int = Serve.model_fields["max_body_bytes"].default
NGINX_CANDIDATES = ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx")
# Below uvicorn's 5 s keep-alive, so nginx never reuses a connection the server is closing.
UPSTREAM_KEEPALIVE_SECONDS = 4
_ADDRESS = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(?P<port>[0-9]{1,5})$")
_USER = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}$")
_UNSAFE_PATH = re.compile(r'["\\$;{}\s]')
_ERRORS = {  # status -> the {"error"} body nginx answers itself, in the server's shape
    413: "the request body is larger than the limit of {max_body_bytes} bytes; "
    "send fewer rows per request.",
    502: "no model server answered; retry shortly.",
    504: "no model server answered in time; retry shortly.",
}


class BalancerError(KeelsonError):
    code = "balancer_invalid"


def nginx_config(
    upstreams: list[str],
    listen: str,
    *,
    run_dir: Path,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_fails: int = 2,
    fail_timeout_seconds: int = 5,
    connect_timeout_seconds: float = 1.0,
    read_timeout_seconds: float = 30.0,
    keepalive: int = 32,
    access_log: bool = False,
    user: str | None = None,
    allow_public: bool = False,
) -> str:
    """An nginx configuration balancing ``listen`` (``host:port``) over ``upstreams``.

    A server failing ``max_fails`` times within ``fail_timeout_seconds`` is left out for
    that long. ``run_dir`` holds the pid file, ``error.log``, ``access.log`` (when
    ``access_log``) and temporary files. ``user`` is who the workers run as when nginx
    starts as root (nginx's default, nobody, may not reach ``run_dir``). ``listen``
    must be loopback unless ``allow_public``: the balancer adds no authentication.
    """
    _check_upstreams(upstreams)
    _check_listen(listen, allow_public)
    _check_positive(
        max_body_bytes=max_body_bytes,
        max_fails=max_fails,
        fail_timeout_seconds=fail_timeout_seconds,
        keepalive=keepalive,
    )
    if user is not None and not _USER.match(user):
        raise BalancerError(
            f"The 'user' parameter of nginx_config must be a user name. Got {user!r} instead."
        )
    run = _run_dir(run_dir)
    main = [
        f"# keelson {__version__}: {listen} balanced over {len(upstreams)} servers",
        f"user {user};" if user else "",
        "worker_processes 1;",
        f'pid "{run}/nginx.pid";',
        f'error_log "{run}/error.log" warn;',
        "events { worker_connections 1024; }",
    ]
    http = _http_block(
        run,
        access_log,
        _upstream_block(upstreams, max_fails, fail_timeout_seconds, keepalive),
        _server_block(
            listen, max_body_bytes, len(upstreams), connect_timeout_seconds, read_timeout_seconds
        ),
    )
    return "\n".join(line for line in [*main, http] if line) + "\n"


def _http_block(run: str, access_log: bool, upstream: str, server: str) -> str:
    temp = [
        f'{kind}_temp_path "{run}/{kind}_temp";'
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    ]
    log_format = (
        'log_format upstreams \'$remote_addr [$time_local] "$request" $status '
        "$request_time upstream=$upstream_addr upstream_status=$upstream_status';"
    )
    log = f'access_log "{run}/access.log" upstreams;' if access_log else "access_log off;"
    body = [*temp, log_format, log, "server_tokens off;", upstream, server]
    return "http {\n" + _indent("\n".join(body)) + "\n}"


def _upstream_block(upstreams: list[str], max_fails: int, fail_timeout: int, keepalive: int) -> str:
    servers = [
        f"server {address} max_fails={max_fails} fail_timeout={fail_timeout}s;"
        for address in upstreams
    ]
    pool = [f"keepalive {keepalive};", f"keepalive_timeout {UPSTREAM_KEEPALIVE_SECONDS}s;"]
    return "upstream keelson {\n" + _indent("\n".join([*servers, *pool])) + "\n}"


def _server_block(
    listen: str, max_body_bytes: int, tries: int, connect_timeout: float, read_timeout: float
) -> str:
    proxy = [
        "proxy_pass http://keelson;",
        "proxy_http_version 1.1;",
        'proxy_set_header Connection "";',
        "proxy_set_header Host $host;",
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        f"proxy_connect_timeout {_duration(connect_timeout)};",
        f"proxy_send_timeout {_duration(read_timeout)};",
        f"proxy_read_timeout {_duration(read_timeout)};",
        "proxy_next_upstream error timeout http_502 http_503 non_idempotent;",
        f"proxy_next_upstream_tries {tries};",
        f"proxy_next_upstream_timeout {_duration(read_timeout)};",
    ]
    lines = [
        f"listen {listen};",
        f"client_max_body_size {max_body_bytes};",
        *(f"error_page {status} = @error_{status};" for status in _ERRORS),
        "location / {\n" + _indent("\n".join(proxy)) + "\n}",
        *(_error_location(status, max_body_bytes) for status in _ERRORS),
    ]
    return "server {\n" + _indent("\n".join(lines)) + "\n}"


def _error_location(status: int, max_body_bytes: int) -> str:
    message = _ERRORS[status].format(max_body_bytes=max_body_bytes)
    body = f'{{"error": "{message}"}}'
    return (
        f"location @error_{status} {{\n"
        f"    default_type application/json;\n    return {status} '{body}';\n}}"
    )


def find_nginx() -> Path:
    """The nginx binary on ``PATH`` or in the usual system folders."""
    found = shutil.which("nginx")
    candidates = [found] if found else []
    for candidate in [*candidates, *NGINX_CANDIDATES]:
        if Path(candidate).is_file():
            return Path(candidate)
    raise BalancerError(
        "nginx is not installed.", hint="Install it, e.g. `apt-get install -y nginx`."
    )


def run_nginx(conf_path: Path, nginx: Path | None = None) -> subprocess.Popen[bytes]:
    """Check ``conf_path`` (``nginx -t``), then start nginx in the foreground and return it.

    Paths are relative to the configuration's folder; messages go to its ``error.log``.
    Stop it with ``stop_nginx``.
    """
    command = _nginx_command(conf_path, nginx or find_nginx())
    check = subprocess.run([*command, "-t", "-q"], capture_output=True, text=True, check=False)
    if check.returncode != 0:
        log = Path(conf_path).resolve().parent / "error.log"
        details = (check.stderr.strip() or _tail(log)).replace("\n", " ")
        raise BalancerError(f"nginx refuses the configuration: {details}", where=str(conf_path))
    return subprocess.Popen([*command, "-g", "daemon off;"], stdin=subprocess.DEVNULL)


def stop_nginx(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Graceful stop (SIGQUIT: finish the requests in flight), then kill after ``timeout``."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGQUIT)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _nginx_command(conf_path: Path, nginx: Path) -> list[str]:
    conf = Path(conf_path).resolve()
    prefix = conf.parent
    return [str(nginx), "-p", f"{prefix}/", "-e", str(prefix / "error.log"), "-c", str(conf)]


def _tail(log: Path, lines: int = 3) -> str:
    try:
        return "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "no message (see nginx's error log)"


def _check_upstreams(upstreams: list[str]) -> None:
    if not isinstance(upstreams, list) or not upstreams:
        raise BalancerError(
            "The 'upstreams' parameter of nginx_config must be a non-empty list of "
            f"'host:port' strings. Got {upstreams!r} instead."
        )
    for address in upstreams:
        _check_address("upstreams", address)
    if len(set(upstreams)) != len(upstreams):
        raise BalancerError(f"'upstreams' lists a server twice: {upstreams!r}.")


def _check_listen(listen: str, allow_public: bool) -> None:
    _check_address("listen", listen)
    if not allow_public and not is_loopback(listen.rsplit(":", 1)[0]):
        raise BalancerError(
            f"refusing to listen on {listen}: the balancer adds no authentication.",
            hint="Listen on 127.0.0.1, or pass allow_public=True behind your own gateway.",
        )


def _check_address(name: str, address: object) -> None:
    match = _ADDRESS.match(address) if isinstance(address, str) else None
    if match is None or not 1 <= int(match["port"]) <= 65535:
        raise BalancerError(
            f"The '{name}' parameter of nginx_config must hold 'host:port' addresses "
            f"(e.g. '127.0.0.1:8081', '[::1]:8081'). Got {address!r} instead."
        )


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise BalancerError(
                f"The '{name}' parameter of nginx_config must be a positive int. "
                f"Got {value!r} instead."
            )


def _run_dir(run_dir: Path) -> str:
    path = Path(run_dir).resolve()
    if _UNSAFE_PATH.search(str(path)):
        raise BalancerError(
            "The 'run_dir' parameter of nginx_config must be a path without spaces, quotes, "
            f"'$', ';', braces or backslashes. Got {str(path)!r} instead."
        )
    return str(path)


def _duration(seconds: float) -> str:
    if seconds <= 0:
        raise BalancerError(f"timeouts must be positive seconds. Got {seconds!r} instead.")
    return f"{max(1, round(seconds * 1000))}ms"


def _indent(text: str) -> str:
    return "\n".join(f"    {line}" if line else line for line in text.splitlines())
