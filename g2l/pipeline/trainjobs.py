"""The distillation step: torchrun in this pod, or a multi-node Kubeflow TrainJob created and awaited."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from g2l.pipeline.io import distill_dir, run_id

NAMESPACE_ENV = "G2L_NAMESPACE"
SERVICE_ACCOUNT_ENV = "G2L_SERVICE_ACCOUNT"
RUNTIME = "g2l-torch-distributed"  # infra/k8s/cluster/trainer-runtime.yaml
DONE = {"Complete", "Succeeded"}
FAILED = {"Failed"}


class TrainJobFailed(RuntimeError):
    """The TrainJob/PyTorchJob ended in a failed state (the message carries its condition)."""


def _plural(manifest: dict[str, Any]) -> tuple[str, str, str]:
    group, version = manifest["apiVersion"].split("/")
    return group, version, manifest["kind"].lower() + "s"


def _custom_objects_api() -> Any:
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.CustomObjectsApi()


def run_job(
    manifest: dict[str, Any],
    *,
    api: Any = None,
    poll_s: float = 30.0,
    timeout_s: float = 7 * 24 * 3600,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Create the job (or adopt it when a retried pod finds it already there) and wait for it to finish.

    Every change of the job's conditions is logged as it happens, so the kfp task's log shows the
    job's progress. Returns the final object; raises TrainJobFailed on failure or timeout.
    """
    from kubernetes.client.exceptions import ApiException

    from g2l.progress import console

    say = log or (lambda msg: console.print(msg))
    api = api or _custom_objects_api()
    group, version, plural = _plural(manifest)
    ns, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
    try:
        api.create_namespaced_custom_object(group, version, ns, plural, manifest)
        say(f"{manifest['kind']} {ns}/{name} created")
    except ApiException as exc:
        if exc.status != 409:
            raise
        say(f"{manifest['kind']} {ns}/{name} already exists (a retried step): waiting for it")
    seen: set[tuple[str, str, str]] = set()
    deadline = time.monotonic() + timeout_s
    while True:
        obj = api.get_namespaced_custom_object(group, version, ns, plural, name)
        for cond in (obj.get("status") or {}).get("conditions") or []:
            key = (cond.get("type", ""), cond.get("status", ""), cond.get("reason", ""))
            if key not in seen:
                seen.add(key)
                message = cond.get("message", "")
                say(f"{manifest['kind']} {name}: {key[0]}={key[1]} {key[2]} {message}".rstrip())
            if cond.get("status") == "True" and cond.get("type") in DONE:
                return obj
            if cond.get("status") == "True" and cond.get("type") in FAILED:
                raise TrainJobFailed(
                    f"{manifest['kind']} {ns}/{name} failed: {cond.get('reason', '')} "
                    f"{cond.get('message', '')}".rstrip()
                )
        if time.monotonic() > deadline:
            raise TrainJobFailed(f"{manifest['kind']} {ns}/{name} did not finish within {timeout_s:.0f}s")
        time.sleep(poll_s)


def distill(
    *,
    shards: str,
    cache: str,
    config_uri: str,
    artifact_root: str,
    student: str,
    gpus: int,
    nodes: int,
    max_steps: int,
    image: str,
    cancer: str,
    api: Any = None,
    poll_s: float = 30.0,
) -> str:
    """Distil the student: in this pod for one node, else as a TrainJob over `nodes` x `gpus` GPUs."""
    from g2l.pipeline.steps import distill_local

    if nodes <= 1:
        return distill_local(
            cache=cache,
            config_uri=config_uri,
            artifact_root=artifact_root,
            student=student,
            gpus=gpus,
            max_steps=max_steps,
            cancer=cancer,
        )
    from g2l import distill as distill_stage
    from g2l import storage
    from g2l.distill.emit import JobSpec, render_trainjob
    from g2l.distill.launch import distill_args
    from g2l.pipeline.io import load_stage_config

    config = load_stage_config(distill_stage.DistillConfig, config_uri, "distill", student=student or None)
    run_dir = distill_dir(artifact_root, cache=cache, distill_config=config, max_steps=max_steps)
    # Every node reads the same paths: the artifact root must be a filesystem all pods mount (GCS FUSE,
    # Filestore), which is how multi-node training reads its data anyway.
    args = distill_args(
        config_uri,
        shards,
        cache,
        run_dir,
        max_steps=max_steps or None,
        quiet=True,
        run_id=run_id(),
        cancer=cancer,
    )
    job = JobSpec(
        name=f"g2l-{cancer}-{run_dir.rstrip('/').rsplit('/', 1)[-1]}",
        image=image,
        nodes=nodes,
        gpus_per_node=gpus,
        namespace=os.environ.get(NAMESPACE_ENV) or "kubeflow",
        service_account=os.environ.get(SERVICE_ACCOUNT_ENV) or "g2l-pipeline",
        runtime=RUNTIME,
    )
    run_job(render_trainjob(job, args), api=api, poll_s=poll_s)
    return storage.join(run_dir, "student")
