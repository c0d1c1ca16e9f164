"""infra/: the rendered Kubernetes manifests validate, fit together, and match what the pipeline expects."""

import json
import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from g2l.pipeline.config import PipelineConfig
from pipelines.g2l_pipeline import ENV_CONFIG_MAP, ENV_KEYS
from tests.fixtures.kustomize import kustomize_binary, render, render_python

INFRA = Path(__file__).resolve().parents[1] / "infra"
GKE = INFRA / "k8s" / "overlays" / "gke"
K8S_VERSION = "1.30"
CORE_GROUPS = ("v1", "apps/v1", "rbac.authorization.k8s.io/v1", "batch/v1")


@pytest.fixture(scope="module")
def objects() -> dict[tuple[str, str], dict]:
    docs = render(GKE)
    keyed = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    assert len(keyed) == len(docs), "two objects share a kind and name"
    return keyed


def test_every_core_object_validates_against_the_kubernetes_schema(objects):
    core = [d for d in objects.values() if d["apiVersion"] in CORE_GROUPS]
    assert len(core) >= 12
    for doc in core:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_overlay_has_the_pieces_the_pipeline_needs(objects):
    for key in [
        ("Namespace", "g2l"),
        ("ServiceAccount", "g2l-pipeline"),
        ("Role", "g2l-trainjobs"),
        ("RoleBinding", "g2l-trainjobs"),
        ("Deployment", "g2l-pushgateway"),
        ("Service", "g2l-pushgateway"),
        ("Deployment", "g2l-mlflow"),
        ("Service", "g2l-mlflow"),
        ("StatefulSet", "g2l-postgres"),
        ("ConfigMap", "g2l-prometheus-scrape"),
        ("ConfigMap", "g2l-grafana-dashboard"),
        ("ConfigMap", ENV_CONFIG_MAP),
        ("ClusterTrainingRuntime", "g2l-torch-distributed"),
        ("PodMonitoring", "g2l-pushgateway"),
    ]:
        assert key in objects, f"{key} missing from the GKE overlay"
    sa = objects[("ServiceAccount", "g2l-pipeline")]
    assert sa["metadata"]["name"] == PipelineConfig().service_account
    assert sa["metadata"]["annotations"]["iam.gke.io/gcp-service-account"].endswith(
        ".iam.gserviceaccount.com"
    )
    assert (
        objects[("StatefulSet", "g2l-postgres")]["spec"]["volumeClaimTemplates"][0]["spec"][
            "storageClassName"
        ]
        == "premium-rwo"
    )


def test_service_account_may_create_and_watch_trainjobs(objects):
    rules = objects[("Role", "g2l-trainjobs")]["rules"]
    granted = {
        (g, r): set(rule["verbs"]) for rule in rules for g in rule["apiGroups"] for r in rule["resources"]
    }
    assert {"create", "get", "watch"} <= granted[("trainer.kubeflow.org", "trainjobs")]
    assert {"create", "get", "watch"} <= granted[("kubeflow.org", "pytorchjobs")]
    binding = objects[("RoleBinding", "g2l-trainjobs")]
    assert binding["roleRef"]["name"] == "g2l-trainjobs"
    assert {"kind": "ServiceAccount", "name": "g2l-pipeline", "namespace": "g2l"} in binding["subjects"]


def _pod_labels(workload: dict) -> dict:
    return workload["spec"]["template"]["metadata"]["labels"]


