"""The versions a run depended on, recorded with every run and model for reproducibility."""

from __future__ import annotations

import platform
from importlib import metadata

PACKAGES = (
    "keelson",
    "scikit-learn",
    "lightgbm",
    "imbalanced-learn",
    "optuna",
    "polars",
    "numpy",
    "scipy",
    "pandas",
    "pyarrow",
    "skops",
)


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions
