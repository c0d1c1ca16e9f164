"""infra/: every overlay renders with the real kustomize, validates, fits together, grants what a run needs.

Rules encoded from the real systems (cited beside each test): kubeflow/pipelines' pipeline-runner Role,
MLflow 3's host validation and basic-auth app, Kubeflow Trainer's runtime merge, Prometheus scraping a
Pushgateway.
"""

import json
import re
import shlex
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from g2l.pipeline.cluster import ENV_CONFIG_MAP, ENV_KEYS
from g2l.pipeline.config import PipelineConfig
from tests.fixtures.kustomize import kustomize_binary, render, render_python

INFRA = Path(__file__).resolve().parents[1] / "infra"
OVERLAYS = {"standalone": "kubeflow", "multi-user": "kubeflow-user-example-com"}
K8S_VERSION = "1.30"
CORE_GROUPS = ("v1", "apps/v1", "rbac.authorization.k8s.io/v1", "batch/v1")

# kubeflow/pipelines manifests/kustomize/base/pipeline/pipeline-runner-role.yaml at tag 2.17.0: the rules
# KFP's v2 driver, launcher and Argo executor use in a run's namespace (group, resource) -> verbs.
# Not carried over: seldon, mlflow.kubeflow.org, volumesnapshots, deployments/replicasets (no g2l step
# uses them) and `kubeflow.org/*` (narrowed to pytorchjobs).
PIPELINE_RUNNER_RULES = {
    ("", "secrets"): {"get"},
    ("", "configmaps"): {"get", "watch", "list"},
    ("", "persistentvolumes"): {"*"},
    ("", "persistentvolumeclaims"): {"*"},
    ("argoproj.io", "workflows"): {"get", "list", "watch", "update", "patch"},
    ("argoproj.io", "workflowtaskresults"): {"create", "patch"},
    ("", "pods"): {"*"},
    ("", "pods/exec"): {"*"},
    ("", "pods/log"): {"*"},
    ("", "services"): {"*"},
    ("batch", "jobs"): {"*"},
}


def _keyed(docs: list[dict]) -> dict[tuple[str, str, str], dict]:
    keyed = {(d["kind"], d["metadata"]["name"], d["metadata"].get("namespace", "")): d for d in docs}
    assert len(keyed) == len(docs), "two objects share a kind, name and namespace"
    return keyed


@pytest.fixture(scope="module", params=sorted(OVERLAYS))
def overlay(request) -> tuple[str, dict[tuple[str, str, str], dict]]:
    return request.param, _keyed(render(INFRA / "k8s" / "overlays" / request.param))


def _one(objects: dict, kind: str, name: str) -> dict:
    found = [d for (k, n, _), d in objects.items() if k == kind and n == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} objects"
    return found[0]


def mlflow_command() -> str:
    """The shell script the rendered MLflow container runs."""
    objects = _keyed(render(INFRA / "k8s" / "overlays" / "standalone"))
    return _one(objects, "Deployment", "g2l-mlflow")["spec"]["template"]["spec"]["containers"][0]["args"][0]


def mlflow_allowed_hosts() -> str:
    """The value of the rendered MLflow server's --allowed-hosts (tests start a real server with it)."""
    words = shlex.split(mlflow_command().split("exec mlflow server", 1)[1].replace("\\\n", " "))
    return words[words.index("--allowed-hosts") + 1]


def test_every_overlay_renders_with_kubectl_kustomize():
    assert kustomize_binary() is not None, "kubectl (or kustomize) is needed to render infra/"
    for name in OVERLAYS:
        docs = render(INFRA / "k8s" / "overlays" / name)
        assert {d["kind"] for d in docs} >= {"Deployment", "Role", "RoleBinding", "ClusterTrainingRuntime"}


