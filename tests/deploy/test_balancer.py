"""The nginx configuration: what it promises, and refusals that name the parameter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from keelson.deploy.balancer import BalancerError, nginx_config

UPSTREAMS = ["127.0.0.1:8081", "127.0.0.1:8082"]


def test_config_retries_posts_and_keeps_every_path_in_the_run_folder(tmp_path: Path) -> None:
    config = nginx_config(UPSTREAMS, "127.0.0.1:8080", run_dir=tmp_path, max_body_bytes=2048)
    for address in UPSTREAMS:
        assert f"server {address} max_fails=2 fail_timeout=5s;" in config
    assert "proxy_next_upstream error timeout http_502 http_503 non_idempotent;" in config
    assert "proxy_next_upstream_tries 2;" in config
    assert "client_max_body_size 2048;" in config
    assert "access_log off;" in config
    paths = [line.split('"')[1] for line in config.splitlines() if '"/' in line]
    assert paths and all(path.startswith(str(tmp_path)) for path in paths)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"upstreams": []}, "'upstreams'"),
        ({"upstreams": ["127.0.0.1:8081; include /etc/passwd"]}, "'upstreams'"),
        ({"upstreams": ["127.0.0.1:8081", "127.0.0.1:8081"]}, "twice"),
        ({"listen": "127.0.0.1:70000"}, "'listen'"),
        ({"listen": "0.0.0.0:8080"}, "no authentication"),
        ({"max_fails": 0}, "'max_fails'"),
        ({"max_body_bytes": True}, "'max_body_bytes'"),
        ({"user": "root; daemon on"}, "'user'"),
        ({"run_dir": Path("/tmp/with space")}, "'run_dir'"),
    ],
)
def test_bad_parameters_are_refused_by_name(
    tmp_path: Path, kwargs: dict[str, Any], needle: str
) -> None:
    arguments: dict[str, Any] = {
        "upstreams": UPSTREAMS,
        "listen": "127.0.0.1:8080",
        "run_dir": tmp_path,
    }
    with pytest.raises(BalancerError, match=needle):
        nginx_config(**{**arguments, **kwargs})


def test_public_listen_needs_an_explicit_flag(tmp_path: Path) -> None:
    config = nginx_config(UPSTREAMS, "0.0.0.0:8080", run_dir=tmp_path, allow_public=True)
    assert "listen 0.0.0.0:8080;" in config
