"""The step cache: a step's output is reused when its code, inputs and parameters are unchanged.

A key is the SHA-256 of the canonical JSON of its parts, and the parts are stored with
it, so that ``why did this re-run?`` has an answer (:meth:`StepCache.explain`)::

    {"format": 1,
     "code": {"sha256": <code_version(...)>, "keelson_version": "0.1.0"},
     "inputs": {"table": <sha256 of the input's content>, ...},
     "params": <the step's slice of the spec, as canonical JSON values>}

Code is versioned by its normalised source (parsed and unparsed with :mod:`ast`, so
comments, docstrings and formatting do not count) together with the keelson version.
"""

from __future__ import annotations

import ast
import dataclasses
import datetime as dt
import enum
import hashlib
import inspect
import json
import math
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import PurePath
from types import ModuleType
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError as RowExists

from keelson import __version__
from keelson.errors import KeelsonError, NotFoundError
from keelson.store.store import Store
from keelson.store.tables import CacheEntry

KEY_FORMAT = 1
MAX_NAME = 100  # the width of the step_cache.step column
_SHOWN = 60  # longest parameter value written out in an explanation


# --- keys ----------------------------------------------------------------------


@dataclass(frozen=True)
class CacheKey:
    """A step's cache key and the parts it was computed from."""

    step: str
    key: str
    parts: dict[str, Any]


def code_version(*objects: Callable[..., Any] | ModuleType) -> str:
    """SHA-256 of the normalised source of functions, classes or modules, and keelson's version."""
    if not objects:
        raise ValueError("code_version needs at least one function or module to version.")
    sources = [_normalised_source(obj) for obj in objects]
    return _sha256(canonical_json({"keelson_version": __version__, "sources": sources}))


def _normalised_source(obj: Callable[..., Any] | ModuleType) -> str:
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", repr(obj))
    try:
        source = textwrap.dedent(inspect.getsource(obj))
    except (OSError, TypeError):
        raise KeelsonError(
            f"cannot read the source code of {name!r} to version it.",
            where=getattr(obj, "__module__", None),
            hint="Cached steps must be Python functions or modules defined in .py files.",
        ) from None
    try:
        return ast.unparse(_without_docstrings(ast.parse(source)))
    except SyntaxError:  # a lambda inside an expression: its lines do not parse alone
        return "\n".join(line.strip() for line in source.splitlines() if line.strip())


