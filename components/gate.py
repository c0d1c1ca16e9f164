"""Component: apply the promotion policy to the report; its boolean output drives `dsl.If`."""

# No `from __future__ import annotations`: kfp reads the real annotation objects.
from kfp import dsl

from components.image import G2L_IMAGE


@dsl.component(base_image=G2L_IMAGE, install_kfp_package=False)
def gate_decision(report: str, gate_policy: str, candidate: str, cancer: str) -> bool:
    """Decide pass/fail with a reason per rule; writes decision.json beside the report."""
    from g2l.pipeline.steps import gate_report

    return gate_report(report, gate_policy, candidate, cancer=cancer)
