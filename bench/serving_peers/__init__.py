"""The servers of the serving bench (``bench/serving.py``), one module per server.

``base`` holds the shared types, ``payloads`` each native request format, ``models`` the
two models (registered in keelson stores, exported once for the peers). ``keelson_peer``,
``mlflow_peer`` (with ``mlflow_model.py``, run in MLflow's venv), ``bentoml_peer`` (with
``bentoml_service.py``, run by ``bentoml serve``) and ``mlserver_peer`` say how each server
is prepared, launched and asked.
"""
