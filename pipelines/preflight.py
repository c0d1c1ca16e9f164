"""`g2l pipeline preflight`: the static rules, and with a host the live ones, for one cancer config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from g2l.pipeline.preflight import Check, _fail, _ok, static_checks
from pipelines import kfp_api


def _needed_secrets(config: str | Path) -> list[str]:
    """Secrets this config's run reads: the HF token when a model comes from the hub, not gs://."""
    from g2l.config import load_yaml
    from g2l.pipeline.preflight import HUB_MODELS

    raw = load_yaml(config)
    needed = []
    for section, name_key, weights_key in (
        ("embed", "teacher", "weights"),
        ("distill", "student", "student_weights"),
    ):
        cfg = raw.get(section) or {}
        name, weights = str(cfg.get(name_key) or ""), str(cfg.get(weights_key) or "")
        if not weights and (name.startswith("hf-hub:") or name.lower() in HUB_MODELS):
            needed.append("hf_token")
    return sorted(set(needed))


def _core_api() -> Any:
    from kubernetes import client, config

    config.load_kube_config()
    return client.CoreV1Api()


def live_checks(
    config: str | Path,
    *,
    api: Any,
    namespace: str,
    core: Any = None,
    mlflow: str | None = None,
) -> list[Check]:
    """KFP backend version and namespace; the cluster's objects (kubeconfig); MLflow through `mlflow`."""
    from kubernetes.config import ConfigException

    from g2l.config import load_section
    from g2l.pipeline.cluster import ENV_CONFIG_MAP
    from g2l.pipeline.config import PipelineConfig
    from g2l.pipeline.preflight_live import (
        check_backend,
        check_cluster_objects,
        check_mlflow,
        check_namespace,
        kfp_healthz,
    )

    pipe = load_section(PipelineConfig, config, section="pipeline")
    ns = namespace or pipe.namespace
    try:
        health = kfp_healthz(api)
    except Exception as exc:  # urllib3 / ApiException: the endpoint or the credentials are wrong
        return [
            _fail("kfp-backend", f"no answer from the KFP API ({exc}); check --host and the auth options")
        ]
    checks = [check_backend(health), check_namespace(api, health, ns)]
    cluster_ns = ns or "kubeflow"
    cluster_mlflow = pipe.registry_uri
    try:
        core = core or _core_api()
        checks.extend(check_cluster_objects(core, cluster_ns, pipe.service_account, _needed_secrets(config)))
        cm = core.read_namespaced_config_map(ENV_CONFIG_MAP, cluster_ns)
        cluster_mlflow = cluster_mlflow or (cm.data or {}).get("mlflow_tracking_uri", "")
    except (ConfigException, OSError) as exc:
        checks.append(_fail("cluster", f"no Kubernetes access ({exc}): set KUBECONFIG for the cluster"))
    except Exception as exc:  # ApiException from a missing ConfigMap is reported by check_cluster_objects
        if getattr(exc, "status", None) not in (404,):
            checks.append(_fail("cluster", f"Kubernetes API error: {exc}"))
    if mlflow:
        checks.append(check_mlflow(mlflow, cluster_mlflow or mlflow))
    else:
        checks.append(_ok("mlflow", "not checked: pass --mlflow URL (e.g. a port-forward of svc/g2l-mlflow)"))
    return checks


def preflight(
    config: str | Path,
    *,
    package: str | Path,
    host: str | None = None,
    namespace: str = "",
    mlflow: str | None = None,
    auth: kfp_api.Auth | None = None,
    api: Any = None,
    core: Any = None,
) -> list[Check]:
    """Every static rule, plus the live rules when a KFP host (or a client) is given."""
    checks = static_checks(config, package)
    if host or api is not None:
        api = api or kfp_api.client(host, namespace, auth)
        checks.extend(live_checks(config, api=api, namespace=namespace, core=core, mlflow=mlflow))
    return checks


class PreflightFailed(RuntimeError):
    """A rule failed; the message lists every failed rule with its fix."""

    def __init__(self, failed: list[Check]):
        super().__init__("preflight failed:\n" + "\n".join(c.line() for c in failed))
        self.failed = failed


def require_ready(checks: list[Check]) -> None:
    """Raise PreflightFailed naming every failed rule (submit and schedule call this first)."""
    failed = [c for c in checks if not c.ok]
    if failed:
        raise PreflightFailed(failed)
