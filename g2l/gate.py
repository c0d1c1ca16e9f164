"""Promotion gate: a policy (YAML list of rules) applied to an evaluation report -> a Decision with reasons.

A rule compares the candidate's metric on a benchmark (or on every benchmark) with the teacher's,
the current champion's, or a constant, plus a margin: `candidate <op> reference + margin`. Rules
against the champion pass while there is no champion yet (the reason says so). A metric missing from
the report is a data error (GateDataError), not a rejection, so a pipeline can tell the two apart.
"""

from __future__ import annotations

import dataclasses
import json
import math
import operator
from collections.abc import Callable
from pathlib import Path
from typing import Any

from g2l.config import from_dict, load_yaml, require

COMPARATORS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
}
REFERENCES = ("teacher", "champion", "constant")


class GateDataError(ValueError):
    """The report cannot be judged (missing model, benchmark or metric); names what is missing."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class GateRule:
    """`metric <comparator> reference + margin` on one benchmark or on all of them."""

    metric: str
    comparator: str = ">="
    reference: str = "teacher"
    value: float | None = None
    margin: float = 0.0
    benchmark: str = "all"
    name: str = ""

    def __post_init__(self) -> None:
        require(bool(self.metric), "gate rule: `metric` must name a report metric, e.g. lp_balanced_accuracy")
        require(
            self.comparator in COMPARATORS,
            f"gate rule {self.metric}: comparator must be one of {', '.join(COMPARATORS)}, "
            f"got {self.comparator!r}",
        )
        require(
            self.reference in REFERENCES,
            f"gate rule {self.metric}: reference must be one of {', '.join(REFERENCES)}, "
            f"got {self.reference!r}",
        )
        require(
            (self.reference == "constant") == (self.value is not None),
            f"gate rule {self.metric}: `value` is required with reference: constant and only then",
        )
        require(math.isfinite(self.margin), f"gate rule {self.metric}: margin must be a finite number")
        require(bool(self.benchmark), f"gate rule {self.metric}: benchmark must be a benchmark name or 'all'")

    def describe(self) -> str:
        """Readable form, e.g. `lp_balanced_accuracy >= teacher - 0.01 on all benchmarks`."""
        ref = f"{self.value:g}" if self.reference == "constant" else self.reference
        if self.margin:
            ref += f" {'+' if self.margin > 0 else '-'} {abs(self.margin):g}"
        where = "all benchmarks" if self.benchmark == "all" else self.benchmark
        text = f"{self.metric} {self.comparator} {ref} on {where}"
        return f"{self.name}: {text}" if self.name else text


@dataclasses.dataclass(frozen=True, kw_only=True)
class PrimaryMetric:
    """The one metric that ranks a candidate against the champion (read by g2l.registry at promotion)."""

    benchmark: str
    metric: str = "lp_balanced_accuracy"
    higher_is_better: bool = True

    def __post_init__(self) -> None:
        require(
            bool(self.benchmark) and self.benchmark != "all",
            "gate policy: primary_metric.benchmark must name one benchmark of the report (not 'all')",
        )
        require(bool(self.metric), "gate policy: primary_metric.metric must name a report metric")


@dataclasses.dataclass(frozen=True, kw_only=True)
class GatePolicy:
    """A promotion policy: rules, the metric the registry ranks candidates by, and reference model names."""

    rules: tuple[GateRule, ...]
    primary_metric: PrimaryMetric | None = None
    teacher: str | None = None
    champion: str | None = None
    description: str = ""

    def __post_init__(self) -> None:
        require(len(self.rules) >= 1, "gate policy: `rules` must list at least one rule")
        require(
            self.primary_metric is not None,
            "gate policy: needs `primary_metric: {benchmark: <name>, metric: <name>, "
            "higher_is_better: true}` (the metric that decides whether a candidate replaces the champion)",
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class RuleResult:
    """One rule judged on one benchmark."""

    rule: str
    passed: bool
    candidate: float | None
    reference: float | None
    reason: str
    metric: str
    benchmark: str
    threshold: float | None


@dataclasses.dataclass(frozen=True, kw_only=True)
class Decision:
    """The gate's verdict: passed when every rule passed, with one result per rule and benchmark."""

    passed: bool
    candidate: str
    rules: tuple[RuleResult, ...]

    def to_dict(self) -> dict[str, Any]:
        """decision.json form: {"passed", "candidate", "rules": [{"rule", "passed", "candidate", ...}]}."""
        return {
            "passed": self.passed,
            "candidate": self.candidate,
            "rules": [dataclasses.asdict(r) for r in self.rules],
        }


def load_policy(path: str | Path) -> GatePolicy:
    """Read and validate a gate policy YAML (configs/gate.yaml)."""
    return from_dict(GatePolicy, load_yaml(path), where=str(path))


def load_report(path: str | Path) -> dict[str, Any]:
    """Read report.json; a missing or malformed file is a GateDataError."""
    p = Path(path)
    if not p.is_file():
        raise GateDataError(f"report {p} does not exist; run `g2l evaluate --out DIR` first")
    try:
        report = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise GateDataError(f"report {p} is not valid JSON: {exc}") from exc
    if not isinstance(report, dict) or not isinstance(report.get("models"), dict):
        raise GateDataError(f"report {p} has no `models` mapping; is it a g2l evaluate report.json?")
    return report


