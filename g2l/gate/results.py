"""What the gate decides, as data: rule and promotion results, the Decision; report.json in, decision out."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any


class GateDataError(ValueError):
    """The report cannot be judged (missing model, benchmark or metric); names what is missing."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class RuleResult:
    """One rule judged on one benchmark, with its interval, bound and verdict."""

    rule: str
    test: str
    metric: str
    benchmark: str
    reference_model: str | None
    verdict: str  # pass | fail | inconclusive | not_applicable
    passed: bool  # does not block the gate (pass, not applicable, or inconclusive under `inconclusive: pass`)
    candidate: float | None
    reference: float | None
    estimate: float | None  # candidate - reference (candidate - value for a threshold), higher-is-better sign
    ci95: tuple[float, float] | None
    bound: float | None  # the lower bound at `level`, compared with `threshold`
    level: float | None  # one-sided level of `bound` after the multiplicity correction
    p_value: float | None
    threshold: float | None
    units: int | None
    draws: int | None
    resampled: bool
    reason: str


    def line(self) -> str:
        """One line for logs: the verdict (PASS, FAIL, INCONCLUSIVE, N/A), the rule and its reason."""
        return f"{VERDICT_LABELS.get(self.verdict, self.verdict.upper())} {self.rule}: {self.reason}"


#: How each verdict is printed: "passed" alone would show a not-applicable rule as a pass.
VERDICT_LABELS = {"pass": "PASS", "fail": "FAIL", "inconclusive": "INCONCLUSIVE", "not_applicable": "N/A"}


@dataclasses.dataclass(frozen=True, kw_only=True)
class PromotionResult:
    """Superiority over the champion on the primary metric."""

    verdict: str  # better | not_better | no_champion
    champion: str | None
    metric: str
    benchmark: str
    candidate: float | None
    reference: float | None
    estimate: float | None
    ci95: tuple[float, float] | None
    bound: float | None
    level: float | None
    margin: float
    reason: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class Decision:
    """The verdict: `passed` when no rule blocks; `promote` when it also beats the champion (if any)."""

    passed: bool
    candidate: str
    rules: tuple[RuleResult, ...]
    promotion: PromotionResult
    settings: dict[str, Any]
    warnings: tuple[str, ...] = ()

    @property
    def promote(self) -> bool:
        """Eligible for the champion alias: passed, and better than the champion or no champion yet."""
        return self.passed and self.promotion.verdict in ("better", "no_champion")

    def to_dict(self) -> dict[str, Any]:
        """decision.json form (see docs/contracts.md)."""
        return _clean(
            {
                "passed": self.passed,
                "promote": self.promote,
                "candidate": self.candidate,
                "rules": [dataclasses.asdict(r) for r in self.rules],
                "promotion": dataclasses.asdict(self.promotion),
                "settings": self.settings,
                "warnings": list(self.warnings),
            }
        )


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def load_report(path: str | Path) -> dict[str, Any]:
    """Read report.json (a local path or a storage URI); a missing or malformed file is a GateDataError."""
    text = str(path)
    try:
        if "://" in text:
            from g2l import storage

            raw = storage.read_text(text)
        else:
            p = Path(text)
            if not p.is_file():
                raise FileNotFoundError(text)
            raw = p.read_text()
    except FileNotFoundError as exc:
        raise GateDataError(f"report {text} does not exist; run `g2l evaluate --out DIR` first") from exc
    try:
        report = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise GateDataError(f"report {text} is not valid JSON: {exc}") from exc
    if not isinstance(report, dict) or not isinstance(report.get("models"), dict):
        raise GateDataError(f"report {text} has no `models` mapping; is it a g2l evaluate report.json?")
    return report


def write_decision(path: str | Path, decision: Decision) -> None:
    """Write decision.json atomically."""
    from g2l.evaluate.report import atomic_write_text

    atomic_write_text(path, json.dumps(decision.to_dict(), indent=2) + "\n")
