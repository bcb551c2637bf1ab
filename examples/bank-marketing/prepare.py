"""Split UCI bank-additional-full.csv into the three sources this example ships.

Run from this folder: ``python prepare.py [path/to/bank-additional-full.csv]``.
The outputs in ``data/`` are committed; this script documents how they were made.

* ``clients.csv``        one row per client: age, job, marital, education, default, housing, loan
* ``contacts.db``        SQLite table ``contacts``: one row per call, keyed by client and period
* ``economy.parquet``    monthly economic indicators keyed by ``period`` (YYYY-MM)

The rows are in time order (May 2008 to November 2010) but the file carries only the
month; the year is recovered by counting wrap-arounds of the month in row order.
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

import polars as pl

MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
CLIENT_COLUMNS = ["age", "job", "marital", "education", "default", "housing", "loan"]
ECONOMY_COLUMNS = ["emp_var_rate", "cons_price_idx", "cons_conf_idx", "nr_employed"]
SQL_TYPES = {pl.UInt32: "INTEGER", pl.Int64: "INTEGER", pl.Float64: "REAL", pl.String: "TEXT"}
DEFAULT_SOURCE = Path("../../../shared/data/bank_marketing/bank-additional-full.csv")


def with_period(frame: pl.DataFrame) -> pl.DataFrame:
    month = frame["month"].replace_strict({m: i + 1 for i, m in enumerate(MONTHS)})
    year = 2008 + (month.diff().fill_null(0) < 0).cum_sum()
    period = pl.format("{}-{}", year, month.cast(pl.String).str.zfill(2))
    return frame.with_columns(period.alias("period"))


def main(source: Path) -> None:
    raw = pl.read_csv(source, separator=";", infer_schema_length=None)
    raw = raw.rename({c: c.replace(".", "_") for c in raw.columns})
    raw = with_period(raw).with_row_index("contact_id", offset=1)
    raw = raw.with_columns(
        client_id=pl.format("C{}", pl.col("contact_id").cast(pl.String).str.zfill(6))
    )
    out = Path("data")
    out.mkdir(exist_ok=True)
    raw.select("client_id", *CLIENT_COLUMNS).write_csv(out / "clients.csv")
    raw.select("period", *ECONOMY_COLUMNS).unique("period", maintain_order=True).write_parquet(
        out / "economy.parquet"
    )
    contacts = raw.drop(*CLIENT_COLUMNS, *ECONOMY_COLUMNS)
    (out / "contacts.db").unlink(missing_ok=True)
    with sqlite3.connect(out / "contacts.db") as db:
        columns = ", ".join(f'"{c}" {SQL_TYPES[t.base_type()]}' for c, t in contacts.schema.items())
        db.execute(f"CREATE TABLE contacts ({columns})")
        marks = ", ".join("?" for _ in contacts.columns)
        db.executemany(f"INSERT INTO contacts VALUES ({marks})", contacts.rows())
    print(f"{raw.height} contacts, {raw['period'].n_unique()} months -> {out}/")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_SOURCE)
