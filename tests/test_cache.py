"""The step cache: readable keys, reuse when nothing changed, and why a step re-ran."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import hashlib
import importlib.util
import json
import math
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from pydantic import BaseModel
from sqlalchemy import update

import keelson.cache as cache_module
from keelson.cache import CacheKey, StepCache, cache_key, canonical, canonical_json, code_version
from keelson.errors import KeelsonError, NotFoundError
from keelson.store.store import Store, StoreLocation, locate, open_store
from keelson.store.tables import CacheEntry

SHA_A, SHA_B = "a" * 64, "b" * 64
PARAMS: dict[str, Any] = {
    "train": {"budget": {"seconds": 90}, "candidates": ["linear", "lightgbm"], "seed": 7},
    "metric": "roc_auc",
}


def load_module(folder: Path, name: str, source: str) -> ModuleType:
    path = folder / f"{name}.py"
    path.write_text(textwrap.dedent(source), encoding="utf-8")
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


STEP = '''
def step(frame, params):
    """Scale a column."""
    return frame * params["factor"] + 1
'''
REFORMATTED = '''
def step( frame,
          params ):   # same code, other layout
    """Scale a column (docstring reworded)."""

    # a comment
    return (frame*params['factor']
            + 1)
'''
CHANGED = '''
def step(frame, params):
    """Scale a column."""
    return frame * params["factor"] + 2
'''


def test_code_version_ignores_formatting_comments_and_docstrings(tmp_path: Path) -> None:
    original = load_module(tmp_path, "original", STEP).step
    reformatted = load_module(tmp_path, "reformatted", REFORMATTED).step
    changed = load_module(tmp_path, "changed", CHANGED).step
    assert code_version(original) == code_version(reformatted)
    assert code_version(original) != code_version(changed)
    assert len(code_version(original)) == 64
    module = load_module(tmp_path, "whole", STEP)
    assert code_version(module) == code_version(load_module(tmp_path, "again", REFORMATTED))
    assert code_version(original, changed) != code_version(original)


def test_code_version_includes_the_keelson_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    step = load_module(tmp_path, "versioned", STEP).step
    before = code_version(step)
    monkeypatch.setattr(cache_module, "__version__", "9.9.9")
    assert code_version(step) != before


def test_code_version_needs_readable_source() -> None:
    with pytest.raises(KeelsonError, match="cannot read the source code of 'len'"):
        code_version(len)
    with pytest.raises(ValueError, match="at least one"):
        code_version()
    inline = (0, lambda x: x + 1)[1]  # its source line does not parse on its own
    assert code_version(inline) == code_version(inline)


def test_cache_key_is_the_hash_of_its_canonical_parts() -> None:
    key = cache_key("integrate", "c" * 64, {"b": SHA_B, "a": SHA_A}, PARAMS)
    assert key.step == "integrate"
    assert list(key.parts["inputs"]) == ["a", "b"]
    assert key.parts["code"] == {"sha256": "c" * 64, "keelson_version": "0.1.0"}
    text = json.dumps(key.parts, sort_keys=True, separators=(",", ":"))
    assert key.key == hashlib.sha256(text.encode()).hexdigest()
    reordered = {"metric": "roc_auc", "train": dict(reversed(PARAMS["train"].items()))}
    assert cache_key("integrate", "c" * 64, {"a": SHA_A, "b": SHA_B}, reordered) == key


@pytest.mark.parametrize(
    ("code", "inputs", "params"),
    [
        ("d" * 64, {"a": SHA_A}, PARAMS),
        ("c" * 64, {"a": SHA_B}, PARAMS),
        ("c" * 64, {"a": SHA_A, "z": SHA_A}, PARAMS),
        ("c" * 64, {"a": SHA_A}, PARAMS | {"metric": "pr_auc"}),
        ("c" * 64, {"a": SHA_A}, PARAMS | {"extra": None}),
    ],
)
def test_every_kind_of_change_gives_another_key(code: str, inputs: dict, params: Any) -> None:
    base = cache_key("s", "c" * 64, {"a": SHA_A}, PARAMS)
    assert cache_key("s", code, inputs, params).key != base.key


class Kind(enum.Enum):
    FAST = "fast"


class Budget(BaseModel):
    seconds: float = 90.0


@dataclasses.dataclass
class Window:
    days: int


def test_canonical_values() -> None:
    value = {
        "tuple": (1, 2.5),
        "set": {"b", "a"},
        "path": Path("data") / "x.csv",
        "date": dt.date(2024, 1, 2),
        "kind": Kind.FAST,
        "model": Budget(),
        "window": Window(3),
        "nan": math.nan,
        "inf": -math.inf,
        1: True,
    }
    assert canonical(value) == {
        "tuple": [1, 2.5],
        "set": ["a", "b"],
        "path": "data/x.csv",
        "date": "2024-01-02",
        "kind": "fast",
        "model": {"seconds": 90.0},
        "window": {"days": 3},
        "nan": "nan",
        "inf": "-inf",
        "1": True,
    }
    assert canonical_json({"b": 0.1, "a": [True, 1]}) == '{"a":[true,1],"b":0.1}'
    assert cache_key("s", "c", {}, {"x": True}).key != cache_key("s", "c", {}, {"x": 1}).key
    with pytest.raises(KeelsonError, match="type object") as error:
        cache_key("s", "c", {}, {"train": {"model": object()}})
    assert error.value.where == "params.train.model"
    with pytest.raises(KeelsonError, match="content hash"):
        cache_key("s", "c", {"a": None}, {})  # type: ignore[dict-item]
    with pytest.raises(KeelsonError, match="1 to 100 characters"):
        cache_key("x" * 101, "c", {}, {})


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return open_store(locate(tmp_path))


def key_for(
    params: Any = PARAMS, inputs: dict[str, str] | None = None, code: str = "c" * 64
) -> CacheKey:
    return cache_key("search", code, {"table": SHA_A} if inputs is None else inputs, params)


def check_lookup_and_save(store: Store) -> None:
    cache = StepCache(store, "demo")
    key = key_for()
    assert cache.lookup(key) is None
    cache.save(key, {"artifact": 3, "score": 0.8})
    assert cache.lookup(key) == {"artifact": 3, "score": 0.8}
    assert cache.lookup(key_for()) == {"artifact": 3, "score": 0.8}  # unchanged inputs: reused
    cache.save(key, {"artifact": 4})  # idempotent: one row, the newest output
    assert cache.lookup(key) == {"artifact": 4}
    assert len(cache.entries("search")) == 1
    assert StepCache(store, "other").lookup(key) is None
    assert cache.lookup(key_for(params=PARAMS | {"metric": "log_loss"})) is None
    assert cache.explain("search", key).reused


def test_lookup_and_save(store: Store) -> None:
    check_lookup_and_save(store)


def test_lookup_and_save_on_postgresql(postgres_url: str, tmp_path: Path) -> None:
    store = open_store(StoreLocation(postgres_url, str(tmp_path)))
    try:
        check_lookup_and_save(store)
    finally:
        store.close()


def test_explain_first_run_reuse_and_unknown_step(store: Store) -> None:
    cache = StepCache(store, "demo")
    with pytest.raises(NotFoundError, match="step 'search' has no cached result"):
        cache.explain("search")
    first = cache.explain("search", key_for())
    assert (first.reused, first.lines, first.previous) == (False, ["no previous run"], None)
    cache.save(key_for(), {"artifact": 1})
    again = cache.explain("search", key_for())
    assert (again.reused, again.lines) == (True, ["unchanged: reused"])
    assert str(again) == "search: unchanged: reused"
    with pytest.raises(KeelsonError, match="is for step 'search'"):
        cache.explain("split", key_for())


def explain_change(store: Store, new: CacheKey) -> list[str]:
    cache = StepCache(store, "demo")
    cache.save(key_for(), {"artifact": 1})
    explanation = cache.explain("search", new)
    assert not explanation.reused and explanation.previous == key_for().key
    json.dumps(explanation.to_dict(), allow_nan=False)
    return explanation.lines


def test_explain_names_a_code_change(store: Store) -> None:
    assert explain_change(store, key_for(code="d" * 64)) == ["code changed (cccccccc… → dddddddd…)"]


def test_explain_names_a_keelson_upgrade(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = StepCache(store, "demo")
    cache.save(key_for(), {"artifact": 1})
    monkeypatch.setattr(cache_module, "__version__", "0.2.0")
    explanation = cache.explain("search", key_for(code="d" * 64))
    assert explanation.lines == ["code changed: keelson 0.1.0 → 0.2.0"]


def test_explain_names_input_changes(store: Store) -> None:
    lines = explain_change(store, key_for(inputs={"table": SHA_B, "labels": SHA_A}))
    assert lines == [
        "input labels added (sha aaaaaaaa…)",
        "input table changed from sha aaaaaaaa… to bbbbbbbb…",
    ]


def test_explain_names_the_parameter_path(store: Store) -> None:
    params = json.loads(json.dumps(PARAMS))
    params["train"]["budget"]["seconds"] = 60
    params["train"]["candidates"] = ["linear", "hist_gradient_boosting", "lightgbm"]
    del params["train"]["seed"]
    params["train"]["cv_folds"] = 3
    assert explain_change(store, key_for(params=params)) == [
        "param train.budget.seconds changed from 90 to 60",
        'param train.candidates[1] changed from "lightgbm" to "hist_gradient_boosting"',
        'param train.candidates[2] added: "lightgbm"',
        "param train.cv_folds added: 3",
        "param train.seed removed (was 7)",
    ]


def test_explain_shortens_long_values_and_whole_replacements(store: Store) -> None:
    lines = explain_change(store, key_for(params={"train": "x" * 200, "metric": "roc_auc"}))
    assert lines[0].startswith('param train changed from {"budget"') and lines[0].endswith("…")
    assert len(lines) == 1 and len(lines[0]) < 200


def test_explain_newest_entry_against_the_one_before(store: Store) -> None:
    cache = StepCache(store, "demo")
    older, newer = key_for(), key_for(params=PARAMS | {"metric": "pr_auc"})
    cache.save(newer, {"artifact": 2})
    cache.save(older, {"artifact": 1})
    with store.session() as session:  # pin creation times: the save order is not the clock's
        for key, day in ((older, 1), (newer, 2)):
            session.execute(
                update(CacheEntry)
                .where(CacheEntry.key == key.key)
                .values(created_at=dt.datetime(2024, 1, day, tzinfo=dt.UTC))
            )
    explanation = cache.explain("search")
    assert explanation.key == newer.key and explanation.previous == older.key
    assert explanation.lines == ['param metric changed from "roc_auc" to "pr_auc"']
    assert explanation.changes[0] | {"line": None} == {
        "part": "param", "path": "metric", "old": "roc_auc", "new": "pr_auc", "line": None,
    }  # fmt: skip
