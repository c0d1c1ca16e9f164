"""The gate policy's primary metric: which benchmark metric decides champion versus candidate."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from g2l.config import ConfigError, load_yaml, require


@dataclasses.dataclass(frozen=True, kw_only=True)
class PrimaryMetric:
    """The gate policy's `primary_metric`: a metric on one benchmark, or averaged over all (`all`)."""

    metric: str
    benchmark: str = "all"
    higher_is_better: bool = True

    def __post_init__(self) -> None:
        require(bool(self.metric), "primary_metric.metric must name a metric of the report")
        require(bool(self.benchmark), "primary_metric.benchmark must name a benchmark, or `all`")

    @property
    def key(self) -> str:
        """`<benchmark>.<metric>` (`all.<metric>` for the mean over benchmarks)."""
        return f"{self.benchmark}.{self.metric}"

    def score(self, benches: Mapping[str, Mapping[str, Any]], over: list[str]) -> float | None:
        """The metric on its benchmark, or its mean over `over`; None when any value is missing."""
        names = over if self.benchmark == "all" else [self.benchmark]
        values = [(benches.get(b) or {}).get(self.metric) for b in names]
        if not names or any(not isinstance(v, int | float) or isinstance(v, bool) for v in values):
            return None
        return float(sum(values)) / len(values)  # type: ignore[arg-type]

    def beats(self, candidate: float, champion: float) -> bool:
        """Strictly better (a tie keeps the champion: no churn without evidence)."""
        return candidate > champion if self.higher_is_better else candidate < champion


def load_primary_metric(path: str | Path) -> PrimaryMetric:
    """Read `primary_metric` from a gate policy YAML, naming the file and the fix when it is missing.

    Accepts the gate's own form, `primary_metric: lp_balanced_accuracy` (the mean over the report's
    benchmarks, as `g2l.gate.primary_score`), or `{metric, benchmark, higher_is_better}`.
    """
    path = Path(path)
    if not path.exists():
        raise ConfigError(
            f"gate policy {path} not found; fix: pass --policy PATH (the gate policy YAML with "
            "`primary_metric: <metric>`) or set registry.policy"
        )
    raw = load_yaml(path).get("primary_metric")
    if isinstance(raw, str) and raw:
        return PrimaryMetric(metric=raw)
    if not isinstance(raw, Mapping):
        raise ConfigError(
            f"{path}: needs `primary_metric: <metric>` or `primary_metric: {{metric: <name>, benchmark: "
            f"<name>|all, higher_is_better: true}}` (the metric that decides whether a candidate replaces "
            f"the champion), got {raw!r}"
        )
    unknown = sorted(set(raw) - {"benchmark", "metric", "higher_is_better"})
    require(
        not unknown,
        f"{path}: primary_metric has unknown key(s) {unknown}; valid: metric, benchmark, higher_is_better",
    )
    return PrimaryMetric(
        metric=str(raw.get("metric", "")),
        benchmark=str(raw.get("benchmark", "all")),
        higher_is_better=bool(raw.get("higher_is_better", True)),
    )


def candidate_name(
    report: Mapping[str, Any], decision: Mapping[str, Any], digests: set[str], explicit: str | None = None
) -> str:
    """The candidate's name in the report: explicit, the decision's, a digest match, or `student`.

    `digests` are the student's file sha256 and the state-dict digest its config.json records.
    """
    models = report.get("models") or {}
    if not isinstance(models, Mapping) or not models:
        raise ValueError("report.json has no `models`; fix: pass the report written by `g2l evaluate`")
    for name in (explicit, decision.get("candidate")):
        if name:
            if name not in models:
                raise ValueError(f"candidate {name!r} is not in report.json models {sorted(models)}")
            return str(name)
    by_digest = [n for n, m in models.items() if isinstance(m, Mapping) and m.get("digest") in digests]
    if len(by_digest) == 1:
        return str(by_digest[0])
    if "student" in models:
        return "student"
    raise ValueError(
        f"cannot tell the candidate among report.json models {sorted(models)} (none has the student's "
        "digest); fix: pass --candidate NAME"
    )


def model_benchmarks(report: Mapping[str, Any], model: str) -> dict[str, dict[str, float]]:
    """{benchmark: {metric: value}} of one model in the report (numeric values only)."""
    entry = (report.get("models") or {}).get(model) or {}
    out: dict[str, dict[str, float]] = {}
    for bench, metrics in (entry.get("benchmarks") or {}).items():
        out[str(bench)] = {
            str(k): float(v)
            for k, v in (metrics or {}).items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        }
    return out


def report_benchmarks(report: Mapping[str, Any], model: str) -> list[str]:
    """The benchmarks a report was evaluated on (its `benchmarks`, else the model's own)."""
    names = report.get("benchmarks") or (report.get("models") or {}).get(model, {}).get("benchmarks") or {}
    return sorted(str(n) for n in names)


def flatten_metrics(report: Mapping[str, Any], models: list[str] | None = None) -> dict[str, float]:
    """`<model>.<bench>.<metric>` -> value for the report's numeric metrics."""
    out: dict[str, float] = {}
    for name in report.get("models") or {}:
        if models is None or name in models:
            for bench, metrics in model_benchmarks(report, name).items():
                out.update({f"{name}.{bench}.{metric}": v for metric, v in metrics.items()})
    return out
