"""Judge a report against a policy: paired bootstrap per rule, Holm across rules, the promotion test.

For each rule and benchmark, the test units (patients) are resampled `draws` times; on every draw the
candidate and its reference are both scored on the same resample, giving the bootstrap distribution of
their difference. A rule passes when the lower confidence bound of that difference clears the rule's
threshold; Holm's step-down procedure sets each bound's level across the rules that were tested. A
rule that fails while its 95% interval is wider than 2 x delta and still contains the threshold is
`inconclusive` (the test set cannot resolve delta); the policy says whether that blocks the gate.
A metric the report cannot resample (e.g. CKA) is judged on its point estimate, and the reason says so.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from g2l.evaluate.samples import SamplesError, is_robustness_metric, statistic
from g2l.evaluate.stats import (
    UnitStatistic,
    draw_counts,
    lower_bound,
    percentile_interval,
    stable_seed,
    tail_fraction,
)
from g2l.gate.policy import GatePolicy, GateRule
from g2l.gate.results import (
    Decision,
    GateDataError,
    PromotionResult,
    RuleResult,
)


def _value(report: dict[str, Any], model: str, bench: str, metric: str, role: str) -> float | None:
    """The metric's value; None when the report holds it as undefined (null/NaN); missing is an error."""
    models = report["models"]
    if model not in models:
        raise GateDataError(
            f"{role} model {model!r} is not in the report (models: {', '.join(models)}); "
            f"evaluate it with --model {model}=SPEC (or evaluate.extra_models)"
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


def _reference_model(rule: GateRule, report: dict[str, Any], policy: GatePolicy) -> str | None:
    """The model a rule compares with: a role resolved through the policy or the report, or a model name."""
    ref = str(rule.reference)
    if ref == "constant":
        return None
    if ref in ("teacher", "champion"):
        return getattr(policy, ref) or report.get(ref) or None
    return ref


class _Draws:
    """Bootstrap values per (model, benchmark, metric), computed once: rules on the same data share them."""

    def __init__(self, report: dict[str, Any], policy: GatePolicy) -> None:
        self.report = report
        self.policy = policy
        self.stats: dict[tuple[str, str, str], UnitStatistic | None] = {}
        self.values: dict[tuple[str, str, str], np.ndarray] = {}

    def statistic(self, model: str, bench: str, metric: str) -> UnitStatistic | None:
        key = (model, bench, metric)
        if key not in self.stats:
            try:
                self.stats[key] = statistic(self.report, model, bench, metric)
            except SamplesError as exc:
                raise GateDataError(str(exc)) from exc
        return self.stats[key]

    def draws(self, model: str, bench: str, metric: str) -> np.ndarray:
        key = (model, bench, metric)
        if key not in self.values:
            stat = self.statistic(model, bench, metric)
            assert stat is not None
            b = self.policy.bootstrap
            # Seeded by benchmark and metric only: every model is scored on the very same resamples.
            seed = stable_seed(b.seed, bench, metric)
            self.values[key] = np.concatenate(
                [stat(c) for c in draw_counts(stat.active, stat.units, b.draws, seed)]
            )
        return self.values[key]


@dataclasses.dataclass
class _Pending:
    """A rule on a benchmark whose verdict waits for the multiplicity correction."""

    rule: GateRule
    text: str
    bench: str
    ref_name: str | None
    cand: float
    ref: float | None
    diffs: np.ndarray | None  # None: judged on the point estimate
    estimate: float
    units: int | None

    def p_value(self) -> float:
        if self.diffs is None:
            ok = (
                self.estimate > self.rule.threshold
                if self.rule.strict
                else self.estimate >= self.rule.threshold
            )
            return 0.0 if ok else 1.0
        return tail_fraction(self.diffs, self.rule.threshold, strict=self.rule.strict)


def _sign(higher_is_better: bool) -> float:
    return 1.0 if higher_is_better else -1.0


def _prepare(
    rule: GateRule, report: dict[str, Any], policy: GatePolicy, candidate: str, bench: str, draws: _Draws
) -> RuleResult | _Pending:
    text = rule.describe(bench)
    ref_name = _reference_model(rule, report, policy)

    def not_applicable(reason: str, cand: float | None = None) -> RuleResult:
        return RuleResult(
            rule=text,
            test=rule.test,
            metric=rule.metric,
            benchmark=bench,
            reference_model=ref_name,
            verdict="not_applicable",
            passed=True,
            candidate=cand,
            reference=None,
            estimate=None,
            ci95=None,
            bound=None,
            level=None,
            p_value=None,
            threshold=rule.threshold,
            units=None,
            draws=None,
            resampled=False,
            reason=reason,
        )

    if rule.reference == "champion" and (not ref_name or ref_name not in report["models"]):
        return not_applicable(f"no champion yet: nothing to compare {candidate} with")
    if rule.reference != "constant" and not ref_name:
        raise GateDataError(
            f"rule {text!r}: the report names no {rule.reference} model; set `{rule.reference}:` in the "
            f"policy or evaluate.{rule.reference}_model"
        )
    if is_robustness_metric(rule.metric):
        info = ((report.get("benchmarks") or {}).get(bench) or {}).get("robustness") or {}
        if info and not info.get("eligible", False):
            why = str(info.get("reason") or "not eligible")
            if rule.benchmark != "all":
                raise GateDataError(
                    f"rule {text!r} is refused: benchmark {bench} cannot carry a robustness rule ({why}); "
                    f"apply robustness rules to benchmarks with >= 2 sites and no label-site confound"
                )
            return not_applicable(f"robustness rule refused on {bench}: {why}")
    cand = _value(report, candidate, bench, rule.metric, "candidate")
    ref = None if ref_name is None else _value(report, ref_name, bench, rule.metric, str(rule.reference))
    if cand is None:
        if ref_name is not None and ref is None:
            return not_applicable(
                f"{rule.metric} is undefined on {bench} for both {candidate} and {ref_name}: not applicable"
            )
        raise GateDataError(
            f"metric {rule.metric!r} on benchmark {bench!r} is undefined (null) for candidate model "
            f"{candidate!r}; check the benchmark's splits, labels and sites"
        )
    if ref_name is not None and ref is None:
        raise GateDataError(
            f"metric {rule.metric!r} on benchmark {bench!r} is undefined (null) for {rule.reference} model "
            f"{ref_name!r} but defined for the candidate"
        )
    sign = _sign(rule.higher_is_better)
    base = float(rule.value) if ref_name is None else float(ref)  # type: ignore[arg-type]
    estimate = sign * (cand - base)
    stat = draws.statistic(candidate, bench, rule.metric)
    diffs = None
    units = None
    if stat is not None:
        c = draws.draws(candidate, bench, rule.metric)
        r = draws.draws(ref_name, bench, rule.metric) if ref_name is not None else float(rule.value)  # type: ignore[arg-type]
        diffs = sign * (c - r)
        units = int(stat.active.size)
    return _Pending(
        rule=rule,
        text=text,
        bench=bench,
        ref_name=ref_name,
        cand=cand,
        ref=ref,
        diffs=diffs,
        estimate=estimate,
        units=units,
    )


def _holm_levels(
    p_values: list[float], alpha_one_sided: float, correction: str
) -> tuple[list[float], list[bool]]:
    """Per test: its one-sided level, and whether Holm's step-down reached it (False: stopped earlier)."""
    m = len(p_values)
    if correction == "none":
        return [alpha_one_sided] * m, [True] * m
    order = sorted(range(m), key=lambda i: p_values[i])
    levels = [0.0] * m
    reached = [True] * m
    stopped = False
    for rank, i in enumerate(order):
        levels[i] = alpha_one_sided / (m - rank)
        reached[i] = not stopped
        if p_values[i] > levels[i]:
            stopped = True  # Holm: no later (larger p) hypothesis is rejected once one is not
    return levels, reached


def _fmt(v: float | None) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:+.4f}"


