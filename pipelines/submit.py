"""Submit one run of the pipeline to a KFP server: upload (or version) the package, then start it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kfp

from g2l.config import ConfigError, RunConfig, load_section
from g2l.pipeline.config import PipelineConfig, pipeline_arguments
from pipelines import kfp_api


def submit(
    config: str | Path,
    *,
    host: str | None = None,
    experiment: str | None = None,
    package: str | Path,
    overrides: dict[str, Any] | None = None,
    api: kfp.Client | None = None,
    namespace: str = "",
    auth: kfp_api.Auth | None = None,
    skip_preflight: bool = False,
    core: Any = None,
    mlflow: str | None = None,
) -> dict[str, str]:
    """Start a run of `package` with the parameters of a cancer's config; returns the run's ids.

    `g2l pipeline preflight` runs first (static and live rules) and a failed rule stops the submission
    before anything is uploaded, unless `skip_preflight`.
    """
    from pipelines.preflight import preflight, require_ready

    run = load_section(RunConfig, config, section="run")
    pipe = load_section(PipelineConfig, config, section="pipeline")
    ns = namespace or pipe.namespace
    if api is None:
        endpoint = host or pipe.host
        if not endpoint:
            raise ConfigError(f"{config}: no KFP endpoint; pass --host URL or set pipeline.host")
        api = kfp_api.client(endpoint, ns, auth)
    if not skip_preflight:
        require_ready(preflight(config, package=package, namespace=ns, api=api, core=core, mlflow=mlflow))
    params = pipeline_arguments(config, **(overrides or {}))
    version = kfp_api.ensure_pipeline_version(api, package, pipe.pipeline_name, namespace=ns)
    exp_name = experiment or pipe.experiment_for(run.cancer)
    experiment_id = kfp_api.ensure_experiment(api, exp_name, ns)
    started = api.run_pipeline(
        experiment_id=experiment_id,
        job_name=f"g2l-{run.cancer}-{version.version_name.rsplit('-', 1)[-1]}",
        params=params,
        pipeline_id=version.pipeline_id,
        version_id=version.version_id,
        enable_caching=pipe.enable_caching,
        service_account=pipe.service_account or None,
    )
    return {
        "run_id": started.run_id,
        "experiment_id": experiment_id,
        "pipeline_id": version.pipeline_id,
        "pipeline_version_id": version.version_id,
        "pipeline_version": version.version_name,
        "upload": version.action,
        "image": ", ".join(kfp_api.package_images(package)),
    }
