"""The g2l Kubeflow pipeline: manifest -> tiling fan-out -> shards -> embedding fan-out -> distill -> gate."""

# No `from __future__ import annotations`: kfp reads the pipeline signature's real annotations.

from typing import Any

from kfp import dsl, kubernetes

from components import (
    G2L_IMAGE,
    distill_student,
    embed_ranks,
    embed_shards,
    evaluate_models,
    finalize_cache,
    gate_decision,
    pin_inputs,
    promote_student,
    slide_groups,
    tile_slides,
    write_shards,
)

PIPELINE_NAME = "g2l"
GPU_RESOURCE = "nvidia.com/gpu"
# GKE labels GPU nodes with their accelerator and taints them `nvidia.com/gpu=present:NoSchedule`.
GPU_NODE_LABEL = "cloud.google.com/gke-accelerator"
GPU_NODE_TYPE = "nvidia-h100-80gb"
# Cluster-wide settings come from this ConfigMap (infra/base/pipeline-env.yaml), not from parameters,
# so that they do not enter the cache keys.
ENV_CONFIG_MAP = "g2l-pipeline-env"
ENV_KEYS = {"pushgateway": "G2L_PUSHGATEWAY", "mlflow_tracking_uri": "MLFLOW_TRACKING_URI"}


def _cluster_env(task: dsl.PipelineTask) -> dsl.PipelineTask:
    """Pushgateway and MLflow addresses from the ConfigMap; the run id from the pod's KFP label."""
    kubernetes.use_config_map_as_env(task, ENV_CONFIG_MAP, ENV_KEYS, optional=True)
    kubernetes.use_field_path_as_env(task, "G2L_RUN_ID", "metadata.labels['pipeline/runid']")
    return task


def _resources(task: dsl.PipelineTask, cpu: str, memory: str) -> dsl.PipelineTask:
    task.set_cpu_request(cpu).set_cpu_limit(cpu).set_memory_request(memory).set_memory_limit(memory)
    return _cluster_env(task)


def _gpus(task: dsl.PipelineTask, count: Any, *, require_gpu_node: bool) -> dsl.PipelineTask:
    """Request `count` GPUs; tolerate the GPU taint, and pin to GPU nodes where the task needs one."""
    task.set_accelerator_type(GPU_RESOURCE).set_accelerator_limit(count)
    kubernetes.add_toleration(task, key=GPU_RESOURCE, operator="Exists", effect="NoSchedule")
    if require_gpu_node:
        kubernetes.add_node_selector(task, GPU_NODE_LABEL, GPU_NODE_TYPE)
    return task


