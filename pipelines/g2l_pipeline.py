"""The g2l Kubeflow pipeline: manifest -> tiling fan-out -> shards -> embedding fan-out -> distill -> gate.

Every rule of the real backends that the DAG encodes is cited beside it; tests/test_pipeline_compile.py
checks each one on the compiled IR.
"""

# No `from __future__ import annotations`: kfp reads the pipeline signature's real annotations.

from collections.abc import Callable
from typing import Any

from kfp import dsl, kubernetes

from components import (
    G2L_IMAGE,
    cleanup_run,
    distill_student,
    distill_trainjob,
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
from g2l.pipeline.budgets import DEFAULT_BUDGETS, StepBudget
from g2l.pipeline.cluster import (
    ENV_CONFIG_MAP,
    ENV_KEYS,
    GPU_NODE_LABEL,
    GPU_NODE_TYPE,
    GPU_RESOURCE,
    SECRETS,
    STAGING_MOUNT,
)

PIPELINE_NAME = "g2l"
# Re-exported for tests and infra checks.
__all__ = ["ENV_CONFIG_MAP", "ENV_KEYS", "PIPELINE_NAME", "g2l_pipeline", "make_pipeline"]


def _cluster_env(task: dsl.PipelineTask) -> dsl.PipelineTask:
    """Pushgateway, MLflow and benchmark data from the ConfigMap; the run id and pod identity from the pod."""
    kubernetes.use_config_map_as_env(task, ENV_CONFIG_MAP, ENV_KEYS, optional=True)
    kubernetes.use_field_path_as_env(task, "G2L_RUN_ID", "metadata.labels['pipeline/runid']")
    kubernetes.use_field_path_as_env(task, "G2L_NAMESPACE", "metadata.namespace")
    return task


def _secrets(task: dsl.PipelineTask, *names: str) -> dsl.PipelineTask:
    """Env vars from the operator's Secrets (optional: a cluster without one runs without it)."""
    for name in names:
        ref = SECRETS[name]
        kubernetes.use_secret_as_env(task, ref.name, ref.keys, optional=True)
    return task


def _budget(task: dsl.PipelineTask, budget: StepBudget, *, cpu: Any, memory: str) -> dsl.PipelineTask:
    """CPU and memory, a pod timeout, a retry policy, staging disk and /dev/shm for one step.

    - The timeout is the pod's activeDeadlineSeconds (kfp-kubernetes `set_timeout`; the v2 driver copies
      it to the pod spec, backend/src/v2/driver/k8s.go at 2.17.0).
    - Retries back off from 1 min and may go on for the whole timeout: Argo measures the retry policy's
      maxDuration from the *first* attempt's start (argo-workflows workflow/controller/operator.go,
      `maxDurationDeadline = firstChildNode.StartedAt.Add(maxDuration)`), so KFP's default of 3600 s
      would never retry a preempted step that had run for more than an hour.
    - Staging is an emptyDir of the step's declared size at /cache (the image's HF_HOME, G2L_CACHE_DIR and
      TMPDIR), world-writable for the image's non-root user; multi-process steps get a memory-backed
      /dev/shm (the container runtime's default is 64 MiB; NCCL and DataLoader workers need more).
    """
    task.set_cpu_request(cpu).set_cpu_limit(cpu).set_memory_request(memory).set_memory_limit(memory)
    kubernetes.set_timeout(task, budget.timeout_s)
    task.set_retry(
        budget.retries,
        backoff_duration="60s",
        backoff_factor=2.0,
        backoff_max_duration=f"{budget.timeout_s}s",
    )
    if budget.staging_gi:
        kubernetes.empty_dir_mount(task, "staging", STAGING_MOUNT, size_limit=f"{budget.staging_gi}Gi")
    if budget.shm_gi:
        kubernetes.empty_dir_mount(task, "dshm", "/dev/shm", medium="Memory", size_limit=f"{budget.shm_gi}Gi")
    return _cluster_env(task)


def _gpus(task: dsl.PipelineTask, count: Any, *, require_gpu_node: bool) -> dsl.PipelineTask:
    """Request `count` GPUs (a literal or a STRING parameter); tolerate the GPU taint, pin to GPU nodes.

    The v2 driver resolves the count's placeholder with `GetStringValue()` and drops the limit when that
    is "" (backend/src/v2/driver/driver.go `initPodSpecPatch` + resolve.go
    `resolvePodSpecInputRuntimeParameter` at 2.17.0): an int parameter would silently give no GPU.
    """
    task.set_accelerator_type(GPU_RESOURCE).set_accelerator_limit(count)
    kubernetes.add_toleration(task, key=GPU_RESOURCE, operator="Exists", effect="NoSchedule")
    if require_gpu_node:
        kubernetes.add_node_selector(task, GPU_NODE_LABEL, GPU_NODE_TYPE)
    return task


def make_pipeline(budgets: dict[str, StepBudget] | None = None) -> Callable[..., Any]:
    """The pipeline with these step budgets (timeouts, staging); the defaults fit the shipped configs."""
    b = dict(DEFAULT_BUDGETS if budgets is None else budgets)

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
        tile_gpus: str = "0",
        embed_gpus: str = "1",
        distill_gpus: str = "8",
        distill_nodes: int = 1,
        embed_cpu: str = "16",
        distill_cpu: str = "72",
        max_distill_steps: int = 0,
    ) -> None:
        """Run G2L distillation for one cancer type, from the slide manifest to a promoted student.

        The run's outputs (student, report.json, decision.json) are indexed in
        ARTIFACT_ROOT/pipeline/runs/<run id>.json; the KFP UI shows them as the tasks' artifacts.

        Args:
            cancer: Cancer type (brca, prad, ...); names the registered model g2l-student-<cancer>.
            artifact_root: gs:// prefix (or local directory) under which every stage writes its outputs.
            config_yaml: The g2l config, as YAML text or the URI of a config file (one section per stage).
            manifest_uri: Slide manifest (CSV/Parquet): a path inside manifest_repo, a gs:// URI or a file.
            manifest_rev: Git revision of the DVC-tracked manifest; pinned to its commit when the run starts.
            manifest_repo: Git URL of the repo holding the manifest under DVC; empty = read manifest_uri.
            teacher: Teacher model overriding the config's embed.teacher (e.g. hf-hub:bioptimus/H-optimus-0).
            student: Student model overriding the config's distill.student (e.g. hibou-L).
            benchmarks: Comma-separated benchmark definitions (required; checked when the run starts).
            gate_policy: Promotion policy, as YAML text or a path/URI (e.g. configs/gate.yaml in the image).
            registry_uri: MLflow tracking/registry URI; empty = $MLFLOW_TRACKING_URI or the embedded store.
            tile_groups: Number of parallel tiling tasks; slides are split into this many groups.
            embed_groups: Number of parallel teacher-embedding tasks; shards are split among them by rank.
            tile_gpus: GPUs per tiling task for cuCIM decoding, a whole number as text (0 = CPU tiling).
            embed_gpus: GPUs per teacher-embedding task, a whole number as text (>= 1).
            distill_gpus: GPUs per distillation node (torchrun processes per node), as text (>= 1).
            distill_nodes: Distillation nodes; more than 1 runs a Kubeflow TrainJob across nodes.
            embed_cpu: CPUs of each embedding task (>= DataLoader workers + 1), e.g. "16".
            distill_cpu: CPUs of the distillation pod (>= GPUs x (DataLoader workers + 1)), e.g. "72".
            max_distill_steps: Stop distillation after this many steps (0 = the config's schedule).
        """
        cleanup = cleanup_run(cancer=cancer)
        _budget(
            cleanup.set_display_name("clean up the run").set_caching_options(False),
            b["cleanup"],
            cpu="1",
            memory="1Gi",
        )
        # Runs whatever the outcome: deletes the run's TrainJobs (a failed run must not hold GPU nodes).
        with dsl.ExitHandler(cleanup, name="run"):
            pinned = pin_inputs(
                config_yaml=config_yaml,
                manifest_uri=manifest_uri,
                manifest_rev=manifest_rev,
                manifest_repo=manifest_repo,
                artifact_root=artifact_root,
                benchmarks=benchmarks,
                tile_gpus=tile_gpus,
                embed_gpus=embed_gpus,
                distill_gpus=distill_gpus,
                distill_nodes=distill_nodes,
                embed_cpu=embed_cpu,
                distill_cpu=distill_cpu,
            )
            # The manifest at a moving rev is re-read every run; everything downstream is cached on hashes.
            pinned.set_caching_options(False).set_display_name("check parameters, pin config and manifest")
            _budget(pinned, b["pin"], cpu="1", memory="4Gi")
            _secrets(pinned, "git")

            groups = slide_groups(
                manifest=pinned.outputs["manifest"],
                manifest_sha256=pinned.outputs["manifest_sha256"],
                config_uri=pinned.outputs["config_uri"],
                n_groups=tile_groups,
            )
            _budget(groups.set_display_name("split slides"), b["split"], cpu="1", memory="2Gi")

            # Loop bodies take upstream values from their item (and pipeline parameters), nothing else.
            with dsl.ParallelFor(groups.output, name="tile-groups") as group:
                tiled = tile_slides(
                    manifest=group.manifest,
                    manifest_sha256=group.manifest_sha256,
                    slide_ids=group.slide_ids,
                    index=group.index,
                    config_uri=group.config_uri,
                    artifact_root=artifact_root,
                    cancer=cancer,
                    # Also a plain input so that kfp wires the UI parameter into the loop for the GPU request.
                    gpus=tile_gpus,
                )
                _budget(tiled.set_display_name("tile slides"), b["tile"], cpu="8", memory="32Gi")
                _gpus(tiled, tile_gpus, require_gpu_node=False)

            shards = write_shards(
                manifest=pinned.outputs["manifest"],
                manifest_sha256=pinned.outputs["manifest_sha256"],
                config_uri=pinned.outputs["config_uri"],
                artifact_root=artifact_root,
                tiled_groups=dsl.Collected(tiled.output),
            )
            _budget(shards.set_display_name("write shards"), b["shards"], cpu="4", memory="16Gi")

            ranks = embed_ranks(
                shards=shards.outputs["shards"],
                shards_sha256=shards.outputs["shards_sha256"],
                config_uri=pinned.outputs["config_uri"],
                world_size=embed_groups,
            )
            _budget(ranks.set_display_name("embedding ranks"), b["ranks"], cpu="1", memory="1Gi")

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
                    cpu=embed_cpu,
                )
                _budget(embedded.set_display_name("embed shards"), b["embed"], cpu=embed_cpu, memory="64Gi")
                _gpus(embedded, embed_gpus, require_gpu_node=True)
                _secrets(embedded, "hf_token")

            cache = finalize_cache(
                shards_sha256=shards.outputs["shards_sha256"],
                cancer=cancer,
                rank_caches=dsl.Collected(embedded.output),
            )
            _budget(cache.set_display_name("seal embedding cache"), b["seal"], cpu="1", memory="2Gi")

            distill_inputs = dict(
                shards=shards.outputs["shards"],
                cache=cache.outputs["Output"],
                config_uri=pinned.outputs["config_uri"],
                config_sha256=pinned.outputs["config_sha256"],
                artifact_root=artifact_root,
                student=student,
                gpus=distill_gpus,
                max_steps=max_distill_steps,
                cancer=cancer,
            )
            with dsl.If(distill_nodes == 1, name="single-node"):
                in_pod = distill_student(**distill_inputs, cpu=distill_cpu)
                _budget(
                    in_pod.set_display_name("distil student"), b["distill"], cpu=distill_cpu, memory="512Gi"
                )
                _gpus(in_pod, distill_gpus, require_gpu_node=True)
                _secrets(in_pod, "hf_token")
            with dsl.Else(name="multi-node"):
                # This pod only creates and watches the TrainJob: no GPU, a small CPU budget.
                on_nodes = distill_trainjob(
                    **distill_inputs,
                    nodes=distill_nodes,
                    image=G2L_IMAGE,
                    timeout_s=b["trainjob"].timeout_s,
                )
                _budget(
                    on_nodes.set_display_name("distil student (TrainJob)"),
                    b["trainjob"],
                    cpu="1",
                    memory="2Gi",
                )
                kubernetes.use_field_path_as_env(on_nodes, "G2L_POD_NAME", "metadata.name")
                kubernetes.use_field_path_as_env(on_nodes, "G2L_POD_UID", "metadata.uid")
                # The nodes run as this pod's account (its Workload Identity reads the bucket).
                kubernetes.use_field_path_as_env(on_nodes, "G2L_SERVICE_ACCOUNT", "spec.serviceAccountName")
            distilled = dsl.OneOf(in_pod.outputs["Output"], on_nodes.outputs["Output"])

            evaluated = evaluate_models(
                student=distilled,
                config_uri=pinned.outputs["config_uri"],
                teacher=teacher,
                benchmarks=benchmarks,
                cancer=cancer,
                registry_uri=registry_uri,
                artifact_root=artifact_root,
            )
            # The champion it compares against changes between runs: never served from the cache.
            evaluated.set_caching_options(False).set_display_name("evaluate")
            _budget(evaluated, b["evaluate"], cpu="8", memory="32Gi")
            _gpus(evaluated, 1, require_gpu_node=True)
            _secrets(evaluated, "hf_token", "mlflow")

            gate = gate_decision(
                report=evaluated.outputs["Output"],
                gate_policy=gate_policy,
                candidate="student",
                cancer=cancer,
            )
            _budget(
                gate.set_caching_options(False).set_display_name("gate"), b["gate"], cpu="1", memory="2Gi"
            )

            with dsl.If(gate.output == True, name="gate-passed"):  # noqa: E712 (kfp builds a condition from ==)
                promoted = promote_student(
                    student=distilled,
                    report=evaluated.outputs["Output"],
                    gate_policy=gate_policy,
                    cancer=cancer,
                    registry_uri=registry_uri,
                    config_uri=pinned.outputs["config_uri"],
                    artifact_root=artifact_root,
                    manifest_uri=manifest_uri,
                    # The commit pin_inputs resolved the rev to: what the run read is what promotion records.
                    manifest_rev=pinned.outputs["manifest_rev"],
                    manifest_repo=manifest_repo,
                    cache=cache.outputs["Output"],
                    image=G2L_IMAGE,
                )
                promoted.set_caching_options(False).set_display_name("promote")
                _budget(promoted, b["promote"], cpu="1", memory="4Gi")
                _secrets(promoted, "mlflow")

    return g2l_pipeline


g2l_pipeline = make_pipeline()
