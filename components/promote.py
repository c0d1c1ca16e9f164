"""Component: register the student with its lineage and move `champion` if it still wins."""

# No `from __future__ import annotations`: kfp reads the real annotation objects.
from kfp import dsl

from components.image import G2L_IMAGE


@dsl.component(base_image=G2L_IMAGE, install_kfp_package=False)
def promote_student(
    student: str,
    report: str,
    gate_policy: str,
    cancer: str,
    registry_uri: str,
    config_uri: str,
    artifact_root: str,
    manifest_uri: str,
    manifest_rev: str,
    manifest_repo: str,
    cache: str,
    image: str,
) -> str:
    """Promote through the registry (re-checking the champion at this moment); returns the summary line."""
    from g2l.pipeline.steps import promote_student as promote

    return promote(
        student=student,
        report=report,
        gate_policy=gate_policy,
        cancer=cancer,
        registry_uri=registry_uri,
        config_uri=config_uri,
        artifact_root=artifact_root,
        manifest_uri=manifest_uri,
        manifest_rev=manifest_rev,
        manifest_repo=manifest_repo,
        cache=cache,
        image=image,
    )
