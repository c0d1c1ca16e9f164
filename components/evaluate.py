"""Component: evaluate student, teacher and champion on the benchmarks; kfp Metrics and an HTML report."""

# No `from __future__ import annotations`: kfp reads the real annotation objects.
from kfp import dsl
from kfp.dsl import HTML, Metrics, Output

from components.image import G2L_IMAGE


@dsl.component(base_image=G2L_IMAGE, install_kfp_package=False)
def evaluate_models(
    student: str,
    config_uri: str,
    teacher: str,
    benchmarks: str,
    cancer: str,
    registry_uri: str,
    artifact_root: str,
    metrics: Output[Metrics],
    report_html: Output[HTML],
) -> str:
    """Run the benchmarks; log every metric to kfp and the report page as HTML; returns report.json's URI."""
    from g2l.pipeline.steps import evaluate_student

    result = evaluate_student(
        student=student,
        config_uri=config_uri,
        teacher=teacher,
        benchmarks=benchmarks,
        cancer=cancer,
        registry_uri=registry_uri,
        artifact_root=artifact_root,
        html_out=report_html.path,
    )
    for name, value in result.metrics.items():
        metrics.log_metric(name, value)
    return result.report_uri
