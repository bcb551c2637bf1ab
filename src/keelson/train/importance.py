"""Permutation importance of each input column, measured on held-out rows."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from keelson.train.evaluate import HIGHER_IS_BETTER, RANKING


def permutation_importance(
    pipeline: Any, features: pl.DataFrame, labels: np.ndarray, metric: str, repeats: int, seed: int
) -> list[dict[str, Any]]:
    """Mean drop of ``metric`` when one column is shuffled; sorted, most important first."""
    scorer, sign = RANKING[metric], 1.0 if HIGHER_IS_BETTER[metric] else -1.0
    baseline = scorer(labels, pipeline.predict_proba(features)[:, 1])
    rows = []
    for column in features.columns:
        drops = [
            sign
            * (
                baseline
                - scorer(
                    labels,
                    pipeline.predict_proba(
                        features.with_columns(pl.col(column).shuffle(seed + repeat))
                    )[:, 1],
                )
            )
            for repeat in range(repeats)
        ]
        rows.append(
            {"feature": column, "importance": float(np.mean(drops)), "std": float(np.std(drops))}
        )
    return sorted(rows, key=lambda row: row["importance"], reverse=True)