def _finish(p: _Pending, level: float, reached: bool, policy: GatePolicy, candidate: str) -> RuleResult:
    rule = p.rule
    draws = None if p.diffs is None else int(np.isfinite(p.diffs).sum())
    if p.diffs is None:
        ci = (p.estimate, p.estimate)
        bound = p.estimate
    else:
        ci = percentile_interval(p.diffs, 0.95)
        bound = lower_bound(p.diffs, level)
    clears = (bound > rule.threshold) if rule.strict else (bound >= rule.threshold)
    passed_test = clears and reached
    verdict = "pass" if passed_test else "fail"
    width = ci[1] - ci[0]
    if (
        not passed_test
        and rule.delta is not None
        and p.diffs is not None
        and width > 2 * rule.delta
        and ci[1] >= rule.threshold
    ):
        verdict = "inconclusive"
    what = f"{candidate} - {rule.value:g}" if p.ref_name is None else f"{candidate} - {p.ref_name}"
    op = ">" if rule.strict else ">="
    basis = (
        f"95% CI [{_fmt(ci[0])}, {_fmt(ci[1])}] over {p.units} units; lower bound at one-sided level "
        f"{level:.4g} = {_fmt(bound)}"
        if p.diffs is not None
        else f"point estimate (no per-unit data for {rule.metric}, not resampled)"
    )
    if verdict == "pass":
        outcome = "holds"
    elif verdict == "fail":
        outcome = (
            "does not hold" if reached else "not tested: Holm's step-down stopped at a rule with a smaller p"
        )
    else:
        outcome = (
            f"inconclusive: the 95% interval is wider than 2 x delta = {2 * float(rule.delta or 0):g} "
            f"(the test "
            f"set cannot resolve delta); `inconclusive: {policy.inconclusive}`"
        )
    reason = f"{what} = {_fmt(p.estimate)}; {basis}; needs {op} {rule.threshold:+g}: {outcome}"
    blocks = verdict == "fail" or (verdict == "inconclusive" and policy.inconclusive == "fail")
    return RuleResult(
        rule=p.text,
        test=rule.test,
        metric=rule.metric,
        benchmark=p.bench,
        reference_model=p.ref_name,
        verdict=verdict,
        passed=not blocks,
        candidate=p.cand,
        reference=p.ref,
        estimate=p.estimate,
        ci95=(float(ci[0]), float(ci[1])),
        bound=float(bound),
        level=level,
        p_value=p.p_value(),
        threshold=rule.threshold,
        units=p.units,
        draws=draws,
        resampled=p.diffs is not None,
        reason=reason,
    )


