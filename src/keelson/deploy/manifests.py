"""What a deployment bundle tells Docker and Kubernetes: Dockerfile, manifests, README.

Kubernetes objects are plain dicts dumped with PyYAML (no hand-indented templates).
The pod runs as a non-root user with a read-only root filesystem: an init container
copies the bundle's SQLite store into an ``emptyDir`` mounted over it, because SQLite
in WAL mode needs to create its ``-shm`` file next to the database even to read.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import yaml

APP_UID = 10001  # the image's non-root user and group
APP_DIR = "/app"
STORE_DIR = ".keelson"  # keelson's default store folder, inside the bundle
SERVE_PORT = 8080
READY_PATH = "/v2/health/ready"
LIVE_PATH = "/v2/health/live"
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
_DNS_LABEL = re.compile(r"[^a-z0-9-]+")


@dataclass(frozen=True)
class DeployTarget:
    """One model version served from a bundle, and how much a replica asks for."""

    model: str
    version: int
    reference: str  # what `keelson serve` loads: NAME@ALIAS, or NAME@VERSION without an alias
    python: str  # "3.11": the base image's Python, the one requirements.lock was pinned on
    image: str  # the container image the Kubernetes manifests run
    wheel: str | None = None  # wheels/keelson-….whl when keelson is installed from a wheel
    api_keys: int = 0  # live API keys copied into the bundle's store
    memory_request_mib: int = 512
    replicas: int = 2
    max_replicas: int = 6

    @property
    def app(self) -> str:
        return kubernetes_name(self.model)


def kubernetes_name(model: str) -> str:
    """A DNS-1123 label for a model name: lower case, digits and '-', at most 63 characters."""
    name = _DNS_LABEL.sub("-", model.lower()).strip("-")[:63].rstrip("-")
    return name or "keelson-model"


def default_image(model: str, version: int) -> str:
    return f"{kubernetes_name(model)}:{version}"


# --- Docker ----------------------------------------------------------------------------------

HEALTHCHECK_SCRIPT = (
    f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{SERVE_PORT}{READY_PATH}', "
    "timeout=2)"
)

DOCKERIGNORE = """\
# Files that never belong in the image: local virtual environments and SQLite's
# transient files (a running server creates them next to the database).
.venv/
**/__pycache__/
**/*.db-wal
**/*.db-shm
**/*.db-journal
**/*.db.lock
"""


def serve_command(target: DeployTarget, host: str) -> list[str]:
    return [
        "keelson",
        "serve",
        target.reference,
        "--project",
        APP_DIR,
        "--host",
        host,
        "--port",
        str(SERVE_PORT),
    ]


def dockerfile(target: DeployTarget) -> str:
    """A slim image that installs the pinned lock, holds the store and serves as non-root."""
    wheels = "COPY wheels/ ./wheels/\n" if target.wheel else ""
    threads = " ".join(f"{name}=1" for name in THREAD_VARIABLES)
    return f"""\
# keelson model server: {target.model} version {target.version} ({target.reference}).
# Build from this folder: docker build -t {target.image} .
FROM python:{target.python}-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \\
    PIP_DISABLE_PIP_VERSION_CHECK=1 {threads}

