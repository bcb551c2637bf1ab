"""Alias moves are recorded; a rollback undoes them one by one, newest first."""

from __future__ import annotations

from pathlib import Path

import pytest
from sklearn.dummy import DummyClassifier

from keelson.errors import NotFoundError
from keelson.registry import versions as registry
from keelson.registry.signature import ColumnSignature, Signature
from keelson.store.store import Store, locate, open_store


def store_with_versions(folder: Path, count: int) -> Store:
    store = open_store(locate(folder))
    signature = Signature([ColumnSignature("x", "float64")], classes=["0", "1"])
    for _ in range(count):
        registry.register(
            store,
            registry.NewVersion(
                name="m",
                pipeline=DummyClassifier().fit([[0.0], [1.0]], [0, 1]),
                signature=signature,
                threshold=0.5,
                family="linear",
                metrics={},
                lineage={},
                dataset_version_id=None,
                run_id=None,
                task="binary",
            ),
        )
    return store


def test_rollback_undoes_moves_newest_first(tmp_path: Path) -> None:
    store = store_with_versions(tmp_path, 3)
    for version in (1, 2, 3):
        registry.set_alias(store, "m", "production", version)

    assert registry.rollback(store, "m") == (3, 2)
    assert registry.rollback(store, "m") == (2, 1)
    assert registry.aliases_of(store, "m") == {"production": 1}
    with pytest.raises(NotFoundError, match="no earlier version"):
        registry.rollback(store, "m")


def test_a_new_move_after_a_rollback_is_undone_first(tmp_path: Path) -> None:
    store = store_with_versions(tmp_path, 3)
    for version in (1, 2):
        registry.set_alias(store, "m", "production", version)
    registry.rollback(store, "m")
    registry.set_alias(store, "m", "production", 3)

    assert registry.rollback(store, "m") == (3, 1)
    assert registry.aliases_of(store, "m") == {"production": 1}


def test_rollback_of_an_unknown_alias_says_what_exists(tmp_path: Path) -> None:
    store = store_with_versions(tmp_path, 1)
    registry.set_alias(store, "m", "production", 1)

    with pytest.raises(NotFoundError, match="staging"):
        registry.rollback(store, "m", "staging")
