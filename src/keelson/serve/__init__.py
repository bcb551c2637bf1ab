"""The data plane: serve one loaded model over REST (Open Inference v2 and MLflow-style).

``create_app(model)`` builds the ASGI app; ``run_server(model)`` runs it with uvicorn.
"""

from keelson.serve.app import create_app, run_server

__all__ = ["create_app", "run_server"]
