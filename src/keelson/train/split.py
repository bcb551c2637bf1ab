"""Train / validation / test split, stratified on the target by default."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from keelson.spec import Split


@dataclass(frozen=True)
class Splits:
    train: pl.DataFrame
    validation: pl.DataFrame
    test: pl.DataFrame

    def sizes(self) -> dict[str, int]:
        return {
            "train": self.train.height,
            "validation": self.validation.height,
            "test": self.test.height,
        }


def split(frame: pl.DataFrame, target: str, spec: Split) -> Splits:
    """Hold out ``spec.test`` of the rows for the final test, then ``spec.validation``."""
    from sklearn.model_selection import train_test_split

    rows = np.arange(frame.height)
    labels = frame[target].to_numpy()
    rest, test = train_test_split(
        rows,
        test_size=spec.test,
        random_state=spec.seed,
        stratify=labels if spec.stratify else None,
    )
    share = spec.validation / (1.0 - spec.test)
    train, validation = train_test_split(
        rest,
        test_size=share,
        random_state=spec.seed + 1,
        stratify=labels[rest] if spec.stratify else None,
    )
    return Splits(frame[np.sort(train)], frame[np.sort(validation)], frame[np.sort(test)])
