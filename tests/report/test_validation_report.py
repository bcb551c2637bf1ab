"""The validation report: JSON that round-trips, HTML that works offline and escapes data."""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl
import pytest

from keelson.data.contracts import Validation, validate
from keelson.data.sources import SourceRead, rejects
from keelson.report.validation_report import (
    FORMAT,
    render_validation,
    validation_document,
    write_validation_report,
)
from keelson.spec import Contract

HOSTILE = '<script>alert("x")</script>'


def _validations() -> list[Validation]:
    people = pl.DataFrame(
        {
            "id": [1, 2, 2, 4, 5],
            "name": ["ann", HOSTILE, "bo", "<b>cy</b>", None],
            "age": ["30", "x&y", "41", "200", "50"],
            "extra": [1, 2, 3, 4, 5],
        }
    )
    contract = Contract.model_validate(
        {
            "unique": ["id"],
            "columns": {
                "id": {},
                "name": {"regex": "^[a-z]+$", "severity": "warn"},
                "age": {"type": "int", "max": 120},
                "score": {},
            },
            "rows": {"min": 10, "severity": "fail"},
        }
    )
    bad = [(9, "ragged_row", "expected 4 fields, got 5", "1,2,3,4,5")]
    first = validate(SourceRead("people", people, rejects(bad), {}), contract)
    clean = validate(SourceRead("clean <src>", pl.DataFrame({"a": [1, 2]}), rejects([]), {}), None)
    return [first, clean]


def test_json_round_trips_with_summaries_findings_and_changes(tmp_path: Path) -> None:
    validations = _validations()
    html, document = tmp_path / "out" / "validation.html", tmp_path / "out" / "validation.json"
    write_validation_report(validations, html, document)
    loaded = json.loads(document.read_text(encoding="utf-8"))
    assert loaded["format"] == FORMAT and loaded["status"] == "failed"
    assert loaded["totals"] == {
        "rows_in": 8,
        "kept": 5,
        "quarantined": 3,
        "removed": 0,
        "warnings": 1,
        "failures": 2,
    }
    people, clean = loaded["sources"]
    assert (people["status"], clean["status"]) == ("failed", "passed")
    assert people["reasons"] == {"max": 1, "ragged_row": 1, "type": 1}
    by_rule = {f["rule"]: f for f in people["findings"]}
    assert by_rule["regex"]["severity"] == "warn"
    assert by_rule["regex"]["examples"] == [HOSTILE, "<b>cy</b>"]
    assert by_rule["type"]["examples"] == ["x&y"] and by_rule["type"]["rows"] == [2]
    assert by_rule["rows"]["severity"] == "fail"
    assert [f["severity"] for f in people["findings"]][:2] == ["fail", "fail"]
    changes = {(c["change"], c["column"], c["decision"]) for c in people["schema_changes"]}
    assert changes == {
        ("added", "extra", "adopt"),
        ("missing", "score", "fail"),
        ("retyped", "age", "ignore"),
    }
    assert json.loads(json.dumps(loaded)) == loaded
    rebuilt = validation_document(validations)
    assert {k: v for k, v in rebuilt.items() if k != "created_at"} == {
        k: v for k, v in loaded.items() if k != "created_at"
    }
    assert sorted(p.name for p in html.parent.iterdir()) == ["validation.html", "validation.json"]


def test_html_has_every_section_and_highlights_warnings_and_failures() -> None:
    page = render_validation(validation_document(_validations()))
    assert page.startswith("<!DOCTYPE html>")
    headings = re.findall(r"<h2>([^<]+)", page)
    assert [h.strip() for h in headings] == ["Summary", "people", "clean &lt;src&gt;"]
    for title in ("Quarantined rows by reason", "Findings", "Schema changes"):
        assert page.count(f"<h3>{title}</h3>") == 2
    assert '<tr class="fail"><td class="fail">fail</td><td><code>rows</code>' in page
    assert '<tr class="warn"><td class="warn">warn</td><td><code>regex</code>' in page
    assert "<code>contracts.people.columns.age.max</code>" in page
    assert '<span class="badge failed">failed</span>' in page
    assert '<code>max</code><div class="bar"><span style="width: 100.0%">' in page
    assert "No row was quarantined." in page and "Every rule holds for every row." in page


def test_html_escapes_hostile_values_and_needs_nothing_external() -> None:
    page = render_validation(validation_document(_validations()))
    assert HOSTILE not in page and "<b>cy</b>" not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page
    assert "x&amp;y" in page
    assert "<script" not in page.lower()
    assert not re.search(r"(src|href)=\"(https?:)?//", page)
    assert "@import" not in page and "url(" not in page


def test_an_empty_run_still_renders(tmp_path: Path) -> None:
    write_validation_report([], tmp_path / "v.html", tmp_path / "v.json")
    loaded = json.loads((tmp_path / "v.json").read_text(encoding="utf-8"))
    assert loaded["sources"] == [] and loaded["status"] == "passed"
    assert "No sources were validated." in (tmp_path / "v.html").read_text(encoding="utf-8")


def test_a_failed_write_leaves_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import keelson.report.validation_report as module

    def broken(document: object) -> str:
        raise RuntimeError("render failed")

    monkeypatch.setattr(module, "render_validation", broken)
    with pytest.raises(RuntimeError):
        write_validation_report(_validations(), tmp_path / "v.html", tmp_path / "v.json")
    assert list(tmp_path.iterdir()) == []
