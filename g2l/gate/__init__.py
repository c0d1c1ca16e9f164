"""Promotion gate: a statistical policy applied to an evaluation report -> a Decision with reasons.

Rules are paired-bootstrap tests over test patients (non-inferiority, superiority, threshold) with
Holm's correction; the promotion test asks whether the candidate beats the champion on the primary
metric. A metric missing from the report is a data error (GateDataError), not a rejection, so a
pipeline can tell the two apart. See docs/adr/0008-statistical-gate.md.
"""

from g2l.gate.judge import decide, primary_score
from g2l.gate.policy import Bootstrap, GatePolicy, GateRule, PrimaryMetric, Promotion, load_policy
from g2l.gate.results import (
    VERDICT_LABELS,
    Decision,
    GateDataError,
    PromotionResult,
    RuleResult,
    load_report,
    write_decision,
)

__all__ = [
    "VERDICT_LABELS",
    "Bootstrap",
    "Decision",
    "GateDataError",
    "GatePolicy",
    "GateRule",
    "PrimaryMetric",
    "Promotion",
    "PromotionResult",
    "RuleResult",
    "decide",
    "load_policy",
    "load_report",
    "primary_score",
    "write_decision",
]
