"""keelson: ``keelson serve NAME@ALIAS --project P --port N`` from the project's venv.

Measured on both of its protocols: Open Inference v2 (the pandas-codec body, asking for
the ``probabilities`` output only, as the peers are asked for ``predict_proba`` only) and
the MLflow-style ``/invocations`` (``dataframe_split``). Extra arguments of a run
(``--keelson-args``) are passed through; ``--workers`` only where ``keelson serve`` has it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from serving_peers.base import Endpoint, Launch, Options, ServedModel, Server
from serving_peers.payloads import dataframe_split_body, v2_body, v2_output

KEELSON = Path(sys.executable).parent / "keelson"


def parse_invocations(answer: Any, model: ServedModel) -> np.ndarray:
    """``{"predictions": [{"label": .., "probabilities": {class: p}}, ...]}``, in class order."""
    rows = answer["predictions"]
    return np.asarray(
        [[row["probabilities"][c] for c in model.classes] for row in rows], dtype=np.float64
    )


@cache
def serve_flags() -> frozenset[str]:
    """The long options ``keelson serve --help`` lists (the server grows flags over time)."""
    shown = subprocess.run(
        [str(KEELSON), "serve", "--help"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    ).stdout
    return frozenset(word.strip("│,") for word in shown.split() if word.startswith("--"))


def launch(model: ServedModel, port: int, options: Options, work: Path) -> Launch:
    command = [str(KEELSON), "serve", model.ref, "--project", str(model.project)]
    command += ["--port", str(port)]
    if "--workers" in serve_flags():
        command += ["--workers", str(options.workers)]
    elif options.workers != 1:
        raise RuntimeError("this keelson serve has no --workers option; run with --workers 1")
    return Launch([*command, *options.keelson_args], ready_path="/v2/health/ready")


V2 = Endpoint(
    "keelson",
    "/v2/models/{name}/infer",
    lambda model, rows: v2_body(rows, "probabilities"),
    lambda answer, model: v2_output(answer, "probabilities"),
)
INVOCATIONS = Endpoint(
    "keelson-invocations",
    "/invocations",
    lambda model, rows: dataframe_split_body(rows),
    parse_invocations,
)
SERVER = Server("keelson", None, (V2, INVOCATIONS), launch)
