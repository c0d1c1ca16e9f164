"""The live rules of `g2l pipeline preflight --host`: KFP backend, namespace, cluster objects, MLflow.

Each talks to the real service through a client passed in (kfp.Client, kubernetes CoreV1Api, an MLflow
base URL), so tests drive them over HTTP against local servers that answer as the real ones do.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlparse

from g2l.pipeline.cluster import ENV_CONFIG_MAP, ENV_KEYS, MIN_KFP_BACKEND, SECRETS
from g2l.pipeline.preflight import Check, _fail, _ok

# MLflow's host-validation answer (mlflow/server/security_utils.py INVALID_HOST_MSG, mlflow 3.x): a
# Host header outside --allowed-hosts gets 403 with this text on every path but /health and /version.
INVALID_HOST = "Invalid Host header"
PROBE_PATH = "/api/2.0/mlflow/registered-models/search?max_results=1"


def parse_version(tag: str) -> tuple[int, ...] | None:
    """'2.15.0' / 'v2.16.1' -> (2, 15, 0); None for 'unknown' or a dev build."""
    parts = tag.lstrip("v").split("-")[0].split(".")
    if len(parts) < 2 or not all(p.isdigit() for p in parts):
        return None
    return tuple(int(p) for p in parts)


def kfp_healthz(api: Any) -> dict[str, Any]:
    """The API server's healthz JSON ({commit_sha, tag_name, multi_user}), with the client's credentials.

    kfp's typed `get_kfp_healthz()` keeps only `multi_user`; the server also sends `tag_name`
    (kubeflow/pipelines backend/src/apiserver/main.go `healthzResponse` at 2.17.0), read here raw.
    """
    resp = api._healthz_api.healthz_service_get_healthz(_preload_content=False)
    return dict(json.loads(resp.data or b"{}"))


def check_backend(health: dict[str, Any]) -> Check:
    """The backend is at least MIN_KFP_BACKEND (dsl.Collected, optional ConfigMap/Secret env)."""
    minimum = ".".join(map(str, MIN_KFP_BACKEND))
    tag = str(health.get("tag_name") or "unknown")
    version = parse_version(tag)
    if version is None:
        return _ok(
            "kfp-backend", f"version {tag!r} cannot be compared (a dev build?); g2l needs >= {minimum}"
        )
    if version < MIN_KFP_BACKEND:
        return _fail(
            "kfp-backend",
            f"KFP backend {tag} is older than {minimum}: its driver lacks dsl.Collected and optional "
            "ConfigMap env vars the pipeline uses; upgrade Kubeflow Pipelines",
        )
    return _ok("kfp-backend", f"KFP {tag} (>= {minimum})")


def check_namespace(api: Any, health: dict[str, Any], namespace: str) -> Check:
    """Multi-user KFP needs the profile namespace on every call, and the caller must be allowed in it."""
    if health.get("multi_user") and not namespace:
        return _fail(
            "kfp-namespace",
            "multi-user Kubeflow: pass --namespace PROFILE (or set pipeline.namespace) for every call",
        )
    try:
        api.list_experiments(namespace=namespace or None, page_size=1)
    except Exception as exc:  # kfp_server_api.ApiException: 401/403 from the auth proxy or the API server
        status = getattr(exc, "status", "")
        return _fail(
            "kfp-namespace",
            f"listing experiments in {namespace or 'the default namespace'} failed ({status} "
            f"{getattr(exc, 'reason', exc)}): check the token/cookie options and the profile's contributors",
        )
    return _ok("kfp-namespace", namespace or "single-user")


def _get(fn: Any, *args: Any) -> Any:
    """A Kubernetes read; None on 404, the exception's status otherwise."""
    from kubernetes.client.exceptions import ApiException

    try:
        return fn(*args)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def check_cluster_objects(
    core: Any, namespace: str, service_account: str, needed_secrets: list[str]
) -> list[Check]:
    """The run's namespace, service account, env ConfigMap and the Secrets this config needs exist."""
    checks = []
    if _get(core.read_namespace, namespace) is None:
        return [_fail("namespace", f"namespace {namespace} does not exist: apply an infra/k8s overlay")]
    checks.append(_ok("namespace", namespace))
    if _get(core.read_namespaced_service_account, service_account, namespace) is None:
        checks.append(
            _fail(
                "service-account",
                f"{namespace}/{service_account} not found: `kubectl apply -k "
                "infra/k8s/overlays/<standalone|multi-user>` creates it with its RBAC",
            )
        )
    else:
        checks.append(_ok("service-account", f"{namespace}/{service_account}"))
    cm = _get(core.read_namespaced_config_map, ENV_CONFIG_MAP, namespace)
    missing = sorted(set(ENV_KEYS) - set((cm.data or {}) if cm is not None else {}))
    if cm is None or missing:
        checks.append(
            _fail(
                "pipeline-env",
                f"ConfigMap {namespace}/{ENV_CONFIG_MAP} lacks {', '.join(missing)}: apply infra",
            )
        )
    else:
        checks.append(_ok("pipeline-env", f"{namespace}/{ENV_CONFIG_MAP}"))
    for key in needed_secrets:
        ref = SECRETS[key]
        secret = _get(core.read_namespaced_secret, ref.name, namespace)
        absent = sorted(set(ref.keys) - set((secret.data or {}) if secret is not None else {}))
        if secret is None or absent:
            checks.append(
                _fail(
                    "secrets",
                    f"{namespace}/{ref.name} (keys {', '.join(ref.keys)}) is needed for {ref.why}: "
                    f"{ref.create.replace('NS', namespace)}",
                )
            )
        else:
            checks.append(_ok("secrets", f"{namespace}/{ref.name}"))
    return checks


def check_mlflow(url: str, cluster_uri: str, *, timeout_s: float = 10.0) -> Check:
    """MLflow answers, and accepts the Host header the pipeline's pods will send (its in-cluster name).

    `url` is where this machine reaches the server (a port-forward); `cluster_uri` the tracking URI the
    pods use. MLflow 3 rejects Host headers outside localhost and private IPs unless `--allowed-hosts`
    lists them; /health is exempt (security_utils.HEALTH_ENDPOINTS), so an API path is probed.
    """
    host = urlparse(cluster_uri).netloc or cluster_uri
    request = urllib.request.Request(url.rstrip("/") + PROBE_PATH, headers={"Host": host})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as resp:
            status, body = resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as err:
        status, body = err.code, err.read().decode(errors="replace")
    except OSError as exc:
        return _fail(
            "mlflow", f"{url} unreachable ({exc}): port-forward svc/g2l-mlflow and pass --mlflow URL"
        )
    if status == 403 and INVALID_HOST in body:
        return _fail(
            "mlflow",
            f"MLflow rejects Host {host!r}: add it to the server's --allowed-hosts "
            "(infra/k8s/base/mlflow.yaml) and re-apply",
        )
    if status == 401:
        return _ok("mlflow", f"{url} accepts Host {host!r} and requires credentials (Secret g2l-mlflow-auth)")
    if status >= 400:
        return _fail("mlflow", f"{url}{PROBE_PATH} answered {status}: {body[:200]}")
    return _ok("mlflow", f"{url} accepts Host {host!r}")