@dsl.pipeline(
    name=PIPELINE_NAME,
    description="Distil a giga-scale pathology teacher into a cancer-specific "
    "ViT-L student (G2L): tiling, teacher embedding cache, distillation, evaluation, gated promotion.",
)
def g2l_pipeline(
    cancer: str = "brca",
    artifact_root: str = "gs://g2l-artifacts/brca",
    config_yaml: str = "gs://g2l-artifacts/configs/brca.yaml",
    manifest_uri: str = "manifests/brca.csv",
    manifest_rev: str = "main",
    manifest_repo: str = "",
    teacher: str = "",
    student: str = "",
    benchmarks: str = "",
    gate_policy: str = "configs/gate.yaml",
    registry_uri: str = "",
    tile_groups: int = 8,
    embed_groups: int = 4,
    tile_gpus: int = 0,
    embed_gpus: int = 1,
    distill_gpus: int = 8,
    distill_nodes: int = 1,
    max_distill_steps: int = 0,
) -> str:
    """Run G2L distillation for one cancer type, from the slide manifest to a promoted student.

    Returns the URI of the evaluation's report.json (decision.json and report.html lie beside it).

    Args:
        cancer: Cancer type (brca, prad, ...); names the registered model g2l-student-<cancer>.
        artifact_root: gs:// prefix (or local directory) under which every stage writes its outputs.
        config_yaml: The g2l config, as YAML text or the URI of a config file (one section per stage).
        manifest_uri: Slide manifest (CSV/Parquet): a path inside manifest_repo, a gs:// URI or a file.
        manifest_rev: Git revision of the DVC-tracked manifest (branch, tag or commit); empty = as is.
        manifest_repo: Git URL of the repo holding the manifest under DVC; empty = read manifest_uri directly.
        teacher: Teacher model overriding the config's embed.teacher (e.g. hf-hub:bioptimus/H-optimus-0).
        student: Student model overriding the config's distill.student (e.g. vit_large_patch14_reg4_dinov2).
        benchmarks: Comma-separated benchmark definition files; empty = the config's evaluate.benchmarks.
        gate_policy: Promotion policy, as YAML text or a path/URI (e.g. configs/gate.yaml in the image).
        registry_uri: MLflow tracking/registry URI; empty = $MLFLOW_TRACKING_URI or the embedded store.
        tile_groups: Number of parallel tiling tasks; slides are split into this many groups.
        embed_groups: Number of parallel teacher-embedding tasks; shards are split among them by rank.
        tile_gpus: GPUs per tiling task for cuCIM decoding (0 = CPU tiling).
        embed_gpus: GPUs per teacher-embedding task.
        distill_gpus: GPUs per distillation node (torchrun processes per node).
        distill_nodes: Distillation nodes; more than 1 runs a Kubeflow TrainJob across nodes.
        max_distill_steps: Stop distillation after this many steps (0 = the config's schedule).
    """
    pinned = pin_inputs(
        config_yaml=config_yaml,
        manifest_uri=manifest_uri,
        manifest_rev=manifest_rev,
        manifest_repo=manifest_repo,
        artifact_root=artifact_root,
    )
    # The manifest at a moving rev must be re-read every run; everything downstream is cached on hashes.
    pinned.set_caching_options(False).set_display_name("pin config and manifest")
    _resources(pinned, "1", "4Gi")

    groups = slide_groups(
        manifest=pinned.outputs["manifest"],
        manifest_sha256=pinned.outputs["manifest_sha256"],
        config_uri=pinned.outputs["config_uri"],
        n_groups=tile_groups,
    )
    _resources(groups.set_display_name("split slides"), "1", "2Gi")

    # Loop bodies take upstream values from their item (and pipeline parameters), nothing else.
    with dsl.ParallelFor(groups.output, name="tile-groups") as group:
        tiled = tile_slides(
            manifest=group.manifest,
            manifest_sha256=group.manifest_sha256,
            slide_ids=group.slide_ids,
            config_uri=group.config_uri,
            artifact_root=artifact_root,
            cancer=cancer,
            # Also a plain input so that kfp wires the UI parameter into the loop for the GPU request.
            gpus=tile_gpus,
        )
        _resources(tiled.set_display_name("tile slides").set_retry(2), "8", "32Gi")
        _gpus(tiled, tile_gpus, require_gpu_node=False)

    shards = write_shards(
        manifest=pinned.outputs["manifest"],
        manifest_sha256=pinned.outputs["manifest_sha256"],
        config_uri=pinned.outputs["config_uri"],
        artifact_root=artifact_root,
        tiled_groups=dsl.Collected(tiled.output),
    )
    _resources(shards.set_display_name("write shards"), "4", "16Gi")

    ranks = embed_ranks(
        shards=shards.outputs["shards"],
        shards_sha256=shards.outputs["shards_sha256"],
        config_uri=pinned.outputs["config_uri"],
        world_size=embed_groups,
    )
    _resources(ranks.set_display_name("embedding ranks"), "1", "1Gi")

    with dsl.ParallelFor(ranks.output, name="embed-groups") as item:
        embedded = embed_shards(
            shards=item.shards,
            shards_sha256=item.shards_sha256,
            config_uri=item.config_uri,
            artifact_root=artifact_root,
            teacher=teacher,
            rank=item.rank,
            world_size=embed_groups,
            cancer=cancer,
            gpus=embed_gpus,
        )
        _resources(embedded.set_display_name("embed shards").set_retry(2), "8", "64Gi")
        _gpus(embedded, embed_gpus, require_gpu_node=True)

    cache = finalize_cache(
        shards=shards.outputs["shards"],
        shards_sha256=shards.outputs["shards_sha256"],
        config_uri=pinned.outputs["config_uri"],
        artifact_root=artifact_root,
        teacher=teacher,
        cancer=cancer,
        rank_caches=dsl.Collected(embedded.output),
    )
    _resources(cache.set_display_name("seal embedding cache"), "2", "8Gi")

    distilled = distill_student(
        shards=shards.outputs["shards"],
        cache=cache.output,
        config_uri=pinned.outputs["config_uri"],
        config_sha256=pinned.outputs["config_sha256"],
        artifact_root=artifact_root,
        student=student,
        gpus=distill_gpus,
        nodes=distill_nodes,
        max_steps=max_distill_steps,
        image=G2L_IMAGE,
        cancer=cancer,
    )
    _resources(distilled.set_display_name("distil student").set_retry(3), "16", "128Gi")
    _gpus(distilled, distill_gpus, require_gpu_node=True)
    kubernetes.use_field_path_as_env(distilled, "G2L_NAMESPACE", "metadata.namespace")

    evaluated = evaluate_models(
        student=distilled.output,
        config_uri=pinned.outputs["config_uri"],
        teacher=teacher,
        benchmarks=benchmarks,
        cancer=cancer,
        registry_uri=registry_uri,
        artifact_root=artifact_root,
    )
    # The champion it compares against changes between runs: never served from the cache.
    evaluated.set_caching_options(False).set_display_name("evaluate")
    _resources(evaluated, "8", "32Gi")
    _gpus(evaluated, 1, require_gpu_node=True)

    gate = gate_decision(
        report=evaluated.outputs["Output"], gate_policy=gate_policy, candidate="student", cancer=cancer
    )
    _resources(gate.set_caching_options(False).set_display_name("gate"), "1", "2Gi")

    with dsl.If(gate.output == True, name="gate-passed"):  # noqa: E712 (kfp builds a condition from ==)
        promoted = promote_student(
            student=distilled.output,
            report=evaluated.outputs["Output"],
            gate_policy=gate_policy,
            cancer=cancer,
            registry_uri=registry_uri,
            config_uri=pinned.outputs["config_uri"],
            artifact_root=artifact_root,
            manifest_uri=manifest_uri,
            manifest_rev=manifest_rev,
            manifest_repo=manifest_repo,
            cache=cache.output,
            image=G2L_IMAGE,
        )
        _resources(promoted.set_caching_options(False).set_display_name("promote"), "1", "4Gi")

    return evaluated.outputs["Output"]
