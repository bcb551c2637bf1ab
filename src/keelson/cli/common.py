"""What every command shares: finding the project, opening its store, clean failures."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console

from keelson.errors import KeelsonError

F = TypeVar("F", bound=Callable[..., Any])
console = Console()
errors = Console(stderr=True)


def fail(message: str, code: int = 1) -> typer.Exit:
    errors.print(f"[red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def friendly(command: F) -> F:
    """Turn user errors into one line and exit 1; anything else into one line and exit 2."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except typer.Exit:  # the command's own exit (``raise fail(...)``)
            raise
        except KeelsonError as exc:
            raise fail(str(exc)) from None
        except KeyboardInterrupt:
            raise fail("interrupted.", 130) from None
        except Exception as exc:
            if os.environ.get("KEELSON_DEBUG"):
                raise
            raise fail(
                f"internal error: {exc!r}. Re-run with KEELSON_DEBUG=1 for a traceback.", 2
            ) from None

    return wrapper  # type: ignore[return-value]


def find_project(start: Path) -> Path:
    """The folder holding keelson.yaml: ``start`` or the nearest parent that has one."""
    from keelson.spec import SPEC_FILE

    start = start.resolve()
    if start.is_file():
        return start.parent
    for folder in [start, *start.parents]:
        if (folder / SPEC_FILE).exists():
            return folder
    raise KeelsonError(
        f"no {SPEC_FILE} in {start} or its parents.",
        hint="Pass --project DIR (e.g. examples/bank-marketing) or run `keelson init DIR`.",
    )


def open_project_store(project: Path, *, check_schema: bool = True) -> Any:
    from keelson.spec import load_spec
    from keelson.store.store import locate, open_store

    spec = load_spec(project)
    return open_store(locate(project, spec.store), check_schema=check_schema)
