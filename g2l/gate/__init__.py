"""Promotion gate: a statistical policy applied to an evaluation report -> a Decision with reasons.

Rules are paired-bootstrap tests over test patients (non-inferiority, superiority, threshold) with
Holm's correction; the promotion test asks whether the candidate beats the champion on the primary
metric. A metric missing from the report is a data error (GateDataError), not a rejection, so a
pipeline can tell the two apart. See docs/adr/0008-statistical-gate.md.
"""

from g2l.gate.judge import (
    Decision,
    GateDataError,
    PromotionResult,
    RuleResult,
    decide,
    load_report,
    primary_score,
    write_decision,
)
from g2l.gate.policy import Bootstrap, GatePolicy, GateRule, PrimaryMetric, Promotion, load_policy

__all__ = [
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