def _promotion(report: dict[str, Any], policy: GatePolicy, candidate: str, draws: _Draws) -> PromotionResult:
    pm = policy.primary_metric
    assert pm is not None
    champion = policy.champion or report.get("champion")
    margin = policy.promotion.margin
    common: dict[str, Any] = {
        "metric": pm.metric,
        "benchmark": pm.benchmark,
        "margin": margin,
        "champion": champion,
    }
    if not champion or champion not in report["models"]:
        return PromotionResult(
            verdict="no_champion",
            candidate=None,
            reference=None,
            estimate=None,
            ci95=None,
            bound=None,
            level=None,
            reason="no champion yet: a candidate that passes the gate may become champion",
            **common,
        )
    rule = GateRule(
        metric=pm.metric,
        test="superiority",
        reference="champion",
        margin=margin,
        benchmark=pm.benchmark,
        higher_is_better=pm.higher_is_better,
    )
    pending = _prepare(rule, report, policy, candidate, pm.benchmark, draws)
    if isinstance(pending, RuleResult):
        raise GateDataError(
            f"the primary metric {pm.metric} on {pm.benchmark} cannot be compared: {pending.reason}"
        )
    result = _finish(pending, policy.bootstrap.alpha / 2.0, True, policy, candidate)
    better = result.verdict == "pass"
    reason = result.reason.replace("holds", "better than the champion").replace(
        "does not hold", "not better than the champion (a tie or noise keeps the champion)"
    )
    return PromotionResult(
        verdict="better" if better else "not_better",
        candidate=result.candidate,
        reference=result.reference,
        estimate=result.estimate,
        ci95=result.ci95,
        bound=result.bound,
        level=result.level,
        reason=reason,
        **common,
    )


def decide(report: dict[str, Any], policy: GatePolicy, candidate: str) -> Decision:
    """Apply every rule (on every benchmark for `benchmark: all`) and the promotion test."""
    if candidate not in report.get("models", {}):
        raise GateDataError(
            f"candidate {candidate!r} is not in the report (models: "
            f"{', '.join(report.get('models', {}))}); pass --candidate with one of them"
        )
    all_benches = list(report.get("benchmarks") or report["models"][candidate].get("benchmarks", {}))
    if not all_benches:
        raise GateDataError("the report has no benchmarks to judge")
    draws = _Draws(report, policy)
    prepared: list[RuleResult | _Pending] = []
    owner: list[int] = []  # which policy rule each result belongs to
    for i, rule in enumerate(policy.rules):
        for bench in all_benches if rule.benchmark == "all" else [rule.benchmark]:
            prepared.append(_prepare(rule, report, policy, candidate, bench, draws))
            owner.append(i)
    tested = [p for p in prepared if isinstance(p, _Pending)]
    levels, reached = _holm_levels(
        [p.p_value() for p in tested], policy.bootstrap.alpha / 2.0, policy.bootstrap.correction
    )
    finished = iter(
        _finish(p, lv, r, policy, candidate) for p, lv, r in zip(tested, levels, reached, strict=True)
    )
    results = tuple(p if isinstance(p, RuleResult) else next(finished) for p in prepared)
    warnings = []
    for i, rule in enumerate(policy.rules):
        mine = [r for r, o in zip(results, owner, strict=True) if o == i]
        if mine and all(r.verdict == "not_applicable" for r in mine) and is_robustness_metric(rule.metric):
            warnings.append(
                f"{rule.describe()}: no benchmark of this report can carry it "
                f"({'; '.join(r.reason for r in mine)})"
            )
    return Decision(
        passed=all(r.passed for r in results),
        candidate=candidate,
        rules=results,
        promotion=_promotion(report, policy, candidate, draws),
        settings={
            "draws": policy.bootstrap.draws,
            "seed": policy.bootstrap.seed,
            "alpha": policy.bootstrap.alpha,
            "correction": policy.bootstrap.correction,
            "inconclusive": policy.inconclusive,
            "tested_rules": len(tested),
        },
        warnings=tuple(warnings),
    )


def primary_score(report: dict[str, Any], policy: GatePolicy, model: str) -> float:
    """The policy's primary metric (`benchmark`, `metric`) for `model`; a missing one is a GateDataError."""
    pm = policy.primary_metric
    if pm is None:  # unreachable for a validated policy; keeps the type narrow
        raise GateDataError("the gate policy names no primary_metric")
    value = _value(report, model, pm.benchmark, pm.metric, "ranked")
    if value is None:
        raise GateDataError(f"metric {pm.metric!r} on benchmark {pm.benchmark!r} is undefined for {model!r}")
    return value