def _value(report: dict[str, Any], model: str, bench: str, metric: str, role: str) -> float | None:
    """The metric's value; None when the report holds it as undefined (null/NaN); missing is an error."""
    models = report["models"]
    if model not in models:
        raise GateDataError(
            f"{role} model {model!r} is not in the report (models: {', '.join(models)}); "
            f"evaluate it with --model {model}=SPEC"
        )
    benches = models[model].get("benchmarks", {})
    if bench not in benches:
        raise GateDataError(
            f"benchmark {bench!r} is missing for {role} model {model!r} (has: {', '.join(benches) or 'none'})"
        )
    if metric not in benches[bench]:
        raise GateDataError(
            f"metric {metric!r} is missing from the report for benchmark {bench!r} "
            f"({role} model {model!r}); available: {', '.join(sorted(benches[bench]))}"
        )
    value = benches[bench][metric]
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise GateDataError(
            f"metric {metric!r} on benchmark {bench!r} for {role} model {model!r} is {value!r}, not a number"
        )
    return float(value)


def _undefined(metric: str, bench: str, model: str, role: str) -> GateDataError:
    return GateDataError(
        f"metric {metric!r} on benchmark {bench!r} is undefined (null) for {role} model {model!r}; check the "
        f"benchmark's splits, labels and sites"
    )


def _metric(report: dict[str, Any], model: str, bench: str, metric: str, role: str) -> float:
    value = _value(report, model, bench, metric, role)
    if value is None:
        raise _undefined(metric, bench, model, role)
    return value


def _result(
    rule: GateRule,
    text: str,
    bench: str,
    passed: bool,
    reason: str,
    candidate: float | None = None,
    reference: float | None = None,
    threshold: float | None = None,
) -> RuleResult:
    return RuleResult(
        rule=text,
        passed=passed,
        candidate=candidate,
        reference=reference,
        threshold=threshold,
        metric=rule.metric,
        benchmark=bench,
        reason=reason,
    )


def _judge(
    rule: GateRule, report: dict[str, Any], policy: GatePolicy, candidate: str, bench: str
) -> RuleResult:
    text = rule.describe() if rule.benchmark != "all" else rule.describe().replace("all benchmarks", bench)
    cand = _value(report, candidate, bench, rule.metric, "candidate")
    ref_name: str | None = None
    if rule.reference != "constant":
        ref_name = getattr(policy, rule.reference) or report.get(rule.reference)
        if rule.reference == "champion" and (not ref_name or ref_name not in report["models"]):
            return _result(
                rule,
                text,
                bench,
                True,
                candidate=cand,
                reason=f"no champion yet: nothing to beat, so {candidate} passes this rule",
            )
        if not ref_name:
            raise GateDataError(
                f"rule {text!r}: the report names no {rule.reference} model; set "
                f"`{rule.reference}:` in the policy or evaluate.{rule.reference}_model"
            )
    if cand is None:
        # Undefined for the candidate: acceptable only where it is undefined for the reference model too
        # (e.g. PathoROB on a single-site benchmark, where no neighbour can come from another site).
        if ref_name is not None and _value(report, ref_name, bench, rule.metric, rule.reference) is None:
            return _result(
                rule,
                text,
                bench,
                True,
                reason=f"{rule.metric} is undefined on {bench} for both {candidate} and "
                f"{rule.reference} ({ref_name}), e.g. a single-site benchmark: not applicable",
            )
        raise _undefined(rule.metric, bench, candidate, "candidate")
    if ref_name is None:
        ref = float(rule.value)  # type: ignore[arg-type]
        ref_text = f"{ref:g}"
    else:
        ref = _metric(report, ref_name, bench, rule.metric, rule.reference)
        ref_text = f"{rule.reference} ({ref_name}) {ref:.4f}"
    threshold = ref + rule.margin
    ok = bool(COMPARATORS[rule.comparator](cand, threshold))
    margin_text = (
        f" {'+' if rule.margin >= 0 else '-'} {abs(rule.margin):g} = {threshold:.4f}" if rule.margin else ""
    )
    reason = (
        f"{candidate} {rule.metric} on {bench} = {cand:.4f} {rule.comparator} {ref_text}{margin_text}: "
        f"{'holds' if ok else 'does not hold'}"
    )
    return _result(rule, text, bench, ok, reason, candidate=cand, reference=ref, threshold=threshold)


def decide(report: dict[str, Any], policy: GatePolicy, candidate: str) -> Decision:
    """Apply every rule (on every benchmark for `benchmark: all`); passed only if all pass."""
    if candidate not in report.get("models", {}):
        raise GateDataError(
            f"candidate {candidate!r} is not in the report (models: "
            f"{', '.join(report.get('models', {}))}); pass --candidate with one of them"
        )
    all_benches = list(report.get("benchmarks") or report["models"][candidate].get("benchmarks", {}))
    if not all_benches:
        raise GateDataError("the report has no benchmarks to judge")
    results = []
    for rule in policy.rules:
        benches = all_benches if rule.benchmark == "all" else [rule.benchmark]
        for bench in benches:
            results.append(_judge(rule, report, policy, candidate, bench))
    return Decision(passed=all(r.passed for r in results), candidate=candidate, rules=tuple(results))


def primary_score(report: dict[str, Any], policy: GatePolicy, model: str) -> float:
    """The policy's primary metric (`benchmark`, `metric`) for `model`; a missing one is a GateDataError."""
    pm = policy.primary_metric
    if pm is None:  # unreachable for a validated policy; keeps the type narrow
        raise GateDataError("the gate policy names no primary_metric")
    return _metric(report, model, pm.benchmark, pm.metric, "ranked")


def write_decision(path: str | Path, decision: Decision) -> None:
    """Write decision.json atomically."""
    from g2l.evaluate.report import atomic_write_text

    atomic_write_text(path, json.dumps(decision.to_dict(), indent=2) + "\n")


__all__ = [
    "COMPARATORS",
    "Decision",
    "GateDataError",
    "GatePolicy",
    "GateRule",
    "PrimaryMetric",
    "RuleResult",
    "decide",
    "load_policy",
    "load_report",
    "primary_score",
    "write_decision",
]
