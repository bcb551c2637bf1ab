"""MLflow's scoring server: ``mlflow models serve --env-manager local -w N``.

The model is saved once per exported pipeline by ``mlflow_model.py`` in the MLflow venv
(``pyfunc_predict_fn="predict_proba"``), so ``/invocations`` answers
``{"predictions": [[p0, p1], ...]}`` for a ``dataframe_split`` body. ``mlflow models
serve`` runs ``uvicorn`` found on ``PATH``: the launch puts the venv's ``bin`` first.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from serving_peers.base import Endpoint, Launch, Options, ServedModel, Server, Venv
from serving_peers.payloads import dataframe_split_body, matrix

VENV = Venv("serve-mlflow", ("mlflow>=3.1",))
SAVE = Path(__file__).with_name("mlflow_model.py")


def model_dir(work: Path) -> Path:
    return work / "mlflow-model"


def prepare(model: ServedModel, work: Path) -> None:
    """Save the MLflow model unless it was saved from this very ``model.joblib``."""
    stamp = work / "mlflow-model.sha256"
    digest = hashlib.sha256(model.joblib.read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == digest and model_dir(work).exists():
        return
    command = [str(VENV.python), str(SAVE), str(model.joblib), str(model_dir(work))]
    done = subprocess.run(command, capture_output=True, text=True, cwd=work)
    if done.returncode:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        raise RuntimeError(f"saving the MLflow model failed: {lines[-1] if lines else ''}")
    stamp.write_text(digest)


def launch(model: ServedModel, port: int, options: Options, work: Path) -> Launch:
    command = [str(VENV.bin / "mlflow"), "models", "serve", "-m", str(model_dir(work))]
    command += ["--env-manager", "local", "-w", str(options.workers)]
    return Launch([*command, "-h", "127.0.0.1", "-p", str(port)], ready_path="/health")


ENDPOINT = Endpoint(
    "mlflow",
    "/invocations",
    lambda model, rows: dataframe_split_body(rows),
    lambda answer, model: matrix(answer["predictions"]),
)
SERVER = Server("mlflow", VENV, (ENDPOINT,), launch, prepare)
