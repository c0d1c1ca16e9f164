"""Multi-node distillation from the pipeline: a Kubeflow TrainJob created, awaited and cleaned up.

The waiting step requests no GPU (the TrainJob's nodes do). The job carries the run's id as a label and
an ownerReference to the waiting pod; the waiter deletes it when it is told to stop (a terminated KFP
run kills its pods), and the pipeline's exit handler deletes every job of the run (`delete_run_jobs`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

from g2l.config import ConfigError
from g2l.pipeline.io import distill_dir, run_id

NAMESPACE_ENV = "G2L_NAMESPACE"
SERVICE_ACCOUNT_ENV = "G2L_SERVICE_ACCOUNT"
POD_NAME_ENV = "G2L_POD_NAME"
POD_UID_ENV = "G2L_POD_UID"
RUNTIME = "g2l-torch-distributed"  # infra/k8s/cluster/trainer-runtime.yaml
RUN_LABEL = "pipelines.kubeflow.org/run-id"  # the KFP run a job belongs to (delete_run_jobs selects on it)
GCS_MOUNT = "/gcs"  # where TrainJob nodes mount the artifact bucket (GCS FUSE CSI driver)
DONE = {"Complete", "Succeeded"}
FAILED = {"Failed"}
TRAINJOB_GROUP, TRAINJOB_VERSION, TRAINJOB_PLURAL = "trainer.kubeflow.org", "v1alpha1", "trainjobs"


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


def delete_job(manifest: dict[str, Any], api: Any, log: Callable[[str], None]) -> None:
    """Delete the job (its pods go with it: background propagation); a missing job is fine."""
    from kubernetes.client.exceptions import ApiException

    group, version, plural = _plural(manifest)
    ns, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
    try:
        api.delete_namespaced_custom_object(
            group, version, ns, plural, name, body={"propagationPolicy": "Background"}
        )
        log(f"{manifest['kind']} {ns}/{name} deleted")
    except ApiException as exc:
        if exc.status != 404:
            raise


@contextlib.contextmanager
def delete_on_termination(manifest: dict[str, Any], api: Any, log: Callable[[str], None]) -> Iterator[None]:
    """While waiting, a SIGTERM (KFP terminating the run, a node drain) deletes the job, then stops."""

    def stop(signum: int, frame: Any) -> None:
        log(f"signal {signum}: deleting {manifest['kind']} {manifest['metadata']['name']} before exiting")
        delete_job(manifest, api, log)
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


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
    with delete_on_termination(manifest, api, say):
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
                delete_job(manifest, api, say)
                raise TrainJobFailed(
                    f"{manifest['kind']} {ns}/{name} did not finish within {timeout_s:.0f}s (deleted)"
                )
            time.sleep(poll_s)


def fuse_path(uri: str, mount: str = GCS_MOUNT) -> str:
    """gs://bucket/a/b -> /gcs/a/b: the same object through the bucket mounted on every TrainJob node."""
    from g2l.storage import split_gs

    _bucket, key = split_gs(uri)
    return f"{mount}/{key}".rstrip("/")


def _owner() -> dict[str, Any] | None:
    """The waiting pod as the job's owner (from the downward API), so deleting the pod deletes the job."""
    name, uid = os.environ.get(POD_NAME_ENV), os.environ.get(POD_UID_ENV)
    if not (name and uid):
        return None
    return {"apiVersion": "v1", "kind": "Pod", "name": name, "uid": uid}


def _node_env(run: str) -> tuple[dict[str, Any], ...]:
    """Environment of every node: run id, metrics and registry addresses, Hugging Face token (optional)."""
    from g2l.pipeline.cluster import ENV_CONFIG_MAP, ENV_KEYS, SECRETS

    env: list[dict[str, Any]] = [{"name": "G2L_RUN_ID", "value": run}]
    for key, var in ENV_KEYS.items():
        ref = {"name": ENV_CONFIG_MAP, "key": key, "optional": True}
        env.append({"name": var, "valueFrom": {"configMapKeyRef": ref}})
    for key, var in SECRETS["hf_token"].keys.items():
        ref = {"name": SECRETS["hf_token"].name, "key": key, "optional": True}
        env.append({"name": var, "valueFrom": {"secretKeyRef": ref}})
    return tuple(env)


