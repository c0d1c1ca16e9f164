"""Components: distil the student with torchrun in this pod, or wait for a multi-node Kubeflow TrainJob."""

# No `from __future__ import annotations`: kfp reads the real annotation objects.
from kfp import dsl
from kfp.dsl import Model, Output

from components.image import G2L_IMAGE


@dsl.component(base_image=G2L_IMAGE, install_kfp_package=False)
def distill_student(
    shards: str,
    cache: str,
    config_uri: str,
    config_sha256: str,
    artifact_root: str,
    student: str,
    gpus: str,
    cpu: str,
    max_steps: int,
    cancer: str,
    student_model: Output[Model],
) -> str:
    """Train the student on the cached teacher embeddings in this pod; returns the exported student.

    `config_sha256` is here for kfp's cache key only (the config file's identity); `cpu` is this pod's
    CPU limit, an input only so that kfp wires the parameter into the condition's DAG (the SDK does not
    propagate a channel used in a resource setter alone; the driver then cannot resolve it).
    """
    from g2l.pipeline.io import record_artifact
    from g2l.pipeline.steps import distill_local

    out = distill_local(
        cache=cache,
        config_uri=config_uri,
        artifact_root=artifact_root,
        student=student,
        gpus=int(gpus),
        max_steps=max_steps,
        cancer=cancer,
    )
    student_model.metadata.update(record_artifact(student_model.path, out, kind="student", cache=cache))
    return out


@dsl.component(base_image=G2L_IMAGE, install_kfp_package=False)
def distill_trainjob(
    shards: str,
    cache: str,
    config_uri: str,
    config_sha256: str,
    artifact_root: str,
    student: str,
    gpus: str,
    nodes: int,
    max_steps: int,
    image: str,
    cancer: str,
    timeout_s: int,
    student_model: Output[Model],
) -> str:
    """Run the distillation as a TrainJob over `nodes` x `gpus` GPUs and wait for it (this pod has no GPU)."""
    from g2l.pipeline.io import record_artifact
    from g2l.pipeline.trainjobs import distill_trainjob as run

    out = run(
        shards=shards,
        cache=cache,
        config_uri=config_uri,
        artifact_root=artifact_root,
        student=student,
        gpus=int(gpus),
        nodes=nodes,
        max_steps=max_steps,
        image=image,
        cancer=cancer,
        timeout_s=timeout_s,
    )
    student_model.metadata.update(record_artifact(student_model.path, out, kind="student", cache=cache))
    return out
