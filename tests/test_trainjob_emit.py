"""Emitted multi-node jobs: TrainJob (Trainer v2) and PyTorchJob are well formed and their pods validate."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from g2l.config import ConfigError
from g2l.distill.emit import (
    JobSpec,
    parse_toleration,
    render_pytorchjob,
    render_trainjob,
    trainjob_pod_template,
)

REPO = Path(__file__).resolve().parents[1]
K8S = "1.30.0"
ARGS = [
    "--config",
    "configs/brca.yaml",
    "--shards",
    "gs://b/g2l/shards",
    "--out",
    "/gcs/g2l/runs/r1",
    "--resume",
    "auto",
    "--cache",
    "gs://b/g2l/embeddings/abc",
]


def _validate_pod_template(template: dict) -> None:
    kubernetes_validate.validate(
        {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"}, "template": template},
        K8S,
        strict=True,
    )


def _job(**kw: object) -> JobSpec:
    return JobSpec(
        name="g2l-distill-brca",
        image="ghcr.io/g2l/g2l:1.0",
        nodes=4,
        gpus_per_node=8,
        service_account="g2l-trainer",
        tolerations=(parse_toleration("cloud.google.com/gke-spot=true:NoSchedule"),),
        gcs_bucket="b",
        **kw,
    )


@pytest.mark.parametrize("api", ["v2.2", "v2.0"])
def test_trainjob_structure_and_pod(api: str) -> None:
    obj = render_trainjob(_job(trainer_api=api), ARGS)
    assert obj["apiVersion"] == "trainer.kubeflow.org/v1alpha1" and obj["kind"] == "TrainJob"
    spec = obj["spec"]
    assert spec["runtimeRef"]["name"] == "torch-distributed"
    trainer = spec["trainer"]
    assert trainer["numNodes"] == 4 and trainer["numProcPerNode"] == 8
    assert trainer["resourcesPerNode"]["limits"]["nvidia.com/gpu"] == "8"
    # Command and args both set: Trainer copies each only when the TrainJob sets it (kubeflow/trainer
    # v2.2.0 pkg/runtime/framework/plugins/jobset/builder.go), so none of the runtime's survives.
    assert trainer["command"] == ["torchrun"] and trainer["args"] == ["-m", "g2l.distill", *ARGS]
    pod = trainjob_pod_template(obj)
    assert pod["spec"]["serviceAccountName"] == "g2l-trainer"
    # RUN_DIR lives on the bucket, mounted by the GCS FUSE CSI driver (a shared filesystem for all ranks)
    assert pod["metadata"]["annotations"] == {"gke-gcsfuse/volumes": "true"}
    assert pod["spec"]["volumes"][0]["csi"]["volumeAttributes"]["bucketName"] == "b"
    assert pod["spec"]["containers"][0]["volumeMounts"] == [{"name": "gcs", "mountPath": "/gcs"}]
    assert {
        "key": "cloud.google.com/gke-spot",
        "operator": "Equal",
        "value": "true",
        "effect": "NoSchedule",
    } in pod["spec"]["tolerations"]
    assert ("runtimePatches" in spec) == (api == "v2.2") and ("podTemplateOverrides" in spec) == (
        api == "v2.0"
    )
    _validate_pod_template(pod)


def test_pytorchjob_master_and_workers_validate() -> None:
    obj = render_pytorchjob(_job(), ARGS)
    assert obj["apiVersion"] == "kubeflow.org/v1" and obj["kind"] == "PyTorchJob"
    replicas = obj["spec"]["pytorchReplicaSpecs"]
    assert replicas["Master"]["replicas"] == 1 and replicas["Worker"]["replicas"] == 3
    assert obj["spec"]["nprocPerNode"] == "8"
    for role in ("Master", "Worker"):
        template = replicas[role]["template"]
        container = template["spec"]["containers"][0]
        assert container["name"] == "pytorch" and container["command"][3:] == ARGS
        # a preempted run exits 143 after its checkpoint: the operator must restart it, not finish
        assert replicas[role]["restartPolicy"] == "ExitCode"
        assert container["resources"]["requests"]["nvidia.com/gpu"] == "8"
        assert container["volumeMounts"][0]["mountPath"] == "/gcs"
        _validate_pod_template(template)
    single = render_pytorchjob(JobSpec(name="one", image="img", nodes=1), ARGS)
    assert set(single["spec"]["pytorchReplicaSpecs"]) == {"Master"}


def test_broken_pod_fails_validation() -> None:
    pod = trainjob_pod_template(render_trainjob(_job(), ARGS))
    pod["spec"]["tolerations"] = "not-a-list"
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate_pod_template(pod)


def test_bad_job_names_are_rejected() -> None:
    with pytest.raises(ConfigError, match="DNS label"):
        JobSpec(name="G2L_Distill", image="img")


def test_cli_emits_trainjob_with_same_args(tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "g2l",
        "distill",
        "--config",
        "configs/brca.yaml",
        "--shards",
        "/data/shards",
        "--cache",
        "/data/embeddings/k",
        "--out",
        "/data/runs/r1",
        "--emit",
        "trainjob",
        "--nodes",
        "2",
        "--gpus-per-node",
        "4",
        "--image",
        "ghcr.io/g2l/g2l:1.0",
        "--toleration",
        "dedicated=gpu:NoSchedule",
    ]
    done = subprocess.run(cmd, cwd=REPO, env=os.environ, capture_output=True, text=True, check=True)
    obj = yaml.safe_load(done.stdout)
    command = obj["spec"]["trainer"]["command"] + obj["spec"]["trainer"]["args"]
    assert command[:3] == ["torchrun", "-m", "g2l.distill"]
    assert command[command.index("--shards") + 1] == "/data/shards"
    assert command[command.index("--cache") + 1] == "/data/embeddings/k"
    assert obj["spec"]["trainer"]["numNodes"] == 2
    _validate_pod_template(trainjob_pod_template(obj))


def test_run_dir_on_gs_is_refused_with_the_fix(tmp_path: Path) -> None:
    from g2l.distill import DistillConfig, run_distill

    with pytest.raises(ConfigError, match="GCS FUSE"):
        run_distill(DistillConfig(), str(tmp_path), None, "gs://b/g2l/runs/r1")
