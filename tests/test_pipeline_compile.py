"""The compiled pipeline: its DAG, and every rule of the KFP v2 backend it must meet to run on a cluster.

Each rule names the backend source it encodes (kubeflow/pipelines at tag 2.17.0 unless stated).
"""

import os
import subprocess
import sys

import pytest
import yaml
from kfp import compiler, dsl

from g2l.pipeline.budgets import needed_for_config
from g2l.pipeline.config import DEFAULT_IMAGE
from g2l.pipeline.preflight import STEP_EXECUTORS, package_budgets, resource_problems
from pipelines.compile import DEFAULT_OUT, compile_pipeline

GPU_STEPS = ("exec-tile-slides", "exec-embed-shards", "exec-distill-student", "exec-evaluate-models")
STAGING_STEPS = (
    "exec-tile-slides",
    "exec-write-shards",
    "exec-embed-shards",
    "exec-distill-student",
    "exec-evaluate-models",
)


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> tuple[dict, dict, str]:
    out = tmp_path_factory.mktemp("compiled") / "g2l_pipeline.yaml"
    compile_pipeline(out, image=DEFAULT_IMAGE)
    text = out.read_text()
    spec, platform = list(yaml.safe_load_all(text))
    return spec, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"], text


def _all_tasks(spec: dict) -> dict[str, dict]:
    """Every task of the pipeline, in the root DAG and inside loops, conditions and the exit handler."""
    tasks = dict(spec["root"]["dag"]["tasks"])
    for comp in spec["components"].values():
        tasks.update(comp.get("dag", {}).get("tasks", {}))
    return tasks


def _executor(spec: dict, task: dict) -> dict:
    comp = spec["components"][task["componentRef"]["name"]]
    return spec["deploymentSpec"]["executors"][comp["executorLabel"]]["container"]


def _label(spec: dict, task: dict) -> str:
    return spec["components"][task["componentRef"]["name"]]["executorLabel"]


def test_compiled_pipeline_has_every_stage_in_dag_order(compiled):
    spec, _, _ = compiled
    tasks = _all_tasks(spec)
    for name in (
        "pin-inputs",
        "slide-groups",
        "tile-slides",
        "write-shards",
        "embed-ranks",
        "embed-shards",
        "finalize-cache",
        "distill-student",
        "distill-trainjob",
        "evaluate-models",
        "gate-decision",
        "promote-student",
        "cleanup-run",
    ):
        assert name in tasks, f"{name} missing from the compiled pipeline"
    body = spec["components"]["comp-exit-handler-1"]["dag"]["tasks"]
    assert "for-loop-2" in body["write-shards"]["dependentTasks"]
    distill = next(
        n for n, t in body.items() if t["componentRef"]["name"].startswith("comp-condition-branches")
    )
    assert "finalize-cache" in body[distill]["dependentTasks"]
    assert distill in body["evaluate-models"]["dependentTasks"]
    assert "evaluate-models" in body["gate-decision"]["dependentTasks"]


def test_the_exit_handler_runs_cleanup_whatever_the_outcome(compiled):
    spec, _, _ = compiled
    root = spec["root"]["dag"]["tasks"]
    assert set(root) == {"cleanup-run", "exit-handler-1"}  # everything else runs inside the handler
    cleanup = root["cleanup-run"]
    assert cleanup["dependentTasks"] == ["exit-handler-1"]
    assert cleanup["triggerPolicy"]["strategy"] == "ALL_UPSTREAM_TASKS_COMPLETED"  # also after a failure


def test_tiling_and_embedding_fan_out_and_are_collected(compiled):
    spec, _, _ = compiled
    body = spec["components"]["comp-exit-handler-1"]["dag"]["tasks"]
    loops = {name: t for name, t in body.items() if "parameterIterator" in t}
    by_producer = {t["parameterIterator"]["items"]["inputParameter"]: name for name, t in loops.items()}
    tile_loop = by_producer["pipelinechannel--slide-groups-Output"]
    embed_loop = by_producer["pipelinechannel--embed-ranks-Output"]
    assert "tile-slides" in spec["components"][body[tile_loop]["componentRef"]["name"]]["dag"]["tasks"]
    assert "embed-shards" in spec["components"][body[embed_loop]["componentRef"]["name"]]["dag"]["tasks"]
    collected = body["write-shards"]["inputs"]["parameters"]["tiled_groups"]["taskOutputParameter"]
    assert collected["producerTask"] == tile_loop
    collected = body["finalize-cache"]["inputs"]["parameters"]["rank_caches"]["taskOutputParameter"]
    assert collected["producerTask"] == embed_loop


