"""Component: distil the student, with torchrun in this pod or as a multi-node Kubeflow TrainJob."""

# No `from __future__ import annotations`: kfp reads the real annotation objects.
from kfp import dsl

from components.image import G2L_IMAGE


@dsl.component(base_image=G2L_IMAGE, install_kfp_package=False)
def distill_student(
    shards: str,
    cache: str,
    config_uri: str,
    config_sha256: str,
    artifact_root: str,
    student: str,
    gpus: int,
    nodes: int,
    max_steps: int,
    image: str,
    cancer: str,
) -> str:
    """Train the student on the cached teacher embeddings; returns the exported student directory.

    `config_sha256` is here for kfp's cache key only (the config file's identity).
    """
    from g2l.pipeline.trainjobs import distill

    return distill(
        shards=shards,
        cache=cache,
        config_uri=config_uri,
        artifact_root=artifact_root,
        student=student,
        gpus=gpus,
        nodes=nodes,
        max_steps=max_steps,
        image=image,
        cancer=cancer,
    )
