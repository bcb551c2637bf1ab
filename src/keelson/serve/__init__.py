"""The data plane: serve models over REST (Open Inference v2 and MLflow-style).

``create_app(model)`` builds the ASGI app for a loaded model; ``keelson serve`` runs a
deployment (aliases followed, traffic policy, workers) with :func:`keelson.serve.run.run`.
"""

from keelson.serve.app import Deployment, create_app

__all__ = ["Deployment", "create_app"]
