"""Component: the pipeline's exit handler (runs whatever the outcome): delete the run's TrainJobs."""

# No `from __future__ import annotations`: kfp reads the real annotation objects.
from kfp import dsl

from components.image import G2L_IMAGE


@dsl.component(base_image=G2L_IMAGE, install_kfp_package=False)
def cleanup_run(cancer: str) -> str:
    """Delete this run's TrainJobs (in a cluster) and, when infra asks for it, its metric groups."""
    import json

    from g2l.pipeline.cleanup import cleanup_run as cleanup

    return json.dumps(cleanup(), sort_keys=True)
