"""The validation report of a run's sources: an offline HTML page and its JSON document.

Per source: rows in, kept, quarantined and removed; the quarantined rows by reason; every
finding (rule, column, count, example failing values, where the rule is in keelson.yaml)
with warnings and failures highlighted; and the schema changes with the decision taken.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from keelson import __version__
from keelson.data.contracts import Validation
from keelson.report.html import template, write_text_atomic

FORMAT = "keelson.validation/1"
_SEVERITY_ORDER = {"fail": 0, "warn": 1, "quarantine": 2}


def write_validation_report(
    validations: list[Validation], html_path: Path, json_path: Path
) -> None:
    """Write the validation of ``validations`` as HTML and as JSON, each atomically."""
    document = validation_document(validations)
    text = json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False)
    html = render_validation(document)
    write_text_atomic(Path(json_path), text + "\n")
    write_text_atomic(Path(html_path), html)


def validation_document(validations: list[Validation]) -> dict[str, Any]:
    """The machine-readable account: a summary, findings and schema changes per source."""
    sources = [_source(v) for v in validations]
    totals = {
        key: sum(s[key] for s in sources) for key in ("rows_in", "kept", "quarantined", "removed")
    }
    totals |= {
        "warnings": sum(len(s["warnings"]) for s in sources),
        "failures": sum(len(s["failures"]) for s in sources),
    }
    return {
        "format": FORMAT,
        "keelson_version": __version__,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "status": _status(totals["failures"], totals["warnings"]),
        "totals": totals,
        "sources": sources,
    }


def render_validation(document: dict[str, Any]) -> str:
    """The document as one HTML page with no scripts and no external resources."""
    sources = [s | {"bars": _bars(s)} for s in document["sources"]]
    return template("validation.html.j2").render(d=document, sources=sources)


def _source(validation: Validation) -> dict[str, Any]:
    summary = validation.summary()
    findings = sorted(validation.findings, key=lambda f: _SEVERITY_ORDER[f.severity])
    summary["findings"] = [f.to_dict() for f in findings]
    summary["status"] = _status(len(validation.failures), len(validation.warnings))
    return summary


def _status(failures: int, warnings: int) -> str:
    return "failed" if failures else "warnings" if warnings else "passed"


def _bars(source: dict[str, Any]) -> list[dict[str, Any]]:
    """Quarantined rows per reason, with the bar width relative to the largest reason."""
    reasons = source["reasons"]
    top = max(reasons.values(), default=0)
    return [
        {"rule": rule, "count": count, "width": 100.0 * count / top if top else 0.0}
        for rule, count in reasons.items()
    ]
