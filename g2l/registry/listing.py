"""`g2l models list`: the versions of a cancer's registered model with aliases, metrics and gate result."""

from __future__ import annotations

import dataclasses
import datetime as dt

from g2l.registry.config import RegistryConfig
from g2l.registry.promote import recorded_benchmarks
from g2l.registry.store import model_name, open_client, resolve_uri


@dataclasses.dataclass(frozen=True, kw_only=True)
class VersionRow:
    """One registered version as the listing shows it."""

    version: int
    aliases: tuple[str, ...]
    gate: str
    decision: str
    primary_metric: str
    primary_value: float | None
    metrics: dict[str, float]
    created: dt.datetime
    student_sha256: str
    run_id: str


def list_versions(
    cancer: str,
    *,
    registry_uri: str | None = None,
    config: RegistryConfig | None = None,
    artifact_root: str = "demo-output/artifacts",
) -> list[VersionRow]:
    """All versions of `g2l-student-<cancer>`, newest first; empty when none is registered."""
    from mlflow.exceptions import MlflowException

    config = config or RegistryConfig()
    client = open_client(resolve_uri(registry_uri, config, artifact_root), create=False)
    name = model_name(cancer)
    try:
        aliases_of = client.get_registered_model(name).aliases or {}
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return []
        raise
    by_version: dict[str, list[str]] = {}
    for alias, version in aliases_of.items():
        by_version.setdefault(str(version), []).append(alias)
    rows = []
    for mv in client.search_model_versions(f"name='{name}'"):
        tags = mv.tags or {}
        primary = tags.get("g2l.primary_value")
        rows.append(
            VersionRow(
                version=int(mv.version),
                aliases=tuple(sorted(by_version.get(str(mv.version), []))),
                gate=tags.get("g2l.gate", "?"),
                decision=tags.get("g2l.decision", "?"),
                primary_metric=tags.get("g2l.primary_metric", ""),
                primary_value=float(primary) if primary else None,
                metrics={f"{b}.{m}": v for b, ms in recorded_benchmarks(tags).items() for m, v in ms.items()},
                created=dt.datetime.fromtimestamp(mv.creation_timestamp / 1000, tz=dt.UTC),
                student_sha256=tags.get("lineage.student_weights_sha256", ""),
                run_id=mv.run_id or "",
            )
        )
    return sorted(rows, key=lambda r: -r.version)
