"""`g2l audit`: find a registered version and re-derive every item of its lineage, line by line."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from g2l.audit.cache_key import cache_checks
from g2l.audit.checks import manifest_checks, shard_checks, student_checks
from g2l.audit.deep import deep_checks, registry_copy_check
from g2l.audit.report import AuditReport, Check
from g2l.registry import lineage
from g2l.registry.config import RegistryConfig
from g2l.registry.store import RegistryError, alias_version, model_name, open_client, resolve_uri


def audit_lineage(lin: Mapping[str, str], *, teacher_weights: str | None = None) -> list[Check]:
    """Every re-derivable check of a lineage: manifest, slides, shards, cache and teacher, student.

    Each item of `lineage.REQUIRED` the lineage does not record gives a skipped line (the audit is then
    incomplete), as does an artifact that cannot be reached here (the teacher's weights).
    `teacher_weights` points at the teacher's weights when the recorded location is not reachable here.
    """
    checks: list[Check] = []
    checks.extend(manifest_checks(lin))
    checks.extend(shard_checks(lin))
    checks.extend(cache_checks(lin, teacher_weights))
    checks.extend(student_checks(lin))
    return checks


def audit(
    *,
    cancer: str,
    version: int | None = None,
    alias: str | None = None,
    deep: bool = False,
    registry_uri: str | None = None,
    config: RegistryConfig | None = None,
    artifact_root: str = "demo-output/artifacts",
    allow_incomplete: bool = False,
    teacher_weights: str | None = None,
) -> AuditReport:
    """Audit one version of g2l-student-<cancer> (default: the champion) against the world as it is now.

    The report passes only when every check ran and matched; `allow_incomplete` accepts skipped ones.
    """
    from mlflow.exceptions import MlflowException

    config = config or RegistryConfig()
    client = open_client(resolve_uri(registry_uri, config, artifact_root), create=False)
    name = model_name(cancer)
    mv: Any
    if version is not None:
        try:
            mv = client.get_model_version(name, str(version))
        except MlflowException as exc:
            raise RegistryError(
                f"{name} has no version {version}; fix: see `g2l models list --cancer {cancer}`"
            ) from exc
    else:
        mv = alias_version(client, name, alias or "champion")
        if mv is None:
            raise RegistryError(
                f"{name} has no alias {alias or 'champion'!r}; fix: pass --version N "
                f"(see `g2l models list --cancer {cancer}`)"
            )
    tags = dict(mv.tags or {})
    lin = lineage.from_tags(tags)
    checks = audit_lineage(lin, teacher_weights=teacher_weights)
    if mv.run_id:
        checks.append(registry_copy_check(client, mv.run_id, lin.get("student_weights_sha256")))
    if deep:
        checks.extend(deep_checks(tags, lin, config.deep_tolerance, client, str(mv.run_id)))
    full = client.get_model_version(name, str(mv.version))
    return AuditReport(
        model=name,
        version=int(mv.version),
        aliases=tuple(sorted(full.aliases or [])),
        checks=tuple(checks),
        allow_incomplete=allow_incomplete,
    )
