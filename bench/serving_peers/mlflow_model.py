"""Save a fitted pipeline as an MLflow model whose pyfunc calls ``predict_proba``.

Runs in the MLflow venv (``bench/.venvs/serve-mlflow``):

    python mlflow_model.py MODEL.joblib OUT_DIR

The pipeline is the one the harness exported from keelson's registry (keelson is
installed in this venv, so its classes unpickle). MLflow 3 saves scikit-learn models with
skops by default, which refuses keelson's own classes unless trusted one by one; the
cloudpickle format stores the very same object. The requirements are given, not inferred:
inference runs ``pip`` (absent from a uv venv) or ``uv export`` of a project nearby, and
``--env-manager local`` never reads them.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import joblib
import mlflow.sklearn
import sklearn


def save(model: Path, out: Path) -> None:
    pipeline = joblib.load(model)
    shutil.rmtree(out, ignore_errors=True)
    mlflow.sklearn.save_model(
        pipeline,
        str(out),
        serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE,
        pyfunc_predict_fn="predict_proba",
        pip_requirements=[f"scikit-learn=={sklearn.__version__}", "keelson"],
    )


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(f"usage: python {Path(sys.argv[0]).name} MODEL.joblib OUT_DIR")
    save(Path(sys.argv[1]), Path(sys.argv[2]))
