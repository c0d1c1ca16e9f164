"""What the pipeline expects of the cluster, in one place: ConfigMap keys, Secrets, the KFP backend.

The pipeline DAG (pipelines/g2l_pipeline.py), the TrainJob nodes, `g2l pipeline preflight` and the
infra/ manifests' tests all read these names, so a rename cannot leave one of them behind.
"""

from __future__ import annotations

import dataclasses

# Cluster-wide settings reach components as environment variables from this ConfigMap (kfp-kubernetes
# `use_config_map_as_env`, optional) rather than as pipeline parameters, so they stay out of cache keys.
ENV_CONFIG_MAP = "g2l-pipeline-env"
ENV_KEYS = {
    "pushgateway": "G2L_PUSHGATEWAY",
    "mlflow_tracking_uri": "MLFLOW_TRACKING_URI",
    "benchmark_data": "G2L_DATA",
    "metrics_delete_finished": "G2L_METRICS_DELETE_FINISHED",
}


@dataclasses.dataclass(frozen=True)
class SecretRef:
    """A Secret the operator creates (never a file in this repository) and the env vars it feeds."""

    name: str
    keys: dict[str, str]  # secret key -> environment variable
    why: str
    create: str  # the documented command that creates it


SECRETS: dict[str, SecretRef] = {
    "hf_token": SecretRef(
        name="g2l-hf-token",
        keys={"HF_TOKEN": "HF_TOKEN"},
        why="gated Hugging Face models (H-optimus-0, UNI, Virchow2, Hibou-L) without a gs:// mirror",
        create="kubectl -n NS create secret generic g2l-hf-token --from-literal=HF_TOKEN=hf_...",
    ),
    "git": SecretRef(
        name="g2l-git-credentials",
        keys={"GIT_USERNAME": "GIT_USERNAME", "GIT_PASSWORD": "GIT_PASSWORD"},
        why="a private manifest repository (manifest.repo over https)",
        create="kubectl -n NS create secret generic g2l-git-credentials "
        "--from-literal=GIT_USERNAME=x-access-token --from-literal=GIT_PASSWORD=<token>",
    ),
    "mlflow": SecretRef(
        name="g2l-mlflow-auth",
        keys={
            "MLFLOW_TRACKING_USERNAME": "MLFLOW_TRACKING_USERNAME",
            "MLFLOW_TRACKING_PASSWORD": "MLFLOW_TRACKING_PASSWORD",
        },
        why="the MLflow server's basic-auth app (evaluate reads the champion, promote registers)",
        create="kubectl -n NS create secret generic g2l-mlflow-auth "
        "--from-literal=MLFLOW_TRACKING_USERNAME=g2l-pipeline "
        "--from-literal=MLFLOW_TRACKING_PASSWORD=<password>",
    ),
}

# GKE labels GPU nodes with their accelerator and taints them `nvidia.com/gpu=present:NoSchedule`.
GPU_RESOURCE = "nvidia.com/gpu"
GPU_NODE_LABEL = "cloud.google.com/gke-accelerator"
GPU_NODE_TYPE = "nvidia-h100-80gb"
STAGING_MOUNT = "/cache"  # the image's HF_HOME, G2L_CACHE_DIR and TMPDIR live under it (infra/Dockerfile)

# The oldest KFP backend the compiled pipeline runs on: dsl.Collected parameters (kubeflow/pipelines
# ed828b513a, first in 2.14.0) and optional ConfigMap/Secret env vars (55ec8469d5, first in 2.15.0).
MIN_KFP_BACKEND = (2, 15, 0)
