"""What the serving bench's parts share: the model served, its rows, and how a server is
described (its venv, how to prepare and launch it, and the endpoints it answers on).

Imported by the harness (``bench/serving.py``, keelson's venv); needs NumPy only.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from peer_venvs import Venv

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Rows:
    """Sample rows of a model's signature: JSON-native values, row-major.

    ``types`` are keelson's signature types (int64, float64, string, bool), per column.
    """

    columns: list[str]
    types: list[str]
    data: list[list[Any]]

    def head(self, n: int) -> Rows:
        return Rows(self.columns, self.types, self.data[:n])

    def column(self, position: int) -> list[Any]:
        return [row[position] for row in self.data]

    def records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.data]

    def to_json(self) -> str:
        return json.dumps({"columns": self.columns, "types": self.types, "data": self.data})

    @classmethod
    def from_json(cls, text: str) -> Rows:
        raw = json.loads(text)
        return cls(raw["columns"], raw["types"], raw["data"])


@dataclass(frozen=True)
class ServedModel:
    """One registered keelson model, exported once for the peers.

    ``folder`` holds ``model.joblib`` (the fitted pipeline, the same object for every
    server), ``rows.json`` (the bench's rows) and ``expected.npy`` (their probabilities
    from the in-process pipeline, the reference every server's answer is checked against).
    """

    key: str  # the label in the tables, e.g. "bank"
    name: str  # the registry name, also the model name on the V2 servers
    alias: str
    project: Path
    folder: Path
    classes: list[str]

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.alias}"

    @property
    def joblib(self) -> Path:
        return self.folder / "model.joblib"

    @property
    def rows(self) -> Rows:
        return Rows.from_json((self.folder / "rows.json").read_text(encoding="utf-8"))

    @property
    def expected(self) -> np.ndarray:
        return np.load(self.folder / "expected.npy")


Body = Callable[[ServedModel, Rows], dict[str, Any]]
Parse = Callable[[Any, ServedModel], np.ndarray]


@dataclass(frozen=True)
class Endpoint:
    """One measured row of the tables: a URL path, its native body, its answer's parser."""

    label: str
    path: str  # may hold {name}: the model's name
    body: Body
    parse: Parse  # the decoded JSON answer -> probabilities, (rows, classes)

    def url(self, base: str, model: ServedModel) -> str:
        return base + self.path.format(name=model.name)


@dataclass(frozen=True)
class Options:
    """What every server of one run shares: worker processes, keelson's extra arguments."""

    workers: int = 1
    keelson_args: tuple[str, ...] = ()


@dataclass(frozen=True)
class Launch:
    """A server's command line, the path that answers 200 once it is ready, and its setting."""

    command: list[str]
    ready_path: str
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None


def free_port() -> int:
    """A TCP port free on loopback now (the OS's choice)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


Prepare = Callable[[ServedModel, Path], None]
Start = Callable[[ServedModel, int, Options, Path], Launch]


def nothing_to_prepare(model: ServedModel, work: Path) -> None:
    """For servers that read ``model.joblib`` (or keelson's store) as it is."""


@dataclass(frozen=True)
class Server:
    """One server process: ``prepare`` once per model (in ``work``), then ``launch``."""

    name: str
    venv: Venv | None  # None: keelson's own venv
    endpoints: tuple[Endpoint, ...]
    launch: Start
    prepare: Prepare = nothing_to_prepare
    note: str = ""

    @property
    def installed(self) -> bool:
        return self.venv is None or self.venv.python.exists()
