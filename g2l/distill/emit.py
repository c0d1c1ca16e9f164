"""Render multi-node distillation jobs: a Kubeflow Trainer v2 TrainJob, or a Training Operator PyTorchJob.

Both run `torchrun -m g2l.distill <the same args as g2l distill>` on every node; torchrun takes the node
count, node rank and rendezvous address from the PET_* variables the operators set. The TrainJob
targets the `torch-distributed` ClusterTrainingRuntime (replicated job `node`, container `node`);
its pod changes (service account, tolerations) go in `runtimePatches` (Trainer >= v2.2) or
`podTemplateOverrides` (v2.0/v2.1, `trainer_api="v2.0"`).

Trainer copies `trainer.command` and `trainer.args` onto the runtime's `node` container each on its own,
only when the TrainJob sets it (kubeflow/trainer v2.2.0 pkg/runtime/framework/plugins/jobset/builder.go,
`Builder.Trainer`): a TrainJob that sets only a command keeps the runtime's args. So the TrainJob sets
both: command `torchrun`, args `-m g2l.distill ...`.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from g2l.config import require

TRAINJOB_API = "trainer.kubeflow.org/v1alpha1"
PYTORCHJOB_API = "kubeflow.org/v1"
TRAINER_APIS = ("v2.2", "v2.0")
# A runtime patch's manager must be a domain-prefixed path (Trainer v2.2.0 jobset.go validation:
# `validation.IsDomainPrefixedPath`); "g2l.distill" alone is rejected by the admission webhook.
PATCH_MANAGER = "g2l.io/distill"
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


@dataclasses.dataclass(frozen=True, kw_only=True)
class JobSpec:
    """What a multi-node distillation job needs besides the distill arguments."""

    name: str
    image: str
    nodes: int = 1
    gpus_per_node: int = 1
    namespace: str = "kubeflow"
    service_account: str = "g2l"
    cpu_per_node: str = "8"
    memory_per_node: str = "64Gi"
    tolerations: tuple[dict[str, str], ...] = (GPU_TOLERATION,)
    runtime: str = "torch-distributed"
    trainer_api: str = "v2.2"
    gcs_bucket: str | None = None  # mounted with the GKE GCS FUSE CSI driver at `gcs_mount_path`
    gcs_mount_path: str = "/gcs"
    labels: tuple[tuple[str, str], ...] = ()  # extra metadata labels (e.g. the KFP run id)
    env: tuple[dict[str, Any], ...] = ()  # core/v1 EnvVars for the node container (Trainer merges them)
    owner: dict[str, Any] | None = None  # an ownerReference: deleting the owner deletes the job
    active_deadline_s: int = 0  # TrainJob spec.activeDeadlineSeconds (0 = none)
    shm_gi: int = 0  # size of a memory-backed /dev/shm for NCCL and DataLoader workers (0 = runtime's)

    def __post_init__(self) -> None:
        require(
            bool(_NAME.match(self.name)) and len(self.name) <= 63,
            f"--name {self.name!r} must be a DNS label (lower-case letters, digits, '-', <= 63 chars)",
        )
        require(bool(self.image), "--image must name the container image that has g2l installed")
        require(self.nodes >= 1, f"--nodes must be >= 1, got {self.nodes}")
        require(self.gpus_per_node >= 1, f"--gpus-per-node must be >= 1, got {self.gpus_per_node}")
        require(
            self.trainer_api in TRAINER_APIS,
            f"trainer_api must be one of {TRAINER_APIS}, got {self.trainer_api!r}",
        )


def parse_toleration(text: str) -> dict[str, str]:
    """`key[=value]:Effect` (or `key` alone) -> a core/v1 Toleration."""
    key_value, _, effect = text.partition(":")
    key, eq, value = key_value.partition("=")
    tol = {"key": key, "operator": "Equal" if eq else "Exists"}
    if eq:
        tol["value"] = value
    if effect:
        require(
            effect in ("NoSchedule", "PreferNoSchedule", "NoExecute"),
            f"toleration {text!r}: effect must be NoSchedule, PreferNoSchedule or NoExecute",
        )
        tol["effect"] = effect
    return tol


def torchrun_command(distill_args: list[str]) -> list[str]:
    """The node command: torchrun (configured by PET_* env) running the g2l.distill worker."""
    return ["torchrun", "-m", "g2l.distill", *distill_args]


def trainer_entrypoint(distill_args: list[str]) -> tuple[list[str], list[str]]:
    """(command, args) of the TrainJob's trainer: both set, so none of the runtime's survives the merge."""
    full = torchrun_command(distill_args)
    return full[:1], full[1:]


def _resources(job: JobSpec) -> dict[str, Any]:
    amounts = {
        "cpu": job.cpu_per_node,
        "memory": job.memory_per_node,
        "nvidia.com/gpu": str(job.gpus_per_node),
    }
    return {"requests": dict(amounts), "limits": dict(amounts)}


def _gcs_volume(job: JobSpec) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    """(volume, volumeMount, pod annotations) mounting the bucket through the GCS FUSE CSI driver."""
    volume = {
        "name": "gcs",
        "csi": {
            "driver": "gcsfuse.csi.storage.gke.io",
            "volumeAttributes": {"bucketName": str(job.gcs_bucket), "mountOptions": "implicit-dirs"},
        },
    }
    return volume, {"name": "gcs", "mountPath": job.gcs_mount_path}, {"gke-gcsfuse/volumes": "true"}


def render_trainjob(job: JobSpec, distill_args: list[str]) -> dict[str, Any]:
    """A Kubeflow Trainer v2 TrainJob running the distillation on nodes x gpus_per_node GPUs."""
    pod_patch: dict[str, Any] = {
        "serviceAccountName": job.service_account,
        "tolerations": [dict(t) for t in job.tolerations],
    }
    pod_meta: dict[str, Any] = {}
    volumes, mounts = [], []
    if job.gcs_bucket:
        volume, mount, annotations = _gcs_volume(job)
        volumes.append(volume)
        mounts.append(mount)
        pod_meta = {"metadata": {"annotations": annotations}}
    if job.shm_gi:
        volumes.append({"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": f"{job.shm_gi}Gi"}})
        mounts.append({"name": "dshm", "mountPath": "/dev/shm"})
    if volumes:
        pod_patch["volumes"] = volumes
        pod_patch["containers"] = [{"name": "node", "volumeMounts": mounts}]
    command, args = trainer_entrypoint(distill_args)
    trainer: dict[str, Any] = {
        "image": job.image,
        "command": command,
        "args": args,
        "numNodes": job.nodes,
        "numProcPerNode": job.gpus_per_node,
        "resourcesPerNode": _resources(job),
    }
    if job.env:
        trainer["env"] = [dict(e) for e in job.env]
    spec: dict[str, Any] = {
        "runtimeRef": {
            "name": job.runtime,
            "apiGroup": "trainer.kubeflow.org",
            "kind": "ClusterTrainingRuntime",
        },
        "trainer": trainer,
    }
    if job.active_deadline_s:
        spec["activeDeadlineSeconds"] = job.active_deadline_s
    if job.trainer_api == "v2.2":
        spec["runtimePatches"] = [
            {
                "manager": PATCH_MANAGER,
                "trainingRuntimeSpec": {
                    "template": {
                        "spec": {
                            "replicatedJobs": [
                                {
                                    "name": "node",
                                    "template": {"spec": {"template": {**pod_meta, "spec": pod_patch}}},
                                }
                            ]
                        }
                    }
                },
            }
        ]
    else:
        spec["podTemplateOverrides"] = [{"targetJobs": [{"name": "node"}], **pod_meta, "spec": pod_patch}]
    metadata: dict[str, Any] = {
        "name": job.name,
        "namespace": job.namespace,
        "labels": {"app.kubernetes.io/part-of": "g2l", **dict(job.labels)},
    }
    if job.owner:
        metadata["ownerReferences"] = [dict(job.owner)]
    return {"apiVersion": TRAINJOB_API, "kind": "TrainJob", "metadata": metadata, "spec": spec}


def trainjob_pod_template(trainjob: dict[str, Any]) -> dict[str, Any]:
    """The pod template of a TrainJob `node` (trainer fields + pod patch), as a core/v1 PodTemplateSpec."""
    spec = trainjob["spec"]
    trainer = spec["trainer"]
    if "runtimePatches" in spec:
        rjob = spec["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0]
        template = rjob["template"]["spec"]["template"]
        patch, meta = template["spec"], template.get("metadata", {})
    else:
        override = spec["podTemplateOverrides"][0]
        patch, meta = override["spec"], override.get("metadata", {})
    container: dict[str, Any] = {
        "name": "node",
        "image": trainer["image"],
        "command": trainer["command"],
        "args": trainer.get("args", []),
        "resources": trainer["resourcesPerNode"],
    }
    if trainer.get("env"):
        container["env"] = trainer["env"]
    for extra in patch.get("containers", []):
        if extra["name"] == "node":
            container.update({k: v for k, v in extra.items() if k != "name"})
    pod_spec = {k: v for k, v in patch.items() if k != "containers"}
    labels = dict(trainjob["metadata"].get("labels", {}))
    return {
        "metadata": {"labels": labels, **meta},
        "spec": {**pod_spec, "containers": [container], "restartPolicy": "OnFailure"},
    }


def render_pytorchjob(job: JobSpec, distill_args: list[str]) -> dict[str, Any]:
    """A Training Operator (kubeflow.org/v1) PyTorchJob: one Master plus nodes - 1 Workers."""

    def template() -> dict[str, Any]:
        container: dict[str, Any] = {  # the operator requires the container to be named "pytorch"
            "name": "pytorch",
            "image": job.image,
            "command": torchrun_command(distill_args),
            "resources": _resources(job),
        }
        pod: dict[str, Any] = {
            "metadata": {"labels": {"app.kubernetes.io/part-of": "g2l"}},
            "spec": {
                "serviceAccountName": job.service_account,
                "tolerations": [dict(t) for t in job.tolerations],
                "containers": [container],
            },
        }
        if job.gcs_bucket:
            volume, mount, annotations = _gcs_volume(job)
            pod["metadata"]["annotations"] = annotations
            pod["spec"]["volumes"] = [volume]
            container["volumeMounts"] = [mount]
        return pod

    replicas: dict[str, Any] = {
        # ExitCode: the operator restarts pods that exit with a retryable code (128+signal, e.g. the
        # 143 a preempted run exits with after its checkpoint) and fails on 1-127 (real errors).
        "Master": {"replicas": 1, "restartPolicy": "ExitCode", "template": template()}
    }
    if job.nodes > 1:
        replicas["Worker"] = {"replicas": job.nodes - 1, "restartPolicy": "ExitCode", "template": template()}
    return {
        "apiVersion": PYTORCHJOB_API,
        "kind": "PyTorchJob",
        "metadata": {
            "name": job.name,
            "namespace": job.namespace,
            "labels": {"app.kubernetes.io/part-of": "g2l"},
        },
        "spec": {
            "nprocPerNode": str(job.gpus_per_node),
            "runPolicy": {"cleanPodPolicy": "None", "backoffLimit": 10},
            "pytorchReplicaSpecs": replicas,
        },
    }


def to_yaml(obj: dict[str, Any]) -> str:
    """YAML text of a rendered manifest (key order kept)."""
    import yaml

    return yaml.safe_dump(obj, sort_keys=False)
