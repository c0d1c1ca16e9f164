"""Per-cancer retraining schedules: the desired KFP recurring runs from config, and the changes to reach them.

Pure logic on plain values (no kfp import); `pipelines/schedules.py` reads the server's state through
the kfp client and applies the changes this module computes.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from g2l.config import RunConfig, from_dict, load_section, load_yaml, require


@dataclasses.dataclass(frozen=True, kw_only=True)
class ScheduleEntry:
    """One cancer's recurring run: its config file, cron and parameter overrides."""

    cancer: str
    config: str
    cron: str
    name: str = ""
    enabled: bool = True
    max_concurrency: int = 1
    no_catchup: bool = True
    parameters: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        fields = self.cron.split()
        require(
            len(fields) == 6,
            f"schedules[{self.cancer}].cron {self.cron!r} must have 6 fields (KFP's cron has seconds first), "
            "e.g. '0 0 2 * * 1' for 02:00 every Monday",
        )
        require(self.max_concurrency >= 1, f"schedules[{self.cancer}].max_concurrency must be >= 1")
        require(bool(self.config), f"schedules[{self.cancer}].config must name the cancer's config file")

    @property
    def recurring_run_name(self) -> str:
        """The recurring run's display name, the key schedules are matched by."""
        return self.name or f"g2l-{self.cancer}-retrain"


@dataclasses.dataclass(frozen=True, kw_only=True)
class SchedulesConfig:
    """configs/schedules.yaml: where the KFP API is and one entry per cancer."""

    host: str = ""
    pipeline_name: str = "g2l"
    schedules: tuple[ScheduleEntry, ...] = ()

    def __post_init__(self) -> None:
        names = [s.recurring_run_name for s in self.schedules]
        dupes = sorted({n for n in names if names.count(n) > 1})
        require(
            not dupes, f"schedules: recurring run name(s) {', '.join(dupes)} used twice; give each a `name`"
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class DesiredSchedule:
    """A recurring run as it should exist on the server."""

    name: str
    cancer: str
    experiment: str
    cron: str
    enabled: bool
    max_concurrency: int
    no_catchup: bool
    parameters: dict[str, Any]
    service_account: str
    namespace: str = ""  # the Kubeflow profile namespace (multi-user); every API call carries it
    config: str = ""  # the cancer's config file (preflight checks it before anything is scheduled)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ExistingSchedule:
    """A recurring run as the server reports it."""

    recurring_run_id: str
    name: str
    cron: str
    enabled: bool
    max_concurrency: int
    no_catchup: bool
    parameters: dict[str, Any]
    pipeline_version_id: str
    experiment_id: str = ""
    service_account: str = ""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Change:
    """What `g2l pipeline schedule` does to one recurring run: create, update (replace) or nothing."""

    action: str
    desired: DesiredSchedule
    existing_ids: tuple[str, ...] = ()
    differences: tuple[str, ...] = ()

    def describe(self, *, dry_run: bool) -> str:
        """One console line: `[dry-run] update g2l-brca-retrain: cron '...' -> '...'`."""
        prefix = "[dry-run] would " if dry_run and self.action != "unchanged" else ""
        detail = f": {'; '.join(self.differences)}" if self.differences else ""
        want = self.desired
        return f"{prefix}{self.action} {want.name} ({want.cancer}, cron {want.cron}){detail}"


def load_schedules(path: str | Path) -> SchedulesConfig:
    """Read and validate a schedules file."""
    return from_dict(SchedulesConfig, load_yaml(path), where=str(path))


def desired_schedules(path: str | Path, namespace: str = "") -> tuple[SchedulesConfig, list[DesiredSchedule]]:
    """The recurring runs the schedules file asks for, parameters taken from each cancer's config.

    Each runs in its config's `pipeline.namespace` unless `namespace` (the --namespace flag) overrides it.
    """
    from g2l.pipeline.config import PipelineConfig, pipeline_arguments

    cfg = load_schedules(path)
    base = Path(path).parent
    out = []
    for entry in cfg.schedules:
        config_path = Path(entry.config)
        if not config_path.is_file():
            config_path = base / entry.config
        require(
            config_path.is_file(),
            f"schedules[{entry.cancer}].config: {entry.config} not found (relative "
            f"paths are read from the current directory or {base})",
        )
        run = load_section(RunConfig, config_path, section="run")
        require(
            run.cancer == entry.cancer,
            f"schedules[{entry.cancer}]: {config_path} is for cancer "
            f"{run.cancer!r}; point `config` at the {entry.cancer} config",
        )
        pipe = load_section(PipelineConfig, config_path, section="pipeline")
        out.append(
            DesiredSchedule(
                name=entry.recurring_run_name,
                cancer=entry.cancer,
                experiment=pipe.experiment_for(entry.cancer),
                cron=entry.cron,
                enabled=entry.enabled,
                max_concurrency=entry.max_concurrency,
                no_catchup=entry.no_catchup,
                parameters=pipeline_arguments(config_path, **entry.parameters),
                service_account=pipe.service_account,
                namespace=namespace or pipe.namespace,
                config=str(config_path),
            )
        )
    return cfg, out


def _canonical(params: dict[str, Any]) -> str:
    # The server returns every parameter as JSON; compare values, not their Python types (1 vs 1.0).
    def norm(v: Any) -> Any:
        return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else v

    return json.dumps({k: norm(v) for k, v in params.items()}, sort_keys=True)


def plan_changes(
    desired: list[DesiredSchedule],
    existing: dict[str, list[ExistingSchedule]],
    pipeline_version_id: str,
    experiment_ids: dict[str, str],
) -> list[Change]:
    """Compare desired with existing recurring runs (matched by name) and list the changes to make."""
    changes = []
    for want in desired:
        found = existing.get(want.name, [])
        if not found:
            changes.append(Change(action="create", desired=want))
            continue
        have = found[0]
        diffs = []
        if have.cron != want.cron:
            diffs.append(f"cron {have.cron!r} -> {want.cron!r}")
        if have.enabled != want.enabled:
            diffs.append(f"enabled {have.enabled} -> {want.enabled}")
        if have.max_concurrency != want.max_concurrency:
            diffs.append(f"max_concurrency {have.max_concurrency} -> {want.max_concurrency}")
        if have.no_catchup != want.no_catchup:
            diffs.append(f"no_catchup {have.no_catchup} -> {want.no_catchup}")
        if have.pipeline_version_id != pipeline_version_id:
            diffs.append(f"pipeline version {have.pipeline_version_id or '?'} -> {pipeline_version_id}")
        want_experiment = experiment_ids.get(want.experiment, "")
        if have.experiment_id != want_experiment:
            diffs.append(f"experiment -> {want.experiment}")
        if have.service_account != want.service_account:
            diffs.append(f"service account {have.service_account!r} -> {want.service_account!r}")
        if _canonical(have.parameters) != _canonical(want.parameters):
            keys = sorted(set(have.parameters) | set(want.parameters))
            changed = [
                k
                for k in keys
                if _canonical({k: have.parameters.get(k)}) != _canonical({k: want.parameters.get(k)})
            ]
            diffs.append(f"parameters {', '.join(changed)}")
        if len(found) > 1:
            diffs.append(f"{len(found) - 1} duplicate(s) removed")
        action = "update" if diffs else "unchanged"
        changes.append(
            Change(
                action=action,
                desired=want,
                differences=tuple(diffs),
                existing_ids=tuple(f.recurring_run_id for f in found),
            )
        )
    return changes
