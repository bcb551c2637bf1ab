"""`keelson keys`: create (printed once), list (never the secret), revoke."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from keelson.cli.keys import app
from keelson.security.keys import KeyRing
from keelson.store.store import locate, open_store

KEY = re.compile(r"^kls_[0-9a-f]{8}_[A-Za-z0-9_-]{43}$")


def keys_cli(project: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, [*args, "--project", str(project)])
    return result.exit_code, result.stdout, result.stderr


def test_create_prints_the_key_alone_on_stdout_once(project: Path) -> None:
    code, out, err = keys_cli(project, "create", "ci", "--scope", "read", "--rate", "2.5")
    assert code == 0, err
    plaintext = out.strip()
    assert KEY.match(plaintext)
    assert "Created API key 'ci'" in err and "scope read" in err
    assert "cannot show it again" in err
    store = open_store(locate(project))
    principal = KeyRing.load(store).verify(plaintext)
    store.close()
    assert principal is not None and principal.scopes == {"read"} and principal.rate == 2.5
    _, listing, _ = keys_cli(project, "list")
    assert plaintext.split("_", 2)[2] not in listing


def test_list_and_revoke(project: Path) -> None:
    keys_cli(project, "create", "ci")
    _, created, _ = keys_cli(project, "create", "batch", "--scope", "admin", "--burst", "20")
    key_id = created.split("_")[1]
    code, listing, _ = keys_cli(project, "list")
    assert code == 0
    assert re.search(r"ci\s.*predict\s.*default", listing)
    assert re.search(rf"{key_id}\s.*batch\s.*admin\s.*default\s.*20", listing)
    code, out, _ = keys_cli(project, "revoke", key_id)
    assert code == 0 and f"Revoked API key 'batch' (id {key_id})" in out
    assert "batch" not in keys_cli(project, "list")[1]
    assert "batch" in keys_cli(project, "list", "--all")[1]
    code, _, err = keys_cli(project, "revoke", "batch")
    assert code == 1 and "no live API key is named or has the id 'batch'" in err


def test_mistakes_are_one_clear_line(project: Path) -> None:
    keys_cli(project, "create", "ci")
    code, _, err = keys_cli(project, "create", "ci")
    assert code == 1 and "already named 'ci'" in err and "keelson keys revoke ci" in err
    code, _, err = keys_cli(project, "create", "other", "--scope", "write")
    assert code == 2 and "read" in err and "predict" in err and "admin" in err
    code, _, err = keys_cli(project, "create", "other", "--rate", "0")
    assert code == 2 and "--rate" in err
    code, _, err = keys_cli(project, "create", "has space")
    assert code == 1 and "key name" in err and "Traceback" not in err
