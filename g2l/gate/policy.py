"""The gate policy (configs/gate*.yaml): statistical rules, bootstrap settings, the promotion test.

A rule is one of three tests on a metric, per benchmark (`all`: every benchmark of the report):
- `non_inferiority` against a reference model: pass iff the lower confidence bound of
  (candidate - reference) >= -delta;
- `superiority` against a reference model: pass iff the lower bound of (candidate - reference) > margin;
- `threshold` against a constant `value`: pass iff the lower bound of the candidate's metric >= value.
`reference` is a role (`teacher`, `champion`), any model name in the report (e.g. `untrained-student`),
or `constant` (for `threshold`). See docs/adr/0008-statistical-gate.md.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

from g2l.config import ConfigError, from_dict, load_yaml, require

TESTS = ("non_inferiority", "superiority", "threshold")
ROLES = ("teacher", "champion")
CORRECTIONS = ("holm", "none")
INCONCLUSIVE = ("fail", "pass")
MIN_DRAWS = 2000


@dataclasses.dataclass(frozen=True, kw_only=True)
class GateRule:
    """One test of the candidate's metric on one benchmark (or on every benchmark: `all`)."""

    metric: str
    test: str = "non_inferiority"
    reference: str | None = None  # None: `teacher` for comparisons, `constant` for a threshold
    value: float | None = None
    delta: float | None = None
    margin: float = 0.0
    benchmark: str = "all"
    higher_is_better: bool = True
    name: str = ""

    def __post_init__(self) -> None:
        where = f"gate rule {self.name or self.metric}"
        require(bool(self.metric), "gate rule: `metric` must name a report metric, e.g. lp_balanced_accuracy")
        require(self.test in TESTS, f"{where}: test must be one of {', '.join(TESTS)}, got {self.test!r}")
        if self.reference is None:
            object.__setattr__(self, "reference", "constant" if self.test == "threshold" else "teacher")
        require(bool(self.reference), f"{where}: reference must name a role, a model or `constant`")
        is_threshold = self.test == "threshold"
        require(
            is_threshold == (self.reference == "constant"),
            f"{where}: `test: threshold` goes with `reference: constant` (and a `value`); the other tests "
            f"compare with a model (teacher, champion or a model name), got reference {self.reference!r}",
        )
        require(
            is_threshold == (self.value is not None),
            f"{where}: `value` is required with test: threshold and only then",
        )
        if self.test == "non_inferiority":
            require(
                self.delta is not None and self.delta > 0,
                f"{where}: non_inferiority needs `delta` > 0, the largest loss that still counts as "
                f"equivalent (e.g. delta: 0.02 for two points of balanced accuracy)",
            )
        require(
            self.delta is None or (math.isfinite(self.delta) and self.delta > 0),
            f"{where}: delta must be a positive number, got {self.delta}",
        )
        require(math.isfinite(self.margin), f"{where}: margin must be a finite number")
        require(
            self.test == "superiority" or self.margin == 0.0,
            f"{where}: `margin` belongs to test: superiority; non_inferiority uses `delta`",
        )
        require(bool(self.benchmark), f"{where}: benchmark must be a benchmark name or 'all'")

    @property
    def threshold(self) -> float:
        """What the lower bound of the difference (or of the metric minus `value`) is compared with."""
        if self.test == "non_inferiority":
            return -float(self.delta)  # type: ignore[arg-type]
        return self.margin if self.test == "superiority" else 0.0

    @property
    def strict(self) -> bool:
        """Superiority needs the bound strictly above its margin; the other tests accept equality."""
        return self.test == "superiority"

    def describe(self, bench: str | None = None) -> str:
        """Readable form, e.g. `lp_auc: student - teacher >= -0.02 (non-inferiority) on bracs`."""
        where = bench or ("all benchmarks" if self.benchmark == "all" else self.benchmark)
        if self.test == "threshold":
            text = f"{self.metric} >= {self.value:g} (threshold) on {where}"
        elif self.test == "non_inferiority":
            text = (
                f"{self.metric}: candidate - {self.reference} >= -{self.delta:g} (non-inferiority) on {where}"
            )
        else:
            text = f"{self.metric}: candidate - {self.reference} > {self.margin:g} (superiority) on {where}"
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
class Bootstrap:
    """Paired bootstrap settings: draws, seed, two-sided level alpha, multiplicity correction."""

    draws: int = MIN_DRAWS
    seed: int = 0
    alpha: float = 0.05
    correction: str = "holm"

    def __post_init__(self) -> None:
        require(
            self.draws >= MIN_DRAWS,
            f"gate policy: bootstrap.draws must be >= {MIN_DRAWS} (the tails of a 95% interval need them), "
            f"got {self.draws}",
        )
        require(0.0 < self.alpha < 0.5, f"gate policy: bootstrap.alpha must be in (0, 0.5), got {self.alpha}")
        require(
            self.correction in CORRECTIONS,
            f"gate policy: bootstrap.correction must be one of {', '.join(CORRECTIONS)}, "
            f"got {self.correction!r}",
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class Promotion:
    """Superiority over the champion on the primary metric: lower bound of (candidate - champion) > margin."""

    margin: float = 0.0

    def __post_init__(self) -> None:
        require(
            math.isfinite(self.margin) and self.margin >= 0,
            f"gate policy: promotion.margin must be >= 0, got {self.margin}",
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class GatePolicy:
    """A promotion policy: rules, the bootstrap, the primary metric and how a candidate beats the champion."""

    rules: tuple[GateRule, ...]
    primary_metric: PrimaryMetric | None = None
    bootstrap: Bootstrap = dataclasses.field(default_factory=Bootstrap)
    inconclusive: str = "fail"
    promotion: Promotion = dataclasses.field(default_factory=Promotion)
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
        require(
            self.inconclusive in INCONCLUSIVE,
            f"gate policy: inconclusive must be one of {', '.join(INCONCLUSIVE)}, got {self.inconclusive!r}",
        )


_OLD_KEYS = ("comparator",)


def load_policy(path: str | Path) -> GatePolicy:
    """Read and validate a gate policy YAML (configs/gate.yaml)."""
    data: dict[str, Any] = load_yaml(path)
    for i, rule in enumerate(data.get("rules") or []):
        old = sorted(set(rule) & set(_OLD_KEYS)) if isinstance(rule, dict) else []
        if old:
            raise ConfigError(
                f"{path}: rules[{i}] uses {', '.join(old)} (the old point-estimate gate). Rules are now "
                f"statistical tests: `test: non_inferiority` with `delta` (e.g. `margin: -0.01` becomes "
                f"`delta: 0.01`), `test: superiority` with `margin`, or `test: threshold` with `value`; "
                f"see configs/gate.yaml and docs/adr/0008-statistical-gate.md"
            )
    return from_dict(GatePolicy, data, where=str(path))


__all__ = [
    "Bootstrap",
    "GatePolicy",
    "GateRule",
    "PrimaryMetric",
    "Promotion",
    "ROLES",
    "TESTS",
    "load_policy",
]