@pytest.mark.parametrize(
    ("service", "workload"),
    [
        ("g2l-pushgateway", ("Deployment", "g2l-pushgateway")),
        ("g2l-mlflow", ("Deployment", "g2l-mlflow")),
        ("g2l-postgres", ("StatefulSet", "g2l-postgres")),
    ],
)
def test_services_select_their_pods_and_ports(objects, service, workload):
    svc = objects[("Service", service)]
    pods = objects[workload]
    assert svc["spec"]["selector"].items() <= _pod_labels(pods).items()
    port_names = {
        p["name"] for c in pods["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])
    }
    for port in svc["spec"]["ports"]:
        assert port["targetPort"] in port_names


def test_pipeline_env_points_at_the_rendered_services(objects):
    env = objects[("ConfigMap", ENV_CONFIG_MAP)]["data"]
    assert set(env) == set(ENV_KEYS)
    for key in ENV_KEYS:
        host, port = re.fullmatch(r"http://([^.]+)\.g2l\.svc\.cluster\.local:(\d+)", env[key]).groups()
        assert int(port) in {p["port"] for p in objects[("Service", host)]["spec"]["ports"]}


def test_mlflow_uses_postgres_and_a_gcs_artifact_store(objects):
    container = objects[("Deployment", "g2l-mlflow")]["spec"]["template"]["spec"]["containers"][0]
    args = " ".join(container["args"])
    assert "--backend-store-uri=postgresql://" in args and "@g2l-postgres:5432/" in args
    secret = objects[("Secret", "g2l-postgres")]["stringData"]
    config = objects[("ConfigMap", "g2l-mlflow-config")]["data"]
    for var in container["env"]:
        ref = var["valueFrom"]
        if "secretKeyRef" in ref:
            assert ref["secretKeyRef"]["key"] in secret
        else:
            assert ref["configMapKeyRef"]["key"] in config
    assert config["artifacts_destination"].startswith("gs://")


def test_prometheus_scrapes_the_pushgateway_keeping_pushed_labels(objects):
    jobs = yaml.safe_load(objects[("ConfigMap", "g2l-prometheus-scrape")]["data"]["g2l-pushgateway.yaml"])
    assert jobs[0]["honor_labels"] is True
    assert jobs[0]["static_configs"][0]["targets"] == ["g2l-pushgateway.g2l.svc.cluster.local:9091"]
    pm = objects[("PodMonitoring", "g2l-pushgateway")]
    assert pm["apiVersion"] == "monitoring.googleapis.com/v1"
    assert (
        pm["spec"]["selector"]["matchLabels"].items()
        <= _pod_labels(objects[("Deployment", "g2l-pushgateway")]).items()
    )
    assert pm["spec"]["endpoints"][0]["port"] == "http"


def test_grafana_dashboard_charts_the_stage_metrics(objects):
    cm = objects[("ConfigMap", "g2l-grafana-dashboard")]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    dash = json.loads(cm["data"]["g2l.json"])
    titles = " ".join(p["title"].lower() for p in dash["panels"])
    for wanted in ("tiles/s", "embeddings/s", "loss", "step time", "failures", "promotions"):
        assert wanted in titles
    for panel in dash["panels"]:
        assert all(re.search(r"\bg2l_\w+", t["expr"]) for t in panel["targets"])


def test_dashboard_metrics_are_ones_the_stages_emit(objects):
    dash = json.loads(objects[("ConfigMap", "g2l-grafana-dashboard")]["data"]["g2l.json"])
    charted = {m for p in dash["panels"] for t in p["targets"] for m in re.findall(r"\bg2l_(\w+)", t["expr"])}
    source = "\n".join(p.read_text() for p in (INFRA.parent / "g2l").rglob("*.py"))
    emitted = set(re.findall(r"(?:gauge|counter)\(\s*\"(\w+)\"", source))
    assert charted <= emitted, f"dashboard charts metrics nothing emits: {sorted(charted - emitted)}"


def test_trainer_runtime_is_a_well_formed_torch_runtime_with_gpu_tolerations(objects):
    rt = objects[("ClusterTrainingRuntime", "g2l-torch-distributed")]
    assert rt["apiVersion"] == "trainer.kubeflow.org/v1alpha1"
    assert "namespace" not in rt["metadata"]  # cluster-scoped
    assert rt["spec"]["mlPolicy"]["torch"]["numProcPerNode"] == "auto"
    job = rt["spec"]["template"]["spec"]["replicatedJobs"][0]
    assert job["name"] == "node"
    pod_spec = job["template"]["spec"]["template"]["spec"]
    # The pod template inside the custom resource must itself be a valid pod.
    kubernetes_validate.validate(
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "node"}, "spec": pod_spec},
        K8S_VERSION,
        strict=True,
    )
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod_spec["tolerations"]
    assert pod_spec["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod_spec["nodeSelector"]["cloud.google.com/gke-accelerator"]


@pytest.mark.skipif(kustomize_binary() is None, reason="needs kustomize or kubectl to compare against")
def test_python_renderer_matches_real_kustomize():
    real = {(d["kind"], d["metadata"]["name"]): d for d in render(GKE)}
    ours = {(d["kind"], d["metadata"]["name"]): d for d in render_python(GKE)}
    assert ours == real


def test_dockerfile_builds_the_project_image_on_cuda_runtime():
    text = (INFRA / "Dockerfile").read_text()
    base = re.search(r"ARG CUDA_IMAGE=(\S+)", text)[1]
    assert base.startswith("nvidia/cuda:") and "runtime" in base
    assert "python3.11" in text
    assert re.search(r"pip install --index-url \$\{TORCH_INDEX\} \"torch", text)
    assert "cucim-cu12" in text
    for part in ("g2l", "components", "pipelines", "configs"):
        assert f"COPY {part} ./{part}" in text
    assert "docker build -f infra/Dockerfile" in text and "docker push" in text
