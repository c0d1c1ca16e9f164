"""Multi-node distillation from the pipeline: the TrainJob that reaches the nodes trains with the run's
gs:// config, is created and awaited through the Kubernetes API, is adopted by a retried step, fails the
step when it fails, and is deleted when the run stops (SIGTERM) or ends (the exit handler).

The Kubernetes API is a local HTTP server that answers as the API server does (tests/fixtures/k8s_api.py);
Trainer's merge of the TrainJob into its runtime is tests/fixtures/trainer_merge.py (kubeflow/trainer v2.2.0).
"""

import os
import signal
import threading
from pathlib import Path

import pytest
import yaml

from g2l.pipeline.cleanup import cleanup_run
from g2l.pipeline.trainjobs import (
    RUN_LABEL,
    RUNTIME,
    TrainJobFailed,
    distill_trainjob,
    run_job,
    trainjob_for_run,
)
from tests.fixtures.kustomize import render
from tests.fixtures.trainer_merge import node_argv, node_pod_spec

REPO = Path(__file__).resolve().parents[1]
ROOT = "gs://my-bucket/g2l/brca"
CONFIG = f"{ROOT}/pipeline/config-0123456789abcdef.yaml"


def _cond(kind: str, reason: str = "", message: str = "") -> dict:
    return {"type": kind, "status": "True", "reason": reason, "message": message}


def _trainjob(name: str = "g2l-brca-abc") -> dict:
    return {
        "apiVersion": "trainer.kubeflow.org/v1alpha1",
        "kind": "TrainJob",
        "metadata": {"name": name, "namespace": "g2l", "labels": {RUN_LABEL: "run-1"}},
        "spec": {"runtimeRef": {"name": RUNTIME}},
    }


@pytest.fixture
def trainer_api(k8s_api):
    k8s_api.state.script = [
        [],
        [_cond("Created", "JobSetCreated")],
        [_cond("Created", "JobSetCreated"), _cond("Complete", "JobSetCompleted")],
    ]
    return k8s_api


@pytest.fixture
def run_env(tmp_path, monkeypatch):
    """The environment the KFP driver gives the waiting pod (run id, namespace, its own name and uid)."""
    monkeypatch.setenv("G2L_RUN_ID", "run-1")
    monkeypatch.setenv("G2L_NAMESPACE", "g2l")
    monkeypatch.setenv("G2L_POD_NAME", "g2l-run-1-distill-trainjob")
    monkeypatch.setenv("G2L_POD_UID", "5f1c-uid")
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"distill": {"student": "tiny-vit-student"}}))
    return config


def _emitted(config: Path) -> tuple[dict, str]:
    # The config is read here from a local copy; the job names the pinned gs:// config every node reads.
    manifest, student = trainjob_for_run(
        shards=f"{ROOT}/shards",
        cache=f"{ROOT}/embeddings/key123",
        config_uri=str(config),
        artifact_root=ROOT,
        student="",
        gpus=8,
        nodes=4,
        max_steps=0,
        image="reg/g2l@sha256:" + "a" * 64,
        cancer="brca",
        timeout_s=3600,
    )
    return manifest, student


def test_trainjob_merged_with_our_runtime_runs_g2l_distill_with_a_gs_config(run_env, monkeypatch):
    manifest, student = _emitted(run_env)
    # Swap the local config for the pinned gs:// one the pipeline passes, as pin_inputs returns it.
    args = manifest["spec"]["trainer"]["args"]
    args[args.index("--config") + 1] = CONFIG
    runtime = next(d for d in render(REPO / "infra" / "k8s" / "cluster") if d["metadata"]["name"] == RUNTIME)
    pod = node_pod_spec(manifest, runtime)
    argv = node_argv(pod)
    assert argv[:3] == ["torchrun", "-m", "g2l.distill"] and "--help" not in argv
    assert argv[argv.index("--config") + 1] == CONFIG
    assert argv[argv.index("--shards") + 1] == f"{ROOT}/shards"
    assert argv[argv.index("--cache") + 1] == f"{ROOT}/embeddings/key123"
    out = argv[argv.index("--out") + 1]
    assert out.startswith("/gcs/g2l/brca/distill/") and student == f"gs://my-bucket/{out[5:]}/student"
    node = next(c for c in pod["containers"] if c["name"] == "node")
    assert node["image"].endswith("a" * 64) and node["resources"]["limits"]["nvidia.com/gpu"] == "8"
    assert {"name": "gcs", "mountPath": "/gcs"} in node["volumeMounts"]  # the bucket, on every node
    assert {"name": "dshm", "mountPath": "/dev/shm"} in node["volumeMounts"]
    gcs = next(v for v in pod["volumes"] if v["name"] == "gcs")
    assert gcs["csi"]["volumeAttributes"]["bucketName"] == "my-bucket"
    assert {e["name"] for e in node["env"]} >= {"G2L_RUN_ID", "G2L_PUSHGATEWAY", "HF_TOKEN"}
    assert manifest["spec"]["activeDeadlineSeconds"] == 3600
    # Trainer v2.2.0 jobset.go validates a patch's manager with IsDomainPrefixedPath ("domain/path").
    manager = manifest["spec"]["runtimePatches"][0]["manager"]
    assert "/" in manager and "." in manager.split("/")[0]
    # Owned by the waiting pod: deleting that pod deletes the job (Kubernetes garbage collection).
    assert manifest["metadata"]["ownerReferences"] == [
        {"apiVersion": "v1", "kind": "Pod", "name": "g2l-run-1-distill-trainjob", "uid": "5f1c-uid"}
    ]
    assert manifest["metadata"]["labels"][RUN_LABEL] == "run-1"


