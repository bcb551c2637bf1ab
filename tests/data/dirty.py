"""Dirty data shared by the data tests: a table that breaks every kind of rule."""

from __future__ import annotations

from typing import Any

import polars as pl


def every_rule(freshness: str, rows: dict[str, Any]) -> dict[str, Any]:
    """A contract using every kind of rule; ``freshness`` max age and ``rows`` bounds vary."""
    return {
        "columns": {
            "id": {"type": "int", "nullable": False},
            "age": {
                "type": "int",
                "nullable": False,
                "min": 0,
                "max": 99,
                "severity": {"max": "warn"},
            },
            "plan": {"allowed": ["basic", "plus", "pro"]},
            "email": {"regex": "@"},
            "ts": {"type": "datetime"},
            "score": {"type": "float"},
            "absent": {"type": "int"},
        },
        "unique": [["id"], ["email", "plan"]],
        "exact_duplicates": "quarantine",
        "checks": [
            {"name": "adult_pro", "expr": "age >= 18 OR plan <> 'pro'", "severity": "warn"},
            {"name": "spend", "expr": "age < 95 OR plan = 'basic'"},
        ],
        "references": [
            {"columns": ["plan"], "source": "plans", "to": ["name"], "severity": "warn"}
        ],
        "freshness": {"column": "ts", "max_age": freshness, "severity": "warn"},
        "rows": rows | {"severity": "warn"},
        "schema_changes": {"missing": "ignore"},
    }


def contracts(rule: dict[str, Any]) -> dict[str, dict[str, Any] | None]:
    """``rule`` and variants of it covering the other duplicate and schema decisions."""
    return {
        "every rule": rule,
        "drop duplicates, adopt retyped, ignore added": rule
        | {
            "exact_duplicates": "drop",
            "schema_changes": {"missing": "ignore", "retyped": "adopt", "added": "ignore"},
            "references": [{"columns": ["plan"], "source": "plans", "to": ["name"]}],
        },
        "keys only": {"unique": ["id"], "exact_duplicates": "quarantine"},
        "no contract": None,
    }


def violations(rows: int, distinct_ids: int) -> pl.DataFrame:
    """Every kind of violation; exact and key duplicates reach across the whole table."""
    i = pl.int_range(rows, dtype=pl.Int64)
    return pl.select(
        id=pl.when(i % 97 == 5).then(pl.lit("x")).otherwise((i % distinct_ids).cast(pl.String)),
        age=pl.when(i % 53 == 0).then(None).otherwise(i * 7 % 120 - 5),
        plan=pl.format("{}", i % 4).replace_strict(
            {"0": "basic", "1": "plus", "2": "pro", "3": "gold"}
        ),
        email=pl.when(i % 11 == 0)
        .then(pl.format("bad{}", i))
        .otherwise(pl.format("u{}@x.org", i % 1000)),
        ts=pl.when(i % 301 == 0)
        .then(pl.lit("noon"))
        .otherwise(pl.format("2024-05-{} 10:00:00", (i % 28 + 1).cast(pl.String).str.zfill(2))),
        score=pl.when(i % 89 == 0).then(pl.lit("n/a")).otherwise((i % 50).cast(pl.String)),
        extra=i % 3,
    )
