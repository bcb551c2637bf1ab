"""The profile report of a table: an offline HTML page with plots, and its JSON reference.

The JSON is :func:`keelson.data.profile.profile_table`'s document unchanged (the reference
monitoring compares live data with); the HTML shows it: per column a histogram or the
most frequent values and its statistics, and a heatmap of the numeric correlations.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from keelson.errors import KeelsonError
from keelson.report import plots
from keelson.report.html import template, write_text_atomic

MAX_FIGURES = 100  # columns drawn; every column still gets its statistics
STRONGEST_PAIRS = 10
_STATS = ("min", "p05", "p50", "mean", "p95", "max", "std")


def write_profile_report(
    table_profile: dict[str, Any], html_path: Path, json_path: Path, title: str
) -> None:
    """Write the profile as HTML and as JSON, each atomically."""
    write_profile_document(table_profile, json_path)
    write_text_atomic(Path(html_path), render_profile(table_profile, title))


def write_profile_document(table_profile: dict[str, Any], json_path: Path) -> None:
    """Write the profile's JSON document (the monitoring reference), atomically."""
    _check(table_profile)
    document = json.dumps(table_profile, indent=2, ensure_ascii=False, allow_nan=False)
    write_text_atomic(Path(json_path), document + "\n")


def render_profile(table_profile: dict[str, Any], title: str) -> str:
    """The profile as one HTML document with inline SVG plots and no external resources."""
    _check(table_profile)
    return template("profile.html.j2").render(
        p=table_profile, title=title, **_context(table_profile)
    )


def _check(table_profile: dict[str, Any]) -> None:
    shown = str(table_profile.get("format"))
    if not shown.startswith("keelson.profile/"):
        raise KeelsonError(
            f"this is not a keelson table profile (format {shown!r}).",
            hint="Make one with keelson.data.profile.profile_table or `keelson data profile`.",
        )


def _context(table_profile: dict[str, Any]) -> dict[str, Any]:
    columns = table_profile.get("columns_profile") or []
    rows = int(table_profile.get("rows") or 0)
    missing = sum(int(column.get("missing") or 0) for column in columns)
    cells = rows * len(columns)
    return {
        "stats": _STATS,
        "cards": [_card(index, column) for index, column in enumerate(columns)],
        "drawn": min(len(columns), MAX_FIGURES),
        "missing": {"cells": missing, "share": missing / cells if cells else 0.0},
        "duplicate_share": int(table_profile.get("duplicates") or 0) / rows if rows else 0.0,
        "correlations": _correlations(table_profile.get("correlations") or {}),
    }


def _card(index: int, column: dict[str, Any]) -> dict[str, Any]:
    """A column's figure (histogram, else top values, else none) and what it shows."""
    histogram, top = column.get("histogram") or {}, column.get("top") or []
    svg, caption = None, None
    if index < MAX_FIGURES and histogram.get("counts"):
        svg = plots.histogram_svg(f"hist{index}", histogram["edges"], histogram["counts"])
        caption = f"{len(histogram['counts'])} bins over the finite values"
    elif index < MAX_FIGURES and top:
        svg = plots.bars_svg(f"top{index}", [v for v, _ in top], [n for _, n in top])
        caption = f"the {len(top)} most frequent values"
    return {
        "column": column,
        "svg": svg,
        "caption": caption,
        "non_finite": int(histogram.get("non_finite") or 0),
    }


def _correlations(matrix: dict[str, Any]) -> dict[str, Any]:
    columns, values = list(matrix.get("columns") or []), matrix.get("values") or []
    pairs = [
        (columns[i], columns[j], values[i][j])
        for i in range(len(columns))
        for j in range(i + 1, len(columns))
        if values[i][j] is not None
    ]
    pairs.sort(key=lambda pair: -abs(pair[2]))
    svg = plots.heatmap_svg(columns, values) if len(columns) >= 2 else None
    return {
        "svg": svg,
        "columns": columns,
        "strongest": pairs[:STRONGEST_PAIRS],
        "omitted": list(matrix.get("omitted") or []),
        "method": matrix.get("method", "pearson"),
    }