def test_a_trainjob_that_sets_only_a_command_would_not_train(run_env):
    """Trainer keeps the runtime's args when the TrainJob sets none: with ours the node fails at once."""
    manifest, _ = _emitted(run_env)
    trainer = manifest["spec"]["trainer"]
    trainer["command"] = trainer["command"] + trainer.pop("args")  # the emission before this fix
    runtime = next(d for d in render(REPO / "infra" / "k8s" / "cluster") if d["metadata"]["name"] == RUNTIME)
    argv = node_argv(node_pod_spec(manifest, runtime))
    assert argv[-2:] == ["-m", "g2l.distill"]  # the runtime's args appended: a second, bare module run
    bare = node_argv(node_pod_spec({"spec": {"trainer": {}}}, runtime))
    assert bare == ["torchrun", "-m", "g2l.distill"] and "--help" not in bare  # exits 2: --config required


def test_non_gcs_root_is_refused_for_a_trainjob(run_env, tmp_path):
    from g2l.config import ConfigError

    with pytest.raises(ConfigError, match="gs:// artifact_root"):
        trainjob_for_run(
            shards="s",
            cache="c",
            config_uri=str(run_env),
            artifact_root=str(tmp_path),
            student="",
            gpus=1,
            nodes=2,
            max_steps=0,
            image="i",
            cancer="brca",
        )


def test_job_is_created_and_awaited_with_its_status_streamed(trainer_api):
    api = trainer_api.custom_objects()
    lines: list[str] = []
    final = run_job(_trainjob(), api=api, poll_s=0, log=lines.append)
    assert trainer_api.state.objects["g2l/trainjobs/g2l-brca-abc"]["spec"]["runtimeRef"]["name"] == RUNTIME
    assert final["status"]["conditions"][-1]["type"] == "Complete"
    assert lines[0] == "TrainJob g2l/g2l-brca-abc created"
    assert any("Created=True JobSetCreated" in line for line in lines)
    assert lines[-1].startswith("TrainJob g2l-brca-abc: Complete=True JobSetCompleted")
    assert sum("Created=True" in line for line in lines) == 1  # each transition once, not every poll


def test_a_retried_step_adopts_the_existing_job(trainer_api):
    api = trainer_api.custom_objects()
    run_job(_trainjob(), api=api, poll_s=0, log=lambda _: None)
    lines: list[str] = []
    run_job(_trainjob(), api=api, poll_s=0, log=lines.append)
    posts = [r for r in trainer_api.state.requests if r[0] == "POST"]
    assert len(posts) == 2 and len(trainer_api.state.objects) == 1
    assert "already exists" in lines[0]


def test_a_failed_job_fails_the_step_with_its_reason(trainer_api):
    trainer_api.state.script = [[_cond("Failed", "BackoffLimitExceeded", "node-1 OOMKilled")]]
    with pytest.raises(TrainJobFailed, match="BackoffLimitExceeded node-1 OOMKilled"):
        run_job(_trainjob(), api=trainer_api.custom_objects(), poll_s=0, log=lambda _: None)


def test_stopping_the_waiting_pod_deletes_the_job(trainer_api):
    """KFP terminating a run kills its pods with SIGTERM: the waiter deletes the TrainJob on the way out."""
    trainer_api.state.script = [[_cond("Created", "JobSetCreated")]]  # runs forever
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    try:
        with pytest.raises(SystemExit) as stopped:
            run_job(_trainjob(), api=trainer_api.custom_objects(), poll_s=0.05, log=lambda _: None)
    finally:
        timer.cancel()
    assert stopped.value.code == 128 + signal.SIGTERM
    assert trainer_api.state.objects == {}
    assert ("DELETE", "/apis/trainer.kubeflow.org/v1alpha1/namespaces/g2l/trainjobs/g2l-brca-abc") in (
        trainer_api.state.requests
    )


def test_the_exit_handler_deletes_the_runs_jobs_and_only_those(trainer_api):
    api = trainer_api.custom_objects()
    for name, run in (("g2l-brca-a", "run-1"), ("g2l-brca-b", "run-1"), ("g2l-prad-c", "run-2")):
        job = _trainjob(name)
        job["metadata"]["labels"] = {RUN_LABEL: run}
        api.create_namespaced_custom_object("trainer.kubeflow.org", "v1alpha1", "g2l", "trainjobs", job)
    done = cleanup_run(k8s_api=api, env={"G2L_RUN_ID": "run-1", "G2L_NAMESPACE": "g2l"}, log=lambda _: None)
    assert done["trainjobs"] == 2
    assert list(trainer_api.state.objects) == ["g2l/trainjobs/g2l-prad-c"]


def test_cleanup_outside_a_cluster_touches_nothing():
    """Under kfp.local there is no Kubernetes: the exit handler returns without calling an API."""
    assert cleanup_run(env={"G2L_RUN_ID": "local-1"}, log=lambda _: None) == {
        "trainjobs": 0,
        "metric_groups": 0,
    }


def test_multi_node_distill_submits_the_job_and_returns_its_gs_student(trainer_api, run_env):
    student = distill_trainjob(
        shards=f"{ROOT}/shards",
        cache=f"{ROOT}/embeddings/key123",
        config_uri=str(run_env),
        artifact_root=ROOT,
        student="",
        gpus=4,
        nodes=2,
        max_steps=0,
        image="reg/g2l:1",
        cancer="brca",
        api=trainer_api.custom_objects(),
        poll_s=0,
    )
    [(key, job)] = trainer_api.state.objects.items()
    assert key.startswith("g2l/trainjobs/g2l-brca-")
    trainer = job["spec"]["trainer"]
    assert trainer["numNodes"] == 2 and trainer["numProcPerNode"] == 4 and trainer["command"] == ["torchrun"]
    assert student.startswith(f"{ROOT}/distill/") and student.endswith("/student")