def test_every_core_object_validates_against_the_kubernetes_schema(overlay):
    _, objects = overlay
    core = [d for d in objects.values() if d["apiVersion"] in CORE_GROUPS]
    assert len(core) >= 12
    for doc in core:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_the_runs_namespace_holds_its_service_account_rbac_and_env(overlay):
    name, objects = overlay
    ns = OVERLAYS[name]
    sa = objects[("ServiceAccount", PipelineConfig().service_account, ns)]
    assert sa["metadata"]["annotations"]["iam.gke.io/gcp-service-account"].endswith(
        ".iam.gserviceaccount.com"
    )
    assert ("ConfigMap", ENV_CONFIG_MAP, ns) in objects
    binding = objects[("RoleBinding", "g2l-pipeline-runner", ns)]
    assert (
        binding["roleRef"]["name"] == "g2l-pipeline-runner" and ("Role", "g2l-pipeline-runner", ns) in objects
    )
    subjects = {(s["name"], s["namespace"]) for s in binding["subjects"]}
    assert ("g2l-pipeline", ns) in subjects
    if name == "multi-user":  # runs that name no account run as the profile's default-editor
        assert ("default-editor", ns) in subjects


def test_the_pipeline_service_account_has_the_pipeline_runner_rules_and_trainjobs(overlay):
    name, objects = overlay
    rules = objects[("Role", "g2l-pipeline-runner", OVERLAYS[name])]["rules"]
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in rules:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    for key, verbs in PIPELINE_RUNNER_RULES.items():
        assert "*" in granted.get(key, set()) or verbs <= granted.get(key, set()), key
    assert {"create", "get", "watch", "delete", "list"} <= granted[("trainer.kubeflow.org", "trainjobs")]
    assert {"create", "get", "watch", "delete"} <= granted[("kubeflow.org", "pytorchjobs")]


def test_no_password_or_token_literal_in_any_manifest(overlay):
    """Credentials come from Secrets the operator creates; no Secret object and no literal value ships."""
    _, objects = overlay
    assert not [k for k in objects if k[0] == "Secret"]
    text = "\n".join(p.read_text() for p in (INFRA / "k8s").rglob("*.yaml"))
    assert not re.search(r"(?i)^\s*(stringData|data):\s*\n\s+\w*(PASSWORD|TOKEN|SECRET)", text, re.M)
    assert not re.search(r"(?i)(password|passwd|secret_key|token)\s*[:=]\s*['\"]?[A-Za-z0-9+/_-]{4,}", text)
    assert not re.search(r"://[^/\s$:]+:[^@\s$]+@", text)  # user:password@ in a URI, unless a $(VAR)
    for doc in objects.values():
        for container in _containers(doc):
            for env in container.get("env", []):
                if re.search(r"PASSWORD|TOKEN|SECRET", env["name"]):
                    assert "valueFrom" in env and "secretKeyRef" in env["valueFrom"], env["name"]


def _containers(doc: dict) -> list[dict]:
    spec = doc.get("spec", {}).get("template", {}).get("spec", {})
    return spec.get("containers", [])


def test_mlflow_allows_the_in_cluster_host_names_and_requires_auth(overlay):
    """MLflow 3 answers 403 to Host headers outside localhost/private IPs unless --allowed-hosts lists them
    (mlflow/server/security.py `validate_host`, security_utils.is_allowed_host_header: exact match or
    fnmatch); the pipeline's pods reach it by the name in g2l-pipeline-env."""
    name, objects = overlay
    command = mlflow_command()
    assert "--app-name basic-auth" in command and "MLFLOW_AUTH_CONFIG_PATH" in json.dumps(
        _one(objects, "Deployment", "g2l-mlflow")
    )
    allowed = mlflow_allowed_hosts().split(",")
    env = objects[("ConfigMap", ENV_CONFIG_MAP, OVERLAYS[name])]["data"]
    host = re.fullmatch(r"http://([^/]+)", env["mlflow_tracking_uri"])[1]
    assert host in allowed
    assert '--backend-store-uri "postgresql://${POSTGRES_USER}:${POSTGRES_PASSWORD}@' in command


