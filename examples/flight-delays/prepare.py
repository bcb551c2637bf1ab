"""Build this example's data from nycflights13 (CC0): a sample of flights plus the lookups.

Run from this folder: ``python prepare.py [path/to/nycflights13]``. The outputs in
``data/`` are committed; this script documents how they were made.

* ``flights.parquet``   30,000 flights sampled uniformly (seed 13) from all 336,776 of 2013
* ``weather.csv``       hourly weather at the three origins (all 26,115 rows, as published)
* ``planes.csv``        aircraft by tail number (as published)
* ``airports.jsonl``    airports by FAA code (JSON Lines)
* ``airlines.json``     carriers (a JSON array)
"""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl

DEFAULT_SOURCE = Path("../../../shared/data/nycflights13")
SAMPLE = 30_000


def main(source: Path) -> None:
    out = Path("data")
    out.mkdir(exist_ok=True)
    flights = pl.read_csv(source / "flights.csv", null_values=["NA"], infer_schema_length=None)
    flights.sample(SAMPLE, seed=13).sort("time_hour", "sched_dep_time").write_parquet(
        out / "flights.parquet", compression="zstd"
    )
    for name in ("weather.csv", "planes.csv"):
        (out / name).write_bytes((source / name).read_bytes())
    airports = pl.read_csv(source / "airports.csv", null_values=["NA"])
    airports.write_ndjson(out / "airports.jsonl")
    pl.read_csv(source / "airlines.csv").write_json(out / "airlines.json")
    print(f"{SAMPLE} flights -> {out}/")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_SOURCE)