def test_every_resource_count_is_a_literal_or_a_string_parameter(compiled):
    """driver.go `initPodSpecPatch` resolves the accelerator count with resolve.go
    `resolvePodSpecInputRuntimeParameter`, i.e. `val.GetStringValue()`: "" for a NUMBER parameter, and
    `if acceleratorType != "" && acceleratorCount != ""` then drops the limit: no GPU reaches the pod."""
    spec, _, _ = compiled
    assert resource_problems(spec) == []
    tasks = _all_tasks(spec)
    for task, param in (
        ("tile-slides", "tile_gpus"),
        ("embed-shards", "embed_gpus"),
        ("distill-student", "distill_gpus"),
    ):
        accel = _executor(spec, tasks[task])["resources"]["accelerator"]
        assert accel["resourceType"] == "nvidia.com/gpu"
        assert accel["resourceCount"] == f"{{{{$.inputs.parameters['pipelinechannel--{param}']}}}}"
        assert spec["root"]["inputDefinitions"]["parameters"][param]["parameterType"] == "STRING"
    assert _executor(spec, tasks["evaluate-models"])["resources"]["accelerator"]["resourceCount"] == "1"


def test_an_int_gpu_parameter_is_caught(tmp_path):
    """The rule itself: the IR an int parameter compiles to is flagged (what the old pipeline did)."""

    @dsl.component(base_image="python:3.11")
    def step(n: int) -> int:
        return n

    @dsl.pipeline(name="int-gpus")
    def pipe(gpus: int = 1):
        task = step(n=gpus)
        task.set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(gpus)

    out = tmp_path / "p.yaml"
    compiler.Compiler().compile(pipe, str(out))
    problems = resource_problems(next(yaml.safe_load_all(out.read_text())))
    assert len(problems) == 1 and "gpus of type NUMBER_INTEGER" in problems[0]


def test_resource_parameters_used_only_in_setters_are_wired_into_nested_dags(compiled):
    """kfp 2.17 does not add a channel used only in set_cpu_limit to a loop's or condition's inputs, so
    the driver could not resolve it; the pipeline passes it as a task input too (the rule checks it)."""
    spec, _, _ = compiled
    tasks = _all_tasks(spec)
    assert "pipelinechannel--embed_cpu" in tasks["embed-shards"]["inputs"]["parameters"]
    assert "pipelinechannel--distill_cpu" in tasks["distill-student"]["inputs"]["parameters"]


def test_gpu_steps_mount_a_memory_backed_dev_shm(compiled):
    """Pods get 64 MiB of /dev/shm from the container runtime; NCCL and DataLoader workers need more. The
    v2 driver turns kfp-kubernetes `emptyDirMounts` into emptyDir volumes with their medium (k8s.go)."""
    _, platform, _ = compiled
    for label in GPU_STEPS:
        shm = [m for m in platform[label]["emptyDirMounts"] if m["mountPath"] == "/dev/shm"]
        assert shm and shm[0]["medium"] == "Memory" and shm[0]["sizeLimit"].endswith("Gi"), label


def test_staging_steps_declare_their_disk_and_it_covers_the_shipped_plans(compiled):
    """Each bulk step stages under /cache on an emptyDir of declared size (k8s.go `EmptyDirMounts`,
    `MustParse(sizeLimit)`), at least what `g2l pipeline plan` needs for the shipped brca and prad."""
    _, platform, _ = compiled
    for label in STAGING_STEPS:
        staging = [m for m in platform[label]["emptyDirMounts"] if m["mountPath"] == "/cache"]
        assert staging and staging[0]["sizeLimit"].endswith("Gi"), label
    declared = package_budgets(platform)
    for cancer in ("brca", "prad"):
        need = needed_for_config(f"configs/{cancer}.yaml")
        for step, label in STEP_EXECUTORS.items():
            assert declared[label]["staging_gi"] >= need[step].staging_gi, (cancer, step)
            assert declared[label]["timeout_s"] >= need[step].timeout_s, (cancer, step)


