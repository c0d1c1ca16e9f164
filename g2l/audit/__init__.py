"""Reproducibility audit of a registered model version: every lineage hash re-derived, line by line."""

from g2l.audit.report import AuditReport, Check, print_report
from g2l.audit.version import audit, audit_lineage

__all__ = ["AuditReport", "Check", "audit", "audit_lineage", "print_report"]