# LightGBM links the system OpenMP runtime, which the slim image lacks.
RUN apt-get update \\
 && apt-get install -y --no-install-recommends libgomp1 \\
 && rm -rf /var/lib/apt/lists/* \\
 && groupadd --system --gid {APP_UID} keelson \\
 && useradd --system --uid {APP_UID} --gid {APP_UID} --no-create-home \\
      --home-dir /nonexistent --shell /usr/sbin/nologin keelson

WORKDIR {APP_DIR}
# Dependencies first: this layer is reused while only the model changes.
COPY requirements.lock ./
{wheels}RUN pip install --no-cache-dir --no-deps -r requirements.lock && pip check

COPY keelson.yaml MANIFEST.json ./
# SQLite (WAL mode) creates files next to the database even to read it: the user owns it.
COPY --chown={APP_UID}:{APP_UID} {STORE_DIR}/ ./{STORE_DIR}/

USER {APP_UID}:{APP_UID}
EXPOSE {SERVE_PORT}
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \\
  CMD {json.dumps(["python", "-c", HEALTHCHECK_SCRIPT])}
# Beyond loopback, scoring needs an API key from the bundle's store (health probes are
# open); behind your own authenticating gateway, add --allow-public-without-auth instead.
CMD {json.dumps(serve_command(target, "0.0.0.0"))}
"""


# --- Kubernetes ------------------------------------------------------------------------------


def kubernetes_manifests(target: DeployTarget) -> dict[str, dict[str, Any]]:
    """Deployment, Service, HorizontalPodAutoscaler and PodDisruptionBudget, by file name."""
    return {
        "deployment.yaml": deployment(target),
        "service.yaml": service(target),
        "hpa.yaml": autoscaler(target),
        "pdb.yaml": disruption_budget(target),
    }


def dump_yaml(document: dict[str, Any]) -> str:
    return yaml.safe_dump(document, sort_keys=False, default_flow_style=False)


def _labels(target: DeployTarget) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": target.app,
        "app.kubernetes.io/version": str(target.version),
        "app.kubernetes.io/component": "model-server",
        "app.kubernetes.io/part-of": "keelson",
    }


def _selector(target: DeployTarget) -> dict[str, Any]:
    return {"matchLabels": {"app.kubernetes.io/name": target.app}}


def _metadata(target: DeployTarget) -> dict[str, Any]:
    return {"name": target.app, "labels": _labels(target)}


def deployment(target: DeployTarget) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(target),
        "spec": {
            "replicas": target.replicas,
            "selector": _selector(target),
            # A new pod is ready before an old one leaves: no capacity lost in a rollout.
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {"metadata": _pod_metadata(target), "spec": _pod_spec(target)},
        },
    }


def _pod_metadata(target: DeployTarget) -> dict[str, Any]:
    return {
        "labels": _labels(target),
        "annotations": {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": str(SERVE_PORT),
            "prometheus.io/path": "/metrics",
        },
    }


def _pod_spec(target: DeployTarget) -> dict[str, Any]:
    return {
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": APP_UID,
            "runAsGroup": APP_UID,
            "fsGroup": APP_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "terminationGracePeriodSeconds": 30,
        "initContainers": [_copy_store(target)],
        "containers": [_server(target)],
        "volumes": [
            {"name": "store", "emptyDir": {}},
            {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
        ],
    }


def _container_security() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


def _copy_store(target: DeployTarget) -> dict[str, Any]:
    """Copy the image's store into the writable volume the server mounts over it."""
    return {
        "name": "copy-store",
        "image": target.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["cp", "-R", f"{APP_DIR}/{STORE_DIR}/.", "/store/"],
        "securityContext": _container_security(),
        "resources": {
            "requests": {"cpu": "50m", "memory": "32Mi"},
            "limits": {"memory": "64Mi"},
        },
        "volumeMounts": [{"name": "store", "mountPath": "/store"}],
    }


def _server(target: DeployTarget) -> dict[str, Any]:
    memory = target.memory_request_mib
    return {
        "name": "server",
        "image": target.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["keelson"],
        "args": serve_command(target, "0.0.0.0")[1:],
        "ports": [{"name": "http", "containerPort": SERVE_PORT, "protocol": "TCP"}],
        "env": [{"name": name, "value": "1"} for name in THREAD_VARIABLES],
        # One busy core per replica (intra-op threads are pinned to 1); scale with replicas.
        "resources": {
            "requests": {"cpu": "500m", "memory": f"{memory}Mi"},
            "limits": {"cpu": "1", "memory": f"{2 * memory}Mi"},
        },
        "startupProbe": _probe(READY_PATH, period=2, failures=60),
        "readinessProbe": _probe(READY_PATH, period=5, failures=2),
        "livenessProbe": _probe(LIVE_PATH, period=10, failures=3),
        # Let endpoints drop the pod before the server starts draining.
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", "5"]}}},
        "securityContext": _container_security(),
        "volumeMounts": [
            {"name": "store", "mountPath": f"{APP_DIR}/{STORE_DIR}"},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }


def _probe(path: str, *, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


def service(target: DeployTarget) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(target),
        "spec": {
            "type": "ClusterIP",
            "selector": {"app.kubernetes.io/name": target.app},
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def autoscaler(target: DeployTarget) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(target),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target.app},
            "minReplicas": target.replicas,
            "maxReplicas": max(target.max_replicas, target.replicas),
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 70},
                    },
                }
            ],
        },
    }


def disruption_budget(target: DeployTarget) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(target),
        "spec": {"minAvailable": 1, "selector": _selector(target)},
    }


# --- README ----------------------------------------------------------------------------------


def _keys_sentence(keys: int) -> str:
    if keys:
        return (
            f"The bundle holds the project's {keys} live API key(s) (their hashes only); "
            "revoking one means packaging again."
        )
    return (
        "The bundle holds no API key, so the server answers 401: package again with "
        "`--with-keys` after `keelson keys create NAME --scope predict`, or, behind your "
        "own authenticating gateway, add `--allow-public-without-auth` to the `CMD`."
    )


def readme(target: DeployTarget, *, artifact_sha256: str, keelson_version: str) -> str:
    """How to run the bundle with Docker, on Kubernetes or in a plain virtual environment."""
    name, ref = target.model, target.reference
    return f"""\
# {name} version {target.version}: a keelson serving bundle

Made by keelson {keelson_version}. It serves `{ref}` over the Open Inference
Protocol v2 (`/v2/models/{name}/infer`) and MLflow-style `/invocations`, with health
(`{LIVE_PATH}`, `{READY_PATH}`) and Prometheus metrics (`/metrics`).

- `.keelson/`: a keelson store holding only this model version, its alias and its
  artifact (SHA-256 `{artifact_sha256}`)
- `keelson.yaml`: the minimal project file `keelson serve` needs to find the store
- `requirements.lock`: exact versions of everything keelson needs, pinned on CPython
  {target.python}, then keelson itself (a pin, or the wheel in `wheels/`)
- `Dockerfile`, `.dockerignore`: a `python:{target.python}-slim` image that runs as a
  non-root user, with a health check
- `k8s/`: Deployment (probes, resources, non-root, read-only root filesystem), Service,
  HorizontalPodAutoscaler, PodDisruptionBudget
- `MANIFEST.json`: the model's identity and signature, and the SHA-256 of every other file

## Check it first

    keelson package --verify .

re-computes every file's SHA-256 and compares it with `MANIFEST.json`. It detects a
corrupted or edited file; it cannot detect someone who rewrote `MANIFEST.json` too, so
keep that file's own hash (printed by `keelson package`) or sign it.

## Run it without Docker

From this folder, with Python {target.python}:

    python{target.python} -m venv ../{target.app}-venv
    ../{target.app}-venv/bin/pip install --no-deps -r requirements.lock
    ../{target.app}-venv/bin/pip check
    ../{target.app}-venv/bin/keelson serve {ref} --project .

The server listens on http://127.0.0.1:8080 (`--port` changes it). Try it:

    curl -s http://127.0.0.1:8080{READY_PATH}

`KEELSON_STORE_URL` and `KEELSON_ARTIFACTS` override the store location: unset them,
or the server looks for the model elsewhere.

## Run it with Docker

    docker build -t {target.image} .
    docker run --rm -p 8080:8080 {target.image}

The container binds 0.0.0.0 so that the published port reaches it, and beyond loopback
keelson asks every scoring request for an API key (`Authorization: Bearer kls_…`; the
health probes stay open). {_keys_sentence(target.api_keys)}

Predictions and feedback are logged under `.keelson/predictions/`, inside the container.
To keep them, set `serve.prediction_log.path` in the project's keelson.yaml to an
fsspec URL (`s3://bucket/predictions`) and package again.

## Run it on Kubernetes

Push the image where your cluster pulls from, set that name in `k8s/deployment.yaml`
(both `image:` lines; it is `{target.image}` now), then:

    kubectl apply -f k8s/

Two replicas start (the autoscaler adds up to {target.max_replicas} at 70 % CPU); a pod is
ready once the model is loaded. The Service `{target.app}` answers on port 80 inside the
cluster. Each pod pins its numeric libraries to one thread and asks for half a core:
scale with replicas, not threads.
"""
