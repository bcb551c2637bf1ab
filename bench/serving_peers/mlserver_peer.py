"""Seldon MLServer with the ``mlserver-sklearn`` runtime, in two configurations.

``mlserver start FOLDER`` reads ``settings.json`` (loopback, the ports, the inference
workers) and ``NAME/model-settings.json`` (``mlserver_sklearn.SKLearnModel`` on the
exported ``model.joblib``), both written at launch. The request asks for the
``predict_proba`` output, which makes the runtime call that method.

- ``mlserver``: its default, ``parallel_workers`` inference processes (the run's
  ``--workers``) beside the HTTP process;
- ``mlserver-inproc``: ``parallel_workers: 0``, inference in the HTTP process (always
  one process, whatever ``--workers`` says).

``uvloop<0.22``: MLServer 1.7.1's parallel workers crash with newer uvloop (MLServer#2286).
"""

from __future__ import annotations

import json
from pathlib import Path

from serving_peers.base import (
    Endpoint,
    Launch,
    Options,
    ServedModel,
    Server,
    Start,
    Venv,
    free_port,
)
from serving_peers.payloads import v2_body, v2_output

VENV = Venv("serve-mlserver", ("mlserver>=1.7", "mlserver-sklearn>=1.7", "uvloop<0.22"))
RUNTIME = "mlserver_sklearn.SKLearnModel"


def write_settings(model: ServedModel, port: int, workers: int, folder: Path) -> None:
    """The server's and the model's settings; gRPC and metrics on free ports of their own."""
    (folder / model.name).mkdir(parents=True, exist_ok=True)
    server = {
        "host": "127.0.0.1",
        "http_port": port,
        "grpc_port": free_port(),
        "metrics_port": free_port(),
        "parallel_workers": workers,
    }
    settings = {
        "name": model.name,
        "implementation": RUNTIME,
        "parameters": {"uri": str(model.joblib)},
    }
    (folder / "settings.json").write_text(json.dumps(server, indent=2))
    (folder / model.name / "model-settings.json").write_text(json.dumps(settings, indent=2))


def _launcher(in_process: bool) -> Start:
    def launch(model: ServedModel, port: int, options: Options, work: Path) -> Launch:
        folder = work / ("mlserver-inproc" if in_process else "mlserver")
        write_settings(model, port, 0 if in_process else options.workers, folder)
        command = [str(VENV.bin / "mlserver"), "start", str(folder)]
        return Launch(command, ready_path=f"/v2/models/{model.name}/ready", cwd=folder)

    return launch


def _endpoint(label: str) -> Endpoint:
    return Endpoint(
        label,
        "/v2/models/{name}/infer",
        lambda model, rows: v2_body(rows, "predict_proba"),
        lambda answer, model: v2_output(answer, "predict_proba"),
    )


DEFAULT = Server("mlserver", VENV, (_endpoint("mlserver"),), _launcher(in_process=False))
IN_PROCESS = Server(
    "mlserver-inproc", VENV, (_endpoint("mlserver-inproc"),), _launcher(in_process=True)
)
