"""The pipeline's exit handler: whatever the run's outcome, remove what it left running or exported.

- TrainJobs labelled with the run id are deleted (a failed or stopped run must not keep GPU nodes busy);
- with `$G2L_METRICS_DELETE_FINISHED` set (infra's `g2l-pipeline-env`), the run's Pushgateway groups are
  deleted, so Prometheus marks their series stale instead of scraping their last values forever.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from g2l.metrics import PUSHGATEWAY_ENV
from g2l.pipeline.io import run_id

DELETE_METRICS_ENV = "G2L_METRICS_DELETE_FINISHED"


def in_cluster(env: dict[str, str] | None = None) -> bool:
    """True inside a Kubernetes pod (the kubelet sets KUBERNETES_SERVICE_HOST), False under kfp.local."""
    return bool((env if env is not None else os.environ).get("KUBERNETES_SERVICE_HOST"))


def cleanup_run(
    *,
    namespace: str | None = None,
    k8s_api: Any = None,
    env: dict[str, str] | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, int]:
    """Delete the run's TrainJobs (in a cluster, or with `k8s_api`) and, if asked, its metric groups."""
    from g2l.pipeline.trainjobs import NAMESPACE_ENV, delete_run_jobs
    from g2l.progress import console

    env = dict(os.environ) if env is None else env
    say = log or (lambda msg: console.print(msg))
    rid = env.get("G2L_RUN_ID") or run_id()
    out = {"trainjobs": 0, "metric_groups": 0}
    # kfp.local runs (ids "local-...") have no TrainJobs, even when the runner itself is a pod.
    if k8s_api is not None or (in_cluster(env) and not rid.startswith("local")):
        ns = namespace or env.get(NAMESPACE_ENV) or "kubeflow"
        out["trainjobs"] = delete_run_jobs(rid, ns, api=k8s_api, log=say)
    gateway = env.get(PUSHGATEWAY_ENV)
    if gateway and env.get(DELETE_METRICS_ENV, "").lower() in ("1", "true", "yes"):
        from g2l.metrics import delete_run_groups

        try:
            out["metric_groups"] = delete_run_groups(gateway, rid)
        except OSError as exc:  # an unreachable gateway must not fail the run's end
            say(f"warning: metric groups of run {rid} not deleted: {exc}")
    if any(out.values()):  # silent under kfp.local, where there is nothing to clean up
        say(
            f"cleanup of run {rid}: {out['trainjobs']} TrainJob(s), "
            f"{out['metric_groups']} metric group(s) deleted"
        )
    return out
