"""Apply configs/schedules.yaml to a KFP server: one recurring run per cancer, created or updated by name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kfp

from g2l.config import ConfigError
from g2l.pipeline.schedules import Change, DesiredSchedule, ExistingSchedule, desired_schedules, plan_changes
from g2l.progress import console
from pipelines import kfp_api


def _existing(api: kfp.Client, name: str, namespace: str = "") -> list[ExistingSchedule]:
    page = api.list_recurring_runs(
        filter=kfp_api.name_filter(name), page_size=100, namespace=namespace or None
    )
    out = []
    for rr in page.recurring_runs or []:
        if rr.display_name != name:
            continue
        cron = rr.trigger.cron_schedule.cron if rr.trigger and rr.trigger.cron_schedule else ""
        ref = rr.pipeline_version_reference
        out.append(
            ExistingSchedule(
                recurring_run_id=rr.recurring_run_id,
                name=rr.display_name,
                cron=cron or "",
                enabled=str(rr.mode).upper() == "ENABLE",
                max_concurrency=int(rr.max_concurrency or 1),
                no_catchup=bool(rr.no_catchup),
                parameters=dict((rr.runtime_config.parameters if rr.runtime_config else None) or {}),
                pipeline_version_id=(ref.pipeline_version_id if ref else "") or "",
                experiment_id=rr.experiment_id or "",
                service_account=rr.service_account or "",
            )
        )
    return out


def _create(
    api: kfp.Client, want: DesiredSchedule, experiment_id: str, version: kfp_api.PipelineVersion
) -> Any:
    return api.create_recurring_run(
        experiment_id=experiment_id,
        job_name=want.name,
        description=f"g2l retraining for {want.cancer} (managed by `g2l pipeline schedule`)",
        cron_expression=want.cron,
        max_concurrency=want.max_concurrency,
        no_catchup=want.no_catchup,
        params=want.parameters,
        pipeline_id=version.pipeline_id,
        version_id=version.version_id,
        enabled=want.enabled,
        service_account=want.service_account or None,
    )


def apply_schedules(
    path: str | Path,
    *,
    host: str | None = None,
    package: str | Path,
    dry_run: bool = False,
    api: kfp.Client | None = None,
    namespace: str = "",
    auth: kfp_api.Auth | None = None,
    skip_preflight: bool = False,
    core: Any = None,
) -> list[Change]:
    """Bring the server's recurring runs in line with the schedules file; returns what changed (or would).

    Every cancer's config passes `g2l pipeline preflight` first (unless `skip_preflight`); every call
    carries the schedule's namespace (multi-user Kubeflow).
    """
    from pipelines.preflight import preflight, require_ready

    cfg, desired = desired_schedules(path, namespace)
    namespaces = sorted({w.namespace for w in desired})
    if len(namespaces) > 1:
        raise ConfigError(
            f"{path}: the cancers' configs name different namespaces ({', '.join(namespaces)}); "
            "schedule them one namespace at a time with --namespace"
        )
    ns = namespaces[0] if namespaces else namespace
    if api is None:
        endpoint = host or cfg.host
        if not endpoint:
            raise ConfigError(f"{path}: no KFP endpoint; pass --host URL or set `host:` in the file")
        api = kfp_api.client(endpoint, ns, auth)
    if not skip_preflight:
        for want in desired:
            require_ready(preflight(want.config, package=package, namespace=ns, api=api, core=core))
    version = kfp_api.ensure_pipeline_version(api, package, cfg.pipeline_name, dry_run=dry_run, namespace=ns)
    if version.action != "existing":
        console.print(f"pipeline {cfg.pipeline_name}: {version.action} ({version.version_name})")
    experiments = {w.experiment: kfp_api.find_experiment(api, w.experiment, ns) for w in desired}
    existing = {w.name: _existing(api, w.name, ns) for w in desired}
    changes = plan_changes(desired, existing, version.version_id, experiments)
    if dry_run:
        return changes
    for change in changes:
        if change.action == "unchanged":
            continue
        want = change.desired
        if not experiments[want.experiment]:
            experiments[want.experiment] = kfp_api.ensure_experiment(api, want.experiment, ns)
        # KFP has no update for recurring runs: create the new one first, then delete the old, so the
        # cancer is never left without a schedule.
        _create(api, want, experiments[want.experiment], version)
        for old in change.existing_ids:
            api.delete_recurring_run(old)
    return changes
