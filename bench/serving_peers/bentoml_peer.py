"""BentoML: ``bentoml serve bentoml_service:TabularModel`` (see ``bentoml_service.py``).

One process answers both APIs, measured as two rows: ``bentoml`` (plain) and
``bentoml-batched`` (adaptive batching at BentoML's defaults). ``BENTOML_HOME`` is kept
under the bench's cache, away from ``~/bentoml``.
"""

from __future__ import annotations

from pathlib import Path

from serving_peers.base import Endpoint, Launch, Options, ServedModel, Server, Venv
from serving_peers.payloads import matrix, records_body

VENV = Venv("serve-bentoml", ("bentoml>=1.4",))
HERE = Path(__file__).resolve().parent


def launch(model: ServedModel, port: int, options: Options, work: Path) -> Launch:
    env = {
        "BENCH_MODEL": str(model.joblib),
        "BENCH_COLUMNS": ",".join(model.rows.columns),
        "BENCH_WORKERS": str(options.workers),
        "BENTOML_HOME": str(work / "bentoml-home"),
        "BENTOML_DO_NOT_TRACK": "true",
    }
    command = [str(VENV.bin / "bentoml"), "serve", "bentoml_service:TabularModel"]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    return Launch(command, ready_path="/readyz", env=env, cwd=HERE)


def _endpoint(label: str, path: str) -> Endpoint:
    return Endpoint(
        label, path, lambda model, rows: records_body(rows), lambda answer, model: matrix(answer)
    )


SERVER = Server(
    "bentoml",
    VENV,
    (_endpoint("bentoml", "/predict"), _endpoint("bentoml-batched", "/predict_batched")),
    launch,
)
