"""The profile report: an offline HTML page with inline SVG, and the JSON profile beside it."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from keelson.data.profile import profile_table
from keelson.errors import KeelsonError
from keelson.report import profile_report
from keelson.report.profile_report import render_profile, write_profile_report

EVIL = '<script>alert("x")</script>'


class Page(HTMLParser):
    """Collects what a browser would fetch or run, and the page's text."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.references: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href") or (name == "content" and "http" in (value or "")):
                self.references.append(value or "")

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(html: str) -> Page:
    page = Page()
    page.feed(html)
    return page


@pytest.fixture
def table() -> pl.DataFrame:
    rng = np.random.default_rng(0)
    a = rng.normal(size=300)
    return pl.DataFrame(
        {
            "a": a,
            "b": 3 * a + rng.normal(size=300),
            "count": rng.integers(0, 4, 300),
            EVIL: rng.choice(["<b>bold</b>", "$x$", "plain"], 300),
            "flag": rng.random(300) > 0.3,
            "empty": pl.Series([None] * 300, dtype=pl.Float64),
        }
    )


def test_writes_html_and_json(tmp_path: Path, table: pl.DataFrame) -> None:
    document = profile_table(table)
    html_path, json_path = tmp_path / "out" / "profile.html", tmp_path / "out" / "profile.json"
    write_profile_report(document, html_path, json_path, "demo version abc")
    assert json.loads(json_path.read_text(encoding="utf-8")) == document
    assert sorted(p.name for p in html_path.parent.iterdir()) == ["profile.html", "profile.json"]
    html = html_path.read_text(encoding="utf-8")
    page = parse(html)
    assert page.tags.count("svg") == 1 + 5  # the heatmap, and 5 columns with values to draw
    assert html.count('<article class="column"') == 6
    assert "<title>demo version abc · profile</title>" in html
    assert all(ref.startswith("#") for ref in page.references), page.references
    assert "script" not in page.tags
    text = " ".join(page.text)
    for heading in ("Summary", "Columns", "Correlations", "All statistics"):
        assert heading in text
    assert "keelson.profile/1" in html and "Pearson" in html


def test_is_offline(table: pl.DataFrame) -> None:
    html = render_profile(profile_table(table), "offline")
    links = re.findall(r"[\w:-]+=\"(?:https?:)?//[^\"]*\"|url\((?!#)", html)  # url(#id) is local
    assert links and all(re.match(r'xmlns(:xlink)?="http://www\.w3\.org/', ln) for ln in links)
    assert "@import" not in html and "<link" not in html
    assert html.count("http") == len(links)


def test_escapes_user_text(table: pl.DataFrame) -> None:
    html = render_profile(profile_table(table), "<i>title</i>")
    assert EVIL not in html and "<b>bold</b>" not in html and "<i>title</i>" not in html
    assert "&lt;script&gt;" in html and "&lt;i&gt;title&lt;/i&gt;" in html
    assert "script" not in parse(html).tags


def test_strongest_pairs_and_omitted_columns(table: pl.DataFrame) -> None:
    html = render_profile(profile_table(table, max_columns_for_correlation=2), "pairs")
    strongest = re.search(
        r"<td><code>a</code></td><td><code>b</code></td><td class=\"num\">0\.9", html
    )
    assert strongest is not None
    assert "Left out of the matrix" in html and "<code>count</code>" in html


@pytest.mark.parametrize(
    "frame",
    [
        pl.DataFrame(),
        pl.DataFrame({"only": [1.5, 2.5, None]}),
        pl.DataFrame({"nothing": pl.Series([None, None], dtype=pl.Float64)}),
        pl.DataFrame({"none": [None, None]}),
        pl.DataFrame({"x": [], "s": []}, schema={"x": pl.Int64, "s": pl.String}),
        pl.DataFrame({"same": [7, 7, 7], "inf": [float("inf"), 1.0, 2.0]}),
    ],
    ids=["no-columns", "single-column", "all-null-float", "null-type", "no-rows", "constant"],
)
def test_edge_cases(tmp_path: Path, frame: pl.DataFrame) -> None:
    document = profile_table(frame)
    write_profile_report(document, tmp_path / "p.html", tmp_path / "p.json", "edge")
    html = (tmp_path / "p.html").read_text(encoding="utf-8")
    assert json.loads((tmp_path / "p.json").read_text(encoding="utf-8")) == document
    assert html.count('<article class="column"') == frame.width
    if frame.width < 2:
        assert "Fewer than two numeric columns" in html
    parse(html)


def test_caps_the_number_of_figures(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(profile_report, "MAX_FIGURES", 2)
    frame = pl.DataFrame({f"c{i}": [1.0, 2.0, 3.0] for i in range(4)})
    html = render_profile(profile_table(frame, max_columns_for_correlation=0), "wide")
    assert parse(html).tags.count("svg") == 2
    assert "first 2 of 4 columns" in html and html.count('<article class="column"') == 4


def test_refuses_what_is_not_a_profile(tmp_path: Path) -> None:
    bad: dict[str, Any] = {"rows": 1}
    with pytest.raises(KeelsonError, match="not a keelson table profile"):
        write_profile_report(bad, tmp_path / "p.html", tmp_path / "p.json", "bad")
    assert list(tmp_path.iterdir()) == []