def _without_docstrings(tree: ast.Module) -> ast.Module:
    """Drop the docstring of the module and of every function and class in it."""
    kinds = (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(node, kinds) and body and _is_docstring(body[0]):
            node.body = body[1:] or [ast.Pass()]
    return tree


def _is_docstring(node: ast.stmt) -> bool:
    return (
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    )


def cache_key(step: str, code: str, inputs: Mapping[str, str], params: Any) -> CacheKey:
    """The key of ``step`` for this code version, these input hashes and these parameters."""
    if not step or len(step) > MAX_NAME:
        raise KeelsonError(f"step name {step!r} must have 1 to {MAX_NAME} characters.")
    for name, digest in inputs.items():
        if not isinstance(digest, str) or not digest:
            raise KeelsonError(
                f"input {name!r} of step {step!r} needs a content hash (text); got {digest!r}."
            )
    parts = {
        "format": KEY_FORMAT,
        "code": {"sha256": code, "keelson_version": __version__},
        "inputs": {str(name): digest for name, digest in sorted(inputs.items())},
        "params": canonical(params, "params"),
    }
    return CacheKey(step, _sha256(canonical_json(parts)), parts)


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, floats by ``repr``: equal values give equal text."""
    return json.dumps(canonical(value), sort_keys=True, separators=(",", ":"), allow_nan=False)


def canonical(value: Any, where: str = "value") -> Any:
    """``value`` as plain JSON data (dicts with text keys, lists, text, numbers, booleans, null).

    Pydantic models, dataclasses, enums, paths, dates, sets and NumPy scalars are converted;
    non-finite floats become the text ``"nan"``, ``"inf"`` or ``"-inf"``.
    """
    for kind, convert in _CONVERTERS:
        if isinstance(value, kind):
            return convert(value, where)
    if hasattr(value, "model_dump"):  # pydantic
        return canonical(value.model_dump(mode="json", by_alias=True), where)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return canonical(dataclasses.asdict(value), where)
    if hasattr(value, "item") and callable(value.item):  # a NumPy scalar
        return canonical(value.item(), where)
    raise KeelsonError(
        f"cannot use a value of type {type(value).__name__} in a cache key.",
        where=where,
        hint="Use text, numbers, booleans, lists and mappings.",
    )


def _mapping(value: Mapping[Any, Any], where: str) -> dict[str, Any]:
    out = {}
    for key, item in value.items():
        name = key.value if isinstance(key, enum.Enum) else key
        if not isinstance(name, str | int):
            raise KeelsonError(f"mapping key {key!r} is neither text nor a number.", where=where)
        out[str(name)] = canonical(item, f"{where}.{name}")
    return out


def _float(value: float, where: str) -> float | str:
    if math.isfinite(value):
        return float(value)
    return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")


_CONVERTERS: list[tuple[type | tuple[type, ...], Callable[[Any, str], Any]]] = [
    (enum.Enum, lambda v, w: canonical(v.value, w)),  # before str and int: StrEnum, IntEnum
    (bool, lambda v, w: bool(v)),
    ((str, type(None)), lambda v, w: v if v is None else str(v)),
    (int, lambda v, w: int(v)),
    (float, _float),
    (Mapping, _mapping),
    ((list, tuple), lambda v, w: [canonical(x, f"{w}[{i}]") for i, x in enumerate(v)]),
    ((set, frozenset), lambda v, w: sorted((canonical(x, w) for x in v), key=canonical_json)),
    (PurePath, lambda v, w: v.as_posix()),
    ((dt.date, dt.time), lambda v, w: v.isoformat()),
    (dt.timedelta, lambda v, w: v.total_seconds()),
]


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# --- the cache -----------------------------------------------------------------


@dataclass(frozen=True)
class Explanation:
    """Why a step runs again (or is reused): one human-readable line per change."""

    step: str
    reused: bool
    lines: list[str]
    key: str | None = None
    previous: str | None = None
    changes: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        return "\n".join(f"{self.step}: {line}" for line in self.lines)


class StepCache:
    """Cached step outputs of one project, in the store's ``step_cache`` table."""

    def __init__(self, store: Store, project: str):
        self.store = store
        self.project = project

    def lookup(self, key: CacheKey) -> dict[str, Any] | None:
        """The output saved under ``key``, or ``None`` when the step must run."""
        with self.store.session() as session:
            entry = session.get(CacheEntry, (self.project, key.step, key.key))
            return dict(entry.output) if entry is not None else None

    def save(self, key: CacheKey, output: dict[str, Any]) -> None:
        """Record ``output`` under ``key``; saving again replaces it (the first date stays)."""
        document = canonical(output, f"{key.step} output")
        try:
            self._upsert(key, document)
        except RowExists:  # another process inserted the same key meanwhile
            self._upsert(key, document)

    def _upsert(self, key: CacheKey, output: dict[str, Any]) -> None:
        with self.store.session() as session:
            entry = session.get(CacheEntry, (self.project, key.step, key.key))
            if entry is None:
                entry = CacheEntry(project=self.project, step=key.step, key=key.key)
                session.add(entry)
            entry.parts, entry.output = key.parts, output

    def entries(self, step: str, limit: int = 20) -> list[CacheEntry]:
        """The step's entries, newest first."""
        query = (
            select(CacheEntry)
            .where(CacheEntry.project == self.project, CacheEntry.step == step)
            .order_by(CacheEntry.created_at.desc(), CacheEntry.key)
            .limit(limit)
        )
        with self.store.session() as session:
            return list(session.scalars(query))

    def explain(self, step: str, key: CacheKey | None = None) -> Explanation:
        """Compare ``key`` (default: the newest entry) with the step's previous entry."""
        if key is not None:
            return self._explain_key(step, key)
        newest = self.entries(step, limit=2)
        if not newest:
            raise NotFoundError(
                f"step '{step}' has no cached result in project '{self.project}'.",
                hint="Run `keelson run` first; `keelson explain` then says why a step re-ran.",
            )
        before = newest[1] if len(newest) > 1 else None
        return _explanation(step, newest[0].key, newest[0].parts, before)

    def _explain_key(self, step: str, key: CacheKey) -> Explanation:
        if key.step != step:
            raise KeelsonError(f"the key given to explain step '{step}' is for step '{key.step}'.")
        if self.lookup(key) is not None:
            return Explanation(step, True, ["unchanged: reused"], key.key, key.key)
        newest = self.entries(step, limit=1)
        return _explanation(step, key.key, key.parts, newest[0] if newest else None)


def _explanation(
    step: str, key: str, parts: dict[str, Any], previous: CacheEntry | None
) -> Explanation:
    if previous is None:
        return Explanation(step, False, ["no previous run"], key)
    changes = compare_parts(previous.parts, parts)
    lines = [change["line"] for change in changes] or ["no recorded part changed"]
    return Explanation(step, False, lines, key, previous.key, changes)


# --- comparing parts -----------------------------------------------------------


def compare_parts(old: dict[str, Any], new: dict[str, Any]) -> list[dict[str, Any]]:
    """The differences between two keys' parts: code, then inputs, then parameters."""
    changes = _code_change(old.get("code") or {}, new.get("code") or {})
    changes += _input_changes(old.get("inputs") or {}, new.get("inputs") or {})
    changes += _param_changes(old.get("params"), new.get("params"), "")
    if old.get("format") != new.get("format"):
        line = f"cache key format changed from {old.get('format')} to {new.get('format')}"
        changes.append({"part": "format", "line": line})
    return changes


def _code_change(old: dict[str, Any], new: dict[str, Any]) -> list[dict[str, Any]]:
    if old.get("sha256") == new.get("sha256"):
        return []
    before, after = old.get("keelson_version"), new.get("keelson_version")
    if before != after:
        line = f"code changed: keelson {before} → {after}"
    else:
        line = f"code changed ({_short(old.get('sha256'))} → {_short(new.get('sha256'))})"
    return [{"part": "code", "line": line, "old": old.get("sha256"), "new": new.get("sha256")}]


def _input_changes(old: dict[str, str], new: dict[str, str]) -> list[dict[str, Any]]:
    changes = []
    for name in sorted(old.keys() | new.keys()):
        a, b = old.get(name), new.get(name)
        if a == b:
            continue
        if a is None:
            line = f"input {name} added (sha {_short(b)})"
        elif b is None:
            line = f"input {name} removed (was sha {_short(a)})"
        else:
            line = f"input {name} changed from sha {_short(a)} to {_short(b)}"
        changes.append({"part": "input", "name": name, "line": line, "old": a, "new": b})
    return changes


_MISSING = object()


def _param_changes(old: Any, new: Any, path: str) -> list[dict[str, Any]]:
    """Recursive diff naming the exact path of each change (``a.b``, ``a.items[2]``)."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [
            change
            for name in sorted(old.keys() | new.keys())
            for change in _param_changes(
                old.get(name, _MISSING), new.get(name, _MISSING), f"{path}.{name}" if path else name
            )
        ]
    if isinstance(old, list) and isinstance(new, list):
        pairs = zip(
            old + [_MISSING] * (len(new) - len(old)),
            new + [_MISSING] * (len(old) - len(new)),
            strict=True,
        )
        return [c for i, (a, b) in enumerate(pairs) for c in _param_changes(a, b, f"{path}[{i}]")]
    if old == new and type(old) is type(new):
        return []
    return [_param_change(old, new, path or "(all parameters)")]


def _param_change(old: Any, new: Any, path: str) -> dict[str, Any]:
    if old is _MISSING:
        line = f"param {path} added: {_shown(new)}"
    elif new is _MISSING:
        line = f"param {path} removed (was {_shown(old)})"
    else:
        line = f"param {path} changed from {_shown(old)} to {_shown(new)}"
    change = {"part": "param", "path": path, "line": line}
    return change | {k: v for k, v in (("old", old), ("new", new)) if v is not _MISSING}


def _shown(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 1] + "…"


def _short(digest: Any) -> str:
    return f"{str(digest)[:8]}…" if digest else "none"