def test_pipeline_env_points_at_the_rendered_services(overlay):
    name, objects = overlay
    env = objects[("ConfigMap", ENV_CONFIG_MAP, OVERLAYS[name])]["data"]
    assert set(env) == set(ENV_KEYS)
    for key in ("pushgateway", "mlflow_tracking_uri"):
        host, ns, port = re.fullmatch(
            r"http://([^.]+)\.([^.]+)\.svc\.cluster\.local:(\d+)", env[key]
        ).groups()
        assert int(port) in {p["port"] for p in objects[("Service", host, ns)]["spec"]["ports"]}
    assert env["benchmark_data"].startswith("gs://")


@pytest.mark.parametrize(
    ("service", "workload"),
    [
        ("g2l-pushgateway", ("Deployment", "g2l-pushgateway")),
        ("g2l-mlflow", ("Deployment", "g2l-mlflow")),
        ("g2l-postgres", ("StatefulSet", "g2l-postgres")),
    ],
)
def test_services_select_their_pods_and_ports(service, workload):
    objects = _keyed(render(INFRA / "k8s" / "overlays" / "standalone"))
    svc = _one(objects, "Service", service)
    pods = _one(objects, *workload)
    assert svc["spec"]["selector"].items() <= pods["spec"]["template"]["metadata"]["labels"].items()
    port_names = {p["name"] for c in _containers(pods) for p in c.get("ports", [])}
    for port in svc["spec"]["ports"]:
        assert port["targetPort"] in port_names


def test_postgres_creates_the_auth_database_and_reads_its_credentials_from_the_secret():
    objects = _keyed(render(INFRA / "k8s" / "overlays" / "standalone"))
    pg = _one(objects, "StatefulSet", "g2l-postgres")["spec"]["template"]["spec"]
    assert pg["containers"][0]["envFrom"] == [{"secretRef": {"name": "g2l-postgres"}}]
    init = _one(objects, "ConfigMap", "g2l-postgres-init")["data"]
    assert "CREATE DATABASE mlflow_auth" in "".join(init.values())
    assert {"name": "init", "configMap": {"name": "g2l-postgres-init"}} in pg["volumes"]


def test_the_shipped_scrape_configs_scrape_the_pushgateway_keeping_pushed_labels():
    """A Pushgateway is scraped with honor_labels so the pushed run_id/stage/cancer/task survive
    (Prometheus docs, 'Pushgateway'); GMP's PodMonitoring and the Operator's ServiceMonitor both select
    the Pushgateway's pods/service and its `http` port."""
    objects = _keyed(render(INFRA / "k8s" / "overlays" / "standalone"))
    pods = _one(objects, "Deployment", "g2l-pushgateway")["spec"]["template"]["metadata"]["labels"]
    pm = _one(objects, "PodMonitoring", "g2l-pushgateway")
    assert pm["spec"]["selector"]["matchLabels"].items() <= pods.items()
    assert pm["spec"]["endpoints"][0]["port"] == "http"
    sm = yaml.safe_load(
        (INFRA / "k8s" / "components" / "prometheus-operator" / "servicemonitor.yaml").read_text()
    )
    svc = _one(objects, "Service", "g2l-pushgateway")
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert sm["spec"]["endpoints"][0] == {
        "port": "http",
        "path": "/metrics",
        "interval": "30s",
        "honorLabels": True,
    }
    assert not [k for k in objects if k[0] == "ConfigMap" and "scrape" in k[1]]  # no unused scrape snippet