def test_every_step_has_a_timeout_and_a_retry_policy_that_outlives_it(compiled):
    """Timeout: kfp-kubernetes `set_timeout` -> pod activeDeadlineSeconds (k8s.go). Retry: Argo's
    backoff.maxDuration counts from the first attempt's start (argo-workflows operator.go
    `firstChildNode.StartedAt.Add(maxDuration)`), so it must be at least the step's timeout."""
    spec, platform, _ = compiled
    for name, task in _all_tasks(spec).items():
        label = spec["components"][task["componentRef"]["name"]].get("executorLabel")
        if not label:
            continue
        timeout = int(platform[label]["activeDeadlineSeconds"])
        retry = task["retryPolicy"]
        assert timeout > 0 and retry["maxRetryCount"] >= 2, name
        assert int(retry["backoffMaxDuration"].rstrip("s")) >= timeout, name


def test_the_trainjob_waiter_asks_for_no_gpu_and_knows_its_pod(compiled):
    spec, platform, _ = compiled
    task = _all_tasks(spec)["distill-trainjob"]
    assert "accelerator" not in _executor(spec, task)["resources"]
    env = {e["name"]: e["fieldPath"] for e in platform[_label(spec, task)]["fieldPathAsEnv"]}
    assert env["G2L_POD_NAME"] == "metadata.name" and env["G2L_POD_UID"] == "metadata.uid"
    assert env["G2L_SERVICE_ACCOUNT"] == "spec.serviceAccountName"


def test_cpu_stages_ask_for_no_gpu(compiled):
    spec, _, _ = compiled
    tasks = _all_tasks(spec)
    for name in (
        "pin-inputs",
        "slide-groups",
        "write-shards",
        "gate-decision",
        "promote-student",
        "cleanup-run",
    ):
        resources = _executor(spec, tasks[name])["resources"]
        assert "accelerator" not in resources, name
        assert resources["resourceCpuLimit"] and resources["resourceMemoryLimit"]


def test_secrets_and_cluster_env_come_from_optional_sources(compiled):
    """Optional ConfigMap/Secret env (kfp-kubernetes `optional=True`, backend >= 2.15.0)."""
    spec, platform, _ = compiled
    tasks = _all_tasks(spec)
    embed = platform[_label(spec, tasks["embed-shards"])]
    assert embed["configMapAsEnv"][0]["optional"] is True
    assert {s["secretName"] for s in embed["secretAsEnv"]} == {"g2l-hf-token"}
    assert all(s["optional"] for s in embed["secretAsEnv"])
    promote = platform[_label(spec, tasks["promote-student"])]
    assert {s["secretName"] for s in promote["secretAsEnv"]} == {"g2l-mlflow-auth"}


def test_shards_cache_and_student_are_kfp_artifacts(compiled):
    spec, _, _ = compiled
    outputs = {
        "comp-write-shards": ("shards_data", "system.Dataset"),
        "comp-finalize-cache": ("cache_data", "system.Dataset"),
        "comp-distill-student": ("student_model", "system.Model"),
        "comp-distill-trainjob": ("student_model", "system.Model"),
        "comp-evaluate-models": ("metrics", "system.Metrics"),
    }
    for comp, (name, kind) in outputs.items():
        artifact = spec["components"][comp]["outputDefinitions"]["artifacts"][name]
        assert artifact["artifactType"]["schemaTitle"] == kind


def test_promotion_records_the_commit_the_run_pinned(compiled):
    spec, _, _ = compiled
    rev = _all_tasks(spec)["promote-student"]["inputs"]["parameters"]["manifest_rev"]
    assert rev == {"componentInputParameter": "pipelinechannel--pin-inputs-manifest_rev"}


