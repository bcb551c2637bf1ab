from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from keelson.errors import IntegrityError, KeelsonError, NotFoundError
from keelson.features.preprocess import ColumnKinds
from keelson.registry import versions as registry
from keelson.registry.signature import Signature, SignatureError
from keelson.store.store import Store, locate, open_store
from keelson.train.candidates import Config, make_pipeline


@pytest.fixture
def fitted() -> tuple[object, pl.DataFrame, np.ndarray]:
    rng = np.random.default_rng(1)
    frame = pl.DataFrame({"x": rng.normal(size=300), "c": rng.choice(["a", "b"], 300)})
    labels = ((frame["x"].to_numpy() + (frame["c"] == "a").to_numpy()) > 0.5).astype(int)
    config = Config("lightgbm", {"n_estimators": 20})
    pipeline = make_pipeline(config, ColumnKinds.of(frame), "binary", 1, 0)
    return pipeline.fit(frame, labels), frame, labels


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return open_store(locate(tmp_path))


def new_version(pipeline: object, frame: pl.DataFrame) -> registry.NewVersion:
    return registry.NewVersion(
        name="m",
        pipeline=pipeline,
        signature=Signature.from_frame(frame, ["no", "yes"]),
        threshold=0.5,
        family="lightgbm",
        metrics={},
        lineage={},
        dataset_version_id=None,
        run_id=None,
    )


def test_register_resolve_and_load(store: Store, fitted: tuple) -> None:
    pipeline, frame, _ = fitted
    first = registry.register(store, new_version(pipeline, frame))
    second = registry.register(store, new_version(pipeline, frame))
    assert (first.version, second.version) == (1, 2)
    registry.set_alias(store, "m", "production", 1)
    assert registry.resolve(store, registry.ModelRef.parse("m@production")).version == 1
    assert registry.resolve(store, registry.ModelRef.parse("m")).version == 2
    model = registry.load(store, "m@2")
    assert np.allclose(model.predict(frame).probabilities, pipeline.predict_proba(frame))
    assert set(model.predict(frame).labels) <= {"no", "yes"}


def test_bad_references(store: Store, fitted: tuple) -> None:
    registry.register(store, new_version(fitted[0], fitted[1]))
    with pytest.raises(KeelsonError, match="NAME@ALIAS"):
        registry.ModelRef.parse("Not A Ref")
    with pytest.raises(NotFoundError, match="no alias 'staging'"):
        registry.resolve(store, registry.ModelRef.parse("m@staging"))
    with pytest.raises(NotFoundError):
        registry.set_alias(store, "m", "production", 9)


def test_tampered_model_artifact_is_refused(store: Store, fitted: tuple) -> None:
    registry.register(store, new_version(fitted[0], fitted[1]))
    objects = [p for p in Path(store.artifacts.root).rglob("*") if p.is_file()]
    objects[0].write_bytes(objects[0].read_bytes()[:-3] + b"xyz")
    with pytest.raises(IntegrityError):
        registry.load(store, "m@1")


def test_untrusted_types_are_refused(store: Store) -> None:
    import skops.io as sio

    class Sneaky:  # a type outside the allowlist
        pass

    with pytest.raises(IntegrityError, match="allowlist"):
        registry._safe_load(sio.dumps({"payload": Sneaky()}), "skops")


def test_signature_builds_typed_frames_and_names_bad_columns() -> None:
    signature = Signature.from_frame(pl.DataFrame({"n": [1, 2], "s": ["a", None]}), ["0", "1"])
    frame = signature.frame({"n": [3, None], "s": ["b", "c"], "extra": [0, 0]})
    assert frame.columns == ["n", "s"] and frame.schema["n"] == pl.Int64
    with pytest.raises(SignatureError, match=r"missing input column\(s\) \['s'\]"):
        signature.frame({"n": [1]})
    with pytest.raises(SignatureError, match="column 'n' row 1"):
        signature.frame({"n": [1, "two"], "s": ["a", "b"]})
    assert Signature.from_dict(signature.to_dict()) == signature


@pytest.mark.parametrize("value", [2**70, -(2**63) - 1, 1.5, True, "3"])
def test_signature_refuses_values_an_int_column_cannot_hold(value: object) -> None:
    signature = Signature.from_frame(pl.DataFrame({"n": [1]}), [])
    with pytest.raises(SignatureError, match="column 'n' row 0"):
        signature.frame({"n": [value]})


@pytest.mark.parametrize("value", [float("inf"), float("nan"), 10**400, False])
def test_signature_refuses_values_a_float_column_cannot_hold(value: object) -> None:
    signature = Signature.from_frame(pl.DataFrame({"x": [1.0]}), [])
    with pytest.raises(SignatureError, match="column 'x' row 0"):
        signature.frame({"x": [value]})
