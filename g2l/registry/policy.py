"""The gate policy's primary metric: which benchmark metric decides champion versus candidate."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from g2l.config import ConfigError, load_yaml, require


@dataclasses.dataclass(frozen=True, kw_only=True)
class PrimaryMetric:
    """`primary_metric: {benchmark, metric, higher_is_better}` of the gate policy."""

    benchmark: str
    metric: str
    higher_is_better: bool = True

    def __post_init__(self) -> None:
        require(bool(self.benchmark), "primary_metric.benchmark must name a benchmark of the report")
        require(bool(self.metric), "primary_metric.metric must name a metric of that benchmark")

    @property
    def key(self) -> str:
        """`<benchmark>.<metric>`, the suffix of the flattened metric names."""
        return f"{self.benchmark}.{self.metric}"

    def beats(self, candidate: float, champion: float) -> bool:
        """Strictly better (a tie keeps the champion: no churn without evidence)."""
        return candidate > champion if self.higher_is_better else candidate < champion


def load_primary_metric(path: str | Path) -> PrimaryMetric:
    """Read `primary_metric` from a gate policy YAML, naming the file and the fix when it is missing."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(
            f"gate policy {path} not found; fix: pass --policy PATH (a YAML with "
            "`primary_metric: {benchmark: ..., metric: ...}`) or set registry.policy"
        )
    data = load_yaml(path)
    raw = data.get("primary_metric")
    if not isinstance(raw, Mapping):
        raise ConfigError(
            f"{path}: needs `primary_metric: {{benchmark: <name>, metric: <name>, higher_is_better: true}}` "
            f"(the metric that decides whether a candidate replaces the champion), got {raw!r}"
        )
    unknown = sorted(set(raw) - {"benchmark", "metric", "higher_is_better"})
    require(
        not unknown,
        f"{path}: primary_metric has unknown key(s) {unknown}; "
        "valid keys are benchmark, metric, higher_is_better",
    )
    return PrimaryMetric(
        benchmark=str(raw.get("benchmark", "")),
        metric=str(raw.get("metric", "")),
        higher_is_better=bool(raw.get("higher_is_better", True)),
    )


def candidate_name(
    report: Mapping[str, Any], decision: Mapping[str, Any], weights_sha256: str, explicit: str | None = None
) -> str:
    """The candidate's name in the report: explicit, the decision's, the digest match, or `student`."""
    models = report.get("models") or {}
    if not isinstance(models, Mapping) or not models:
        raise ValueError("report.json has no `models`; fix: pass the report written by `g2l evaluate`")
    for name in (explicit, decision.get("candidate")):
        if name:
            if name not in models:
                raise ValueError(f"candidate {name!r} is not in report.json models {sorted(models)}")
            return str(name)
    by_digest = [n for n, m in models.items() if isinstance(m, Mapping) and m.get("digest") == weights_sha256]
    if len(by_digest) == 1:
        return str(by_digest[0])
    if "student" in models:
        return "student"
    raise ValueError(
        f"cannot tell the candidate among report.json models {sorted(models)} (none has digest "
        f"{weights_sha256[:12]}...); fix: pass --candidate NAME"
    )


def flatten_metrics(report: Mapping[str, Any], models: list[str] | None = None) -> dict[str, float]:
    """`<model>.<bench>.<metric>` -> value for the report's numeric metrics."""
    out: dict[str, float] = {}
    for name, entry in (report.get("models") or {}).items():
        if models is not None and name not in models:
            continue
        for bench, metrics in ((entry or {}).get("benchmarks") or {}).items():
            for metric, value in (metrics or {}).items():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    out[f"{name}.{bench}.{metric}"] = float(value)
    return out