def test_promotion_runs_only_when_the_gate_passes(compiled):
    spec, _, _ = compiled
    body = spec["components"]["comp-exit-handler-1"]["dag"]["tasks"]
    gated = [
        n
        for n, t in body.items()
        if "gate-decision-Output" in t.get("triggerPolicy", {}).get("condition", "")
    ]
    assert len(gated) == 1
    expr = body[gated[0]]["triggerPolicy"]["condition"]
    assert expr.replace(" ", "").endswith("==true")
    assert "promote-student" in spec["components"][body[gated[0]]["componentRef"]["name"]]["dag"]["tasks"]


def test_every_parameter_has_a_description_and_default(compiled):
    spec, _, _ = compiled
    params = spec["root"]["inputDefinitions"]["parameters"]
    for expected in (
        "cancer",
        "manifest_uri",
        "manifest_rev",
        "artifact_root",
        "teacher",
        "student",
        "config_yaml",
        "tile_groups",
        "embed_groups",
        "embed_gpus",
        "distill_gpus",
        "distill_nodes",
        "embed_cpu",
        "distill_cpu",
        "gate_policy",
        "registry_uri",
        "benchmarks",
    ):
        assert expected in params
    for name, p in params.items():
        assert p.get("description"), f"parameter {name} has no description"
        assert "defaultValue" in p or p.get("isOptional"), f"parameter {name} has no default"


def test_cache_keys_include_manifest_and_config_hashes(compiled):
    spec, _, _ = compiled
    tasks = _all_tasks(spec)
    assert tasks["pin-inputs"]["cachingOptions"] == {}  # re-reads the manifest's moving rev every run
    assert tasks["promote-student"]["cachingOptions"] == {}
    for name in ("tile-slides", "write-shards"):
        assert tasks[name]["cachingOptions"] == {"enableCache": True}
        assert "manifest_sha256" in tasks[name]["inputs"]["parameters"]
    assert "config_sha256" in tasks["distill-student"]["inputs"]["parameters"]
    assert "shards_sha256" in tasks["embed-shards"]["inputs"]["parameters"]


def test_components_run_the_project_image_without_pip_installs(compiled):
    spec, _, _ = compiled
    for executor in spec["deploymentSpec"]["executors"].values():
        container = executor["container"]
        assert container["image"] == DEFAULT_IMAGE
        assert "pip install" not in " ".join(container["command"])


def test_compile_is_reproducible_and_the_committed_file_is_fresh(compiled, tmp_path):
    _, _, text = compiled
    again = compile_pipeline(tmp_path / "again.yaml", image=DEFAULT_IMAGE)
    assert again.read_text() == text
    assert DEFAULT_OUT.read_text() == text, (
        "pipelines/compiled/g2l_pipeline.yaml is stale: run `g2l pipeline compile` and commit it"
    )


def test_compile_for_a_bigger_run_sizes_its_budgets_up(tmp_path):
    config = yaml.safe_load(open("configs/brca.yaml"))
    config["pipeline"]["plan"]["slides"] = 20000  # 20x the shipped run
    path = tmp_path / "big.yaml"
    path.write_text(yaml.safe_dump(config))
    out = compile_pipeline(tmp_path / "big-pipeline.yaml", image=DEFAULT_IMAGE, config=str(path))
    _, platform = list(yaml.safe_load_all(out.read_text()))
    declared = package_budgets(platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"])
    need = needed_for_config(str(path))
    assert declared["exec-distill-student"]["staging_gi"] == need["distill"].staging_gi > 800


def test_compile_cli_swaps_the_image(tmp_path):
    out = tmp_path / "p.yaml"
    env = {**os.environ, "G2L_IMAGE": ""}
    digest = "registry.example/g2l@sha256:" + "ab" * 32
    proc = subprocess.run(
        [sys.executable, "-m", "g2l", "pipeline", "compile", "--out", str(out), "--image", digest],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert proc.stdout.strip().splitlines()[-1] == str(out)
    spec = next(yaml.safe_load_all(out.read_text()))
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {digest}
    assert DEFAULT_IMAGE not in out.read_text()  # also the image the TrainJob and promotion record
