"""The peers' own environments, shared by the benches: one uv venv (Python 3.11) per
peer under ``bench/.venvs/``, so a peer's packages never enter keelson's lock."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

VENVS = Path(__file__).resolve().parent / ".venvs"
PEER_PYTHON = "3.11"


@dataclass(frozen=True)
class Venv:
    name: str
    packages: tuple[str, ...]

    @property
    def folder(self) -> Path:
        return VENVS / self.name

    @property
    def bin(self) -> Path:
        return self.folder / "bin"

    @property
    def python(self) -> Path:
        return self.bin / "python"
