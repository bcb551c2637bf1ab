from __future__ import annotations

from pathlib import Path

import pytest

from keelson.errors import SpecError
from keelson.spec import load_spec, parse_spec

BASE = {
    "name": "p",
    "sources": {"t": {"kind": "csv", "path": "t.csv"}},
    "target": {"column": "y"},
    "registry": {"name": "p"},
}


def test_minimal_spec_gets_embedded_defaults() -> None:
    spec = parse_spec(BASE)
    assert spec.train.budget.seconds == 90 and spec.split.method == "auto"
    assert spec.base_source == "t" and len(spec.digest()) == 64


@pytest.mark.parametrize(
    ("change", "path", "fragment"),
    [
        ({"sources": {"t": {"kind": "xls", "path": "t"}}}, "sources.t", "xls"),
        ({"split": {"test": 0.9}}, "split.test", "0.9"),
        ({"registry": {"name": "Bad Name"}}, "registry.name", "Bad Name"),
        ({"train": {"candidates": ["svm"]}}, "train.candidates[0]", "svm"),
        ({"target": {}}, "target.column", "is required"),
        ({"traim": {}}, "traim", "not a known key"),
        ({"contracts": {"other": {}}}, "(top level)", "unknown source 'other'"),
    ],
)
def test_errors_name_the_key_path(change: dict, path: str, fragment: str) -> None:
    with pytest.raises(SpecError) as error:
        parse_spec(BASE | change)
    assert f"'{path}'" in str(error.value) and fragment in str(error.value)


def test_several_sources_need_integration() -> None:
    sources = {"a": {"kind": "csv", "path": "a"}, "b": {"kind": "parquet", "path": "b"}}
    with pytest.raises(SpecError, match="integrate"):
        parse_spec(BASE | {"sources": sources})


def test_missing_spec_file_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="keelson init"):
        load_spec(tmp_path)


def test_bundled_example_spec_is_valid() -> None:
    spec = load_spec(Path(__file__).parents[1] / "examples" / "bank-marketing")
    assert spec.registry.name == "bank-marketing" and "duration" in spec.integrate.drop  # type: ignore[union-attr]