def test_grafana_dashboard_charts_the_stage_metrics_of_running_tasks():
    objects = _keyed(render(INFRA / "k8s" / "overlays" / "standalone"))
    cm = _one(objects, "ConfigMap", "g2l-grafana-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    dash = json.loads(cm["data"]["g2l.json"])
    panels = {p["title"].lower(): p["targets"][0]["expr"] for p in dash["panels"]}
    for wanted in ("tiles/s", "embeddings/s", "loss", "step time", "failures", "promotions"):
        assert any(wanted in t for t in panels)
    # Throughput sums the running fan-out tasks only: a finished task's last rate is not added in.
    for title, expr in panels.items():
        if "/s" in title:
            assert (
                "unless on (run_id, stage, cancer, task) (g2l_stage_finished_timestamp_seconds > 0)" in expr
            )


def test_dashboard_metrics_are_ones_the_stages_emit():
    objects = _keyed(render(INFRA / "k8s" / "overlays" / "standalone"))
    dash = json.loads(_one(objects, "ConfigMap", "g2l-grafana-dashboard")["data"]["g2l.json"])
    charted = {m for p in dash["panels"] for t in p["targets"] for m in re.findall(r"\bg2l_(\w+)", t["expr"])}
    source = "\n".join(p.read_text() for p in (INFRA.parent / "g2l").rglob("*.py"))
    emitted = set(re.findall(r"(?:gauge|counter)\(\s*\"(\w+)\"", source))
    assert charted <= emitted, f"dashboard charts metrics nothing emits: {sorted(charted - emitted)}"


def test_trainer_runtime_is_a_torch_runtime_whose_default_args_cannot_complete():
    """Trainer copies a TrainJob's command/args only when set (kubeflow/trainer v2.2.0 jobset/builder.go):
    the runtime's own args are what runs otherwise, so they must fail, not print --help and succeed."""
    objects = _keyed(render(INFRA / "k8s" / "overlays" / "standalone"))
    rt = _one(objects, "ClusterTrainingRuntime", "g2l-torch-distributed")
    assert rt["apiVersion"] == "trainer.kubeflow.org/v1alpha1" and "namespace" not in rt["metadata"]
    assert rt["spec"]["mlPolicy"]["torch"]["numProcPerNode"] == "auto"
    job = rt["spec"]["template"]["spec"]["replicatedJobs"][0]
    assert (
        job["name"] == "node"
        and job["template"]["metadata"]["labels"]["trainer.kubeflow.org/trainjob-ancestor-step"] == "trainer"
    )
    pod_spec = job["template"]["spec"]["template"]["spec"]
    kubernetes_validate.validate(
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "node"}, "spec": pod_spec},
        K8S_VERSION,
        strict=True,
    )
    node = pod_spec["containers"][0]
    assert node["command"] + node["args"] == ["torchrun", "-m", "g2l.distill"]  # no --help
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod_spec["tolerations"]
    assert pod_spec["nodeSelector"]["cloud.google.com/gke-accelerator"]


@pytest.mark.skipif(kustomize_binary() is None, reason="needs kustomize or kubectl to compare against")
@pytest.mark.parametrize("name", sorted(OVERLAYS))
def test_python_renderer_matches_real_kustomize(name):
    path = INFRA / "k8s" / "overlays" / name
    assert _keyed(render_python(path)) == _keyed(render(path))


def test_dockerfile_builds_the_project_image_with_its_commit():
    text = (INFRA / "Dockerfile").read_text()
    base = re.search(r"ARG CUDA_IMAGE=(\S+)", text)[1]
    assert base.startswith("nvidia/cuda:") and "runtime" in base
    assert re.search(r"pip install --index-url \$\{TORCH_INDEX\} \"torch", text)
    assert "cucim-cu12" in text and "mlflow[auth]" in text
    for part in ("g2l", "components", "pipelines", "configs"):
        assert f"COPY {part} ./{part}" in text
    assert re.search(r"ARG GIT_COMMIT\b", text) and "G2L_GIT_COMMIT=${GIT_COMMIT}" in text
    assert "TMPDIR=/cache" in text  # staging, temp files and caches on the step's declared emptyDir
