"""`g2l pipeline preflight`: the shipped configs pass offline; each broken rule fails with its reason and
fix; the live rules read the KFP API, the Kubernetes API and a real MLflow server.

KFP and Kubernetes are local servers answering as the real ones do (tests/fixtures/kfp_api.py,
tests/fixtures/k8s_api.py); MLflow is the real `mlflow server` (3.x) started here.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from g2l.pipeline.preflight import static_checks
from pipelines.compile import DEFAULT_OUT
from pipelines.kfp_api import client
from pipelines.preflight import live_checks

REPO = Path(__file__).resolve().parents[1]
CLUSTER_MLFLOW = "http://g2l-mlflow.g2l.svc.cluster.local:5000"


def _failed(checks) -> dict[str, str]:
    return {c.rule: c.message for c in checks if not c.ok}


@pytest.fixture
def brca(tmp_path) -> Path:
    shutil.copy(REPO / "configs" / "brca.yaml", tmp_path / "brca.yaml")
    return tmp_path / "brca.yaml"


def _edit(path: Path, fn) -> Path:
    data = yaml.safe_load(path.read_text())
    fn(data)
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("cancer", ["brca", "prad"])
def test_shipped_configs_pass_offline(cancer):
    checks = static_checks(REPO / "configs" / f"{cancer}.yaml", DEFAULT_OUT, REPO)
    assert _failed(checks) == {}
    assert {c.rule for c in checks} >= {
        "artifact-root",
        "manifest",
        "benchmarks",
        "gpu-counts",
        "resource-counts",
        "cpu",
        "image",
        "weights",
        "budgets",
    }


def test_each_broken_rule_fails_with_its_reason(brca, tmp_path):
    def broken(d):
        d["run"]["artifact_root"] = "/data/g2l/brca"  # pod-local
        d["manifest"]["rev"] = None  # unpinned
        d["pipeline"]["benchmarks"] = []  # nothing to gate on
        d["pipeline"]["distill_cpu"] = "4"  # 8 ranks x 9 processes do not fit

    failed = _failed(static_checks(_edit(brca, broken), DEFAULT_OUT, REPO))
    assert set(failed) == {"artifact-root", "manifest", "benchmarks", "cpu"}
    assert "gs://YOUR-BUCKET" in failed["artifact-root"]
    assert "unpinned" in failed["manifest"] and "tag or commit" in failed["manifest"]
    assert "pipeline.benchmarks is empty" in failed["benchmarks"]
    assert "distill_cpu=4 < 8 rank(s) x (8 workers + 1) = 72" in failed["cpu"]


def test_a_manifest_on_this_machine_and_local_weights_fail(brca):
    def local(d):
        d["manifest"] = {"path": "/home/me/brca.csv", "rev": None, "repo": None}
        d["embed"]["weights"] = "/home/me/h-optimus-0.safetensors"

    failed = _failed(static_checks(_edit(brca, local), DEFAULT_OUT, REPO))
    assert "pods cannot read it" in failed["manifest"]
    assert "upload the weights to gs://" in failed["weights"]


def test_an_int_gpu_count_fails(brca, tmp_path):
    """A package whose GPU count parameter is an int (what the pipeline compiled to before): the driver's
    GetStringValue() would give the pods no GPU. And a count that is not a whole number in the config."""
    spec, platform = list(yaml.safe_load_all(DEFAULT_OUT.read_text()))
    for defs in [
        spec["root"]["inputDefinitions"],
        *(c.get("inputDefinitions", {}) for c in spec["components"].values()),
    ]:
        for name, param in (defs.get("parameters") or {}).items():
            if name.endswith("distill_gpus"):
                param["parameterType"] = "NUMBER_INTEGER"
    stale = tmp_path / "stale.yaml"
    stale.write_text(yaml.safe_dump(spec) + "---\n" + yaml.safe_dump(platform))
    failed = _failed(static_checks(brca, stale, REPO))
    assert set(failed) == {"resource-counts"}
    assert (
        "distil student: accelerator count comes from distill_gpus of type NUMBER_INTEGER"
        in failed["resource-counts"]
    )
    failed = _failed(
        static_checks(_edit(brca, lambda d: d["pipeline"].update(distill_gpus="eight")), DEFAULT_OUT, REPO)
    )
    assert "pipeline.distill_gpus='eight' must be a whole number >= 1" in failed["gpu-counts"]


def test_an_unpinned_image_and_a_short_budget_fail(brca, tmp_path):
    failed = _failed(
        static_checks(
            _edit(brca, lambda d: d["pipeline"].update(image="ghcr.io/x/g2l:latest")), DEFAULT_OUT, REPO
        )
    )
    assert "not pinned" in failed["image"]
    _edit(brca, lambda d: d["pipeline"].update(image="ghcr.io/g2l-project/g2l:0.1.0"))
    _edit(brca, lambda d: d["pipeline"]["plan"].update(slides=20000))
    failed = _failed(static_checks(brca, DEFAULT_OUT, REPO))
    assert (
        "distill staging" in failed["budgets"]
        and f"g2l pipeline compile --config {brca}" in failed["budgets"]
    )


def test_the_cli_prints_one_line_per_failed_rule_and_exits_1(brca):
    _edit(brca, lambda d: d["run"].update(artifact_root="out/brca"))
    proc = subprocess.run(
        [sys.executable, "-m", "g2l", "pipeline", "preflight", "--config", str(brca)],
        cwd=REPO,
        env=os.environ,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert [line for line in proc.stdout.splitlines() if line.startswith("FAIL")] == [
        "FAIL artifact-root: run.artifact_root 'out/brca' is pod-local: steps share nothing through it; "
        "set it to gs://YOUR-BUCKET/g2l/<cancer> (the bucket the pipeline's service account may write)"
    ]


def test_live_rules_pass_on_a_ready_cluster_and_name_what_is_missing(kfp_api_server, ready_cluster, brca):
    api = client(kfp_api_server.url)
    ok = live_checks(brca, api=api, namespace="", core=ready_cluster.core())
    assert _failed(ok) == {}
    assert any(c.rule == "kfp-backend" and "2.16.1" in c.message for c in ok)

    del ready_cluster.state.core["kubeflow/secrets/g2l-hf-token"]
    kfp_api_server.state.tag_name = "2.14.0"
    kfp_api_server.state.multi_user = True
    failed = _failed(live_checks(brca, api=api, namespace="", core=ready_cluster.core()))
    assert "older than 2.15.0" in failed["kfp-backend"]
    assert "--namespace PROFILE" in failed["kfp-namespace"]
    assert "kubectl -n kubeflow create secret generic g2l-hf-token" in failed["secrets"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """A real MLflow 3 server with the rendered manifest's --allowed-hosts and basic-auth app (the auth user
    store on sqlite here, on Postgres in the cluster)."""
    from tests.test_infra_manifests import mlflow_allowed_hosts, mlflow_command

    assert "--app-name basic-auth" in mlflow_command()
    port = _free_port()
    root = tmp_path_factory.mktemp("mlflow")
    ini = root / "basic_auth.ini"
    ini.write_text(
        "[mlflow]\ndefault_permission = READ\n"
        f"database_uri = sqlite:///{root}/auth.db\nadmin_username = admin\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    env = {
        **os.environ,
        "MLFLOW_AUTH_CONFIG_PATH": str(ini),
        "MLFLOW_AUTH_ADMIN_PASSWORD": "test-admin-password",
        "MLFLOW_FLASK_SERVER_SECRET_KEY": "test-secret-key",
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            f"sqlite:///{root}/mlflow.db",
            "--default-artifact-root",
            str(root / "art"),
            "--app-name",
            "basic-auth",
            "--allowed-hosts",
            mlflow_allowed_hosts(),
            "--workers",
            "1",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its uvicorn workers share the group: stopped together below
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("mlflow server did not start")
    yield url
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_mlflow_accepts_the_in_cluster_host_it_is_configured_for(mlflow_server):
    from g2l.pipeline.preflight_live import check_mlflow

    accepted = check_mlflow(mlflow_server, CLUSTER_MLFLOW)
    assert accepted.ok and "requires credentials" in accepted.message  # basic-auth answers 401, not 403
    # A name outside --allowed-hosts: MLflow's host validation answers 403 (security_utils.INVALID_HOST_MSG).
    other = check_mlflow(mlflow_server, "http://mlflow.elsewhere.svc.cluster.local:5000")
    assert not other.ok and "add it to the server's --allowed-hosts" in other.message
