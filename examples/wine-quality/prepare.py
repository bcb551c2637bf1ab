"""Combine UCI winequality-red.csv and winequality-white.csv into ``data/wines.csv``.

Run from this folder: ``python prepare.py [path/to/wine_quality]`` (the folder holding both
files). The output in ``data/`` is committed; this script documents how it was made.

The originals are ``;``-separated with quoted, space-separated names. The combined file is
comma-separated, its columns are in snake case (``fixed acidity`` -> ``fixed_acidity``,
``pH`` -> ``ph``), and a ``colour`` column (red, white) says which file a row came from.
Rows are kept as they are, in the order of the files (red first); duplicates are left for
the contract to remove, so the raw data stays whole.
"""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl
import polars.selectors as cs

COLOURS = ("red", "white")
DEFAULT_SOURCE = Path("../../../shared/data/wine_quality")


def snake_case(name: str) -> str:
    return name.strip().lower().replace(" ", "_")


def read_colour(folder: Path, colour: str) -> pl.DataFrame:
    frame = pl.read_csv(
        folder / f"winequality-{colour}.csv", separator=";", infer_schema_length=None
    )
    frame = frame.rename({c: snake_case(c) for c in frame.columns})
    measures = cs.numeric() - cs.by_name("quality")  # some are whole numbers in one file only
    return frame.with_columns(measures.cast(pl.Float64), colour=pl.lit(colour))


def main(folder: Path) -> None:
    wines = pl.concat([read_colour(folder, colour) for colour in COLOURS], how="vertical")
    out = Path("data")
    out.mkdir(exist_ok=True)
    wines.write_csv(out / "wines.csv")
    counts = wines.group_by("colour").len().sort("colour").rows()
    print(f"{wines.height} wines ({', '.join(f'{n} {c}' for c, n in counts)}) -> {out}/wines.csv")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_SOURCE)
