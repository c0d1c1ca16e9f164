"""The compiled pipeline: its tasks, fan-outs, GPU requests, gate condition, parameters, reproducibility."""

import os
import subprocess
import sys

import pytest
import yaml

from g2l.pipeline.config import DEFAULT_IMAGE
from pipelines.compile import DEFAULT_OUT, compile_pipeline


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> tuple[dict, dict, str]:
    out = tmp_path_factory.mktemp("compiled") / "g2l_pipeline.yaml"
    compile_pipeline(out, image=DEFAULT_IMAGE)
    text = out.read_text()
    spec, platform = list(yaml.safe_load_all(text))
    return spec, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"], text


def _dag(spec: dict, component: str | None = None) -> dict:
    if component is None:
        return spec["root"]["dag"]["tasks"]
    return spec["components"][component]["dag"]["tasks"]


def _all_tasks(spec: dict) -> dict[str, dict]:
    """Every task of the pipeline, in the root DAG and inside loops and conditions, by name."""
    tasks = dict(_dag(spec))
    for comp in spec["components"].values():
        tasks.update(comp.get("dag", {}).get("tasks", {}))
    return tasks


def _executor(spec: dict, task: dict) -> dict:
    comp = spec["components"][task["componentRef"]["name"]]
    return spec["deploymentSpec"]["executors"][comp["executorLabel"]]["container"]


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
        "evaluate-models",
        "gate-decision",
        "promote-student",
    ):
        assert name in tasks, f"{name} missing from the compiled pipeline"
    root = _dag(spec)
    assert set(root["write-shards"]["dependentTasks"]) >= {"for-loop-1"}
    assert "finalize-cache" in root["distill-student"]["dependentTasks"]
    assert "distill-student" in root["evaluate-models"]["dependentTasks"]
    assert "evaluate-models" in root["gate-decision"]["dependentTasks"]


def test_tiling_and_embedding_fan_out_and_are_collected(compiled):
    spec, _, _ = compiled
    root = _dag(spec)
    loops = {name: t for name, t in root.items() if "parameterIterator" in t}
    assert len(loops) == 2
    by_producer = {t["parameterIterator"]["items"]["inputParameter"]: name for name, t in loops.items()}
    tile_loop = by_producer["pipelinechannel--slide-groups-Output"]
    embed_loop = by_producer["pipelinechannel--embed-ranks-Output"]
    assert "tile-slides" in _dag(spec, root[tile_loop]["componentRef"]["name"])
    assert "embed-shards" in _dag(spec, root[embed_loop]["componentRef"]["name"])
    # dsl.Collected: the loops' outputs feed the next stage as lists.
    collected = root["write-shards"]["inputs"]["parameters"]["tiled_groups"]["taskOutputParameter"]
    assert collected["producerTask"] == tile_loop
    collected = root["finalize-cache"]["inputs"]["parameters"]["rank_caches"]["taskOutputParameter"]
    assert collected["producerTask"] == embed_loop


@pytest.mark.parametrize(
    ("task", "param"), [("embed-shards", "embed_gpus"), ("distill-student", "distill_gpus")]
)
def test_embed_and_distill_request_gpus_on_gpu_nodes(compiled, task, param):
    spec, platform, _ = compiled
    tasks = _all_tasks(spec)
    accel = _executor(spec, tasks[task])["resources"]["accelerator"]
    assert accel["resourceType"] == "nvidia.com/gpu"
    assert param in accel["resourceCount"]  # the count is the UI parameter, not a constant
    executor = platform[spec["components"][tasks[task]["componentRef"]["name"]]["executorLabel"]]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in executor["tolerations"]
    assert "cloud.google.com/gke-accelerator" in executor["nodeSelector"]["labels"]


def test_cpu_stages_ask_for_no_gpu(compiled):
    spec, _, _ = compiled
    tasks = _all_tasks(spec)
    for name in ("pin-inputs", "slide-groups", "write-shards", "gate-decision", "promote-student"):
        resources = _executor(spec, tasks[name])["resources"]
        assert "accelerator" not in resources, name
        assert resources["resourceCpuLimit"] and resources["resourceMemoryLimit"]


def test_promotion_runs_only_when_the_gate_passes(compiled):
    spec, _, _ = compiled
    root = _dag(spec)
    conditions = [name for name, t in root.items() if t.get("triggerPolicy", {}).get("condition")]
    assert len(conditions) == 1
    condition = root[conditions[0]]
    expr = condition["triggerPolicy"]["condition"]
    assert "gate-decision-Output" in expr and expr.replace(" ", "").endswith("==true")
    assert "promote-student" in _dag(spec, condition["componentRef"]["name"])
    assert "promote-student" not in root


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
        "gate_policy",
        "registry_uri",
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


def test_compile_cli_swaps_the_image(tmp_path):
    out = tmp_path / "p.yaml"
    env = {**os.environ, "G2L_IMAGE": ""}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "g2l",
            "pipeline",
            "compile",
            "--out",
            str(out),
            "--image",
            "registry.example/g2l@sha256:abc",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert proc.stdout.strip().splitlines()[-1] == str(out)
    spec = next(yaml.safe_load_all(out.read_text()))
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {"registry.example/g2l@sha256:abc"}
    assert DEFAULT_IMAGE not in out.read_text()