def trainjob_for_run(
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
    timeout_s: int = 0,
    shm_gi: int = 64,
) -> tuple[dict[str, Any], str]:
    """The TrainJob of this run's distillation and the gs:// URI its student will be exported to.

    Config, shards and cache are read from gs:// on every node; the run directory (checkpoints renamed
    into place) is the same bucket mounted by the GCS FUSE CSI driver, so a restarted node resumes.
    """
    from g2l import distill as distill_stage
    from g2l import storage
    from g2l.distill.emit import JobSpec, render_trainjob
    from g2l.distill.launch import distill_args
    from g2l.pipeline.io import load_stage_config

    if not storage.is_remote(artifact_root):
        raise ConfigError(
            f"distill_nodes > 1 needs a gs:// artifact_root that every TrainJob node reads (got "
            f"{artifact_root}); set run.artifact_root to gs://BUCKET/... or run with distill_nodes=1"
        )
    config = load_stage_config(distill_stage.DistillConfig, config_uri, "distill", student=student or None)
    run_dir = distill_dir(artifact_root, cache=cache, distill_config=config, max_steps=max_steps)
    bucket, _ = storage.split_gs(artifact_root)
    rid = run_id()
    args = distill_args(
        config_uri,
        shards,
        cache,
        fuse_path(run_dir),
        max_steps=max_steps or None,
        quiet=True,
        run_id=rid,
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
        gcs_bucket=bucket,
        gcs_mount_path=GCS_MOUNT,
        labels=((RUN_LABEL, rid),),
        env=_node_env(rid),
        owner=_owner(),
        active_deadline_s=timeout_s,
        shm_gi=shm_gi,
    )
    return render_trainjob(job, args), storage.join(run_dir, "student")


def distill_trainjob(
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
    timeout_s: int = 0,
    api: Any = None,
    poll_s: float = 30.0,
) -> str:
    """Distil over `nodes` x `gpus` GPUs as a TrainJob; waits for it and returns the student's gs:// URI."""
    from g2l.pipeline.retry import no_retry_on_bad_input

    with no_retry_on_bad_input(artifact_root, "distill"):
        manifest, student_uri = trainjob_for_run(
            shards=shards,
            cache=cache,
            config_uri=config_uri,
            artifact_root=artifact_root,
            student=student,
            gpus=gpus,
            nodes=nodes,
            max_steps=max_steps,
            image=image,
            cancer=cancer,
            timeout_s=timeout_s,
        )
    run_job(manifest, api=api, poll_s=poll_s, timeout_s=timeout_s or 7 * 24 * 3600)
    return student_uri


def delete_run_jobs(
    run: str, namespace: str, *, api: Any = None, log: Callable[[str], None] | None = None
) -> int:
    """Delete every TrainJob labelled with this run's id (the pipeline's exit handler); returns how many."""
    from kubernetes.client.exceptions import ApiException

    from g2l.progress import console

    say = log or (lambda msg: console.print(msg))
    api = api or _custom_objects_api()
    try:
        found = api.list_namespaced_custom_object(
            TRAINJOB_GROUP, TRAINJOB_VERSION, namespace, TRAINJOB_PLURAL, label_selector=f"{RUN_LABEL}={run}"
        )
    except ApiException as exc:
        if exc.status == 404:  # Kubeflow Trainer is not installed: this run created no TrainJob
            return 0
        raise
    items = found.get("items") or []
    for item in items:
        manifest = {
            "apiVersion": f"{TRAINJOB_GROUP}/{TRAINJOB_VERSION}",
            "kind": "TrainJob",
            "metadata": {"namespace": namespace, "name": item["metadata"]["name"]},
        }
        delete_job(manifest, api, say)
    return len(items)
