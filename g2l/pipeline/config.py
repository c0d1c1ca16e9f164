"""The `pipeline:` config section and the Kubeflow run parameters derived from a cancer's config file."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from g2l import __version__
from g2l.config import RunConfig, load_section, load_yaml, require
from g2l.pipeline.plan import PlanConfig

DEFAULT_IMAGE = f"ghcr.io/g2l-project/g2l:{__version__}"


@dataclasses.dataclass(frozen=True, kw_only=True)
class PipelineConfig:
    """How a cancer's run is submitted to Kubeflow and which values its pipeline parameters take."""

    image: str = DEFAULT_IMAGE
    host: str = ""
    experiment: str = ""
    pipeline_name: str = "g2l"
    namespace: str = ""
    service_account: str = "g2l-pipeline"
    benchmarks: tuple[str, ...] = ()
    gate_policy: str = ""
    registry_uri: str = ""
    tile_groups: int = 4
    embed_groups: int = 2
    tile_gpus: int = 0
    embed_gpus: int = 1
    distill_gpus: int = 1
    distill_nodes: int = 1
    max_distill_steps: int = 0
    embed_cpu: str = ""
    distill_cpu: str = ""
    enable_caching: bool = True
    plan: PlanConfig = dataclasses.field(default_factory=PlanConfig)

    def __post_init__(self) -> None:
        require(bool(self.image), "pipeline.image must name the project image, e.g. " + DEFAULT_IMAGE)
        require(bool(self.pipeline_name), "pipeline.pipeline_name must not be empty (e.g. 'g2l')")
        for key in ("tile_groups", "embed_groups", "distill_gpus", "distill_nodes"):
            value = getattr(self, key)
            require(value >= 1, f"pipeline.{key} must be >= 1, got {value}; use 1 for no fan-out")
        for key in ("tile_gpus", "embed_gpus", "max_distill_steps"):
            value = getattr(self, key)
            require(value >= 0, f"pipeline.{key} must be >= 0, got {value}")

    def cpu_for(self, step: str, workers: int) -> str:
        """CPUs of the embed or distill pod: the configured value, else what its processes need.

        Every rank runs `workers` DataLoader processes beside itself, so a pod needs
        ranks x (workers + 1) CPUs plus one for the launcher; fewer and the workers starve the GPUs.
        """
        configured = getattr(self, f"{step}_cpu")
        if configured:
            return str(configured)
        ranks = self.distill_gpus if step == "distill" else 1
        return str(ranks * (workers + 1) + 1)

    def experiment_for(self, cancer: str) -> str:
        """The KFP experiment runs of `cancer` go to (`pipeline.experiment` or g2l-<cancer>)."""
        return self.experiment or f"g2l-{cancer}"


def _text_or_path(value: str, base: Path) -> str:
    """Inline a local file (resolved against the config's directory or the CWD); URIs and text pass as is."""
    if not value or "\n" in value or "://" in value:
        return value
    # Paths in a config are read from the current directory, the config's directory or the checkout
    # holding configs/ (`configs/gate.yaml` from configs/brca.yaml).
    for candidate in (Path(value), base / value, base.parent / value):
        if candidate.is_file():
            return candidate.read_text()
    return value


def _registry_policy(path: Path) -> str:
    registry = load_yaml(path).get("registry") or {}
    return str(registry.get("policy") or "configs/gate.yaml")


def pipeline_arguments(config_path: str | Path, **overrides: Any) -> dict[str, Any]:
    """The pipeline's run parameters for one cancer config: run + pipeline sections, config inlined.

    The whole config file travels inline as `config_yaml` (and a local gate policy as its text), so
    a run in the cluster needs no file from the submitting machine.
    """
    path = Path(config_path)
    run = load_section(RunConfig, path, section="run")
    pipe = load_section(PipelineConfig, path, section="pipeline")
    # The manifest is named once, in the `manifest:` section the `g2l tile`/`g2l manifest` commands read.
    raw = load_yaml(path)
    manifest = raw.get("manifest") or {}
    args: dict[str, Any] = {
        "cancer": run.cancer,
        "artifact_root": run.artifact_root,
        "config_yaml": path.read_text(),
        "manifest_uri": str(manifest.get("path") or ""),
        "manifest_rev": str(manifest.get("rev") or ""),
        "manifest_repo": str(manifest.get("repo") or ""),
        # Empty = the config's embed.teacher / distill.student; --set teacher=... overrides for one run.
        "teacher": "",
        "student": "",
        "benchmarks": ",".join(pipe.benchmarks),
        # One policy per cancer: the registry's (it also ranks champions), unless the pipeline overrides it.
        "gate_policy": _text_or_path(pipe.gate_policy or _registry_policy(path), path.parent),
        "registry_uri": pipe.registry_uri,
        "tile_groups": pipe.tile_groups,
        "embed_groups": pipe.embed_groups,
        # GPU and CPU counts are STRING parameters: the KFP driver reads resource placeholders as strings.
        "tile_gpus": str(pipe.tile_gpus),
        "embed_gpus": str(pipe.embed_gpus),
        "distill_gpus": str(pipe.distill_gpus),
        "distill_nodes": pipe.distill_nodes,
        "embed_cpu": pipe.cpu_for("embed", _workers(raw, "embed", 2)),
        "distill_cpu": pipe.cpu_for("distill", _workers(raw, "distill", 2)),
        "max_distill_steps": pipe.max_distill_steps,
    }
    unknown = sorted(set(overrides) - set(args))
    require(
        not unknown, f"unknown pipeline parameter(s) {', '.join(unknown)}; valid: {', '.join(sorted(args))}"
    )
    args.update(overrides)
    for key in RESOURCE_PARAMETERS:  # `--set embed_gpus=2` parses as an int: the parameter is a string
        args[key] = str(args[key])
    return args


RESOURCE_PARAMETERS = ("tile_gpus", "embed_gpus", "distill_gpus", "embed_cpu", "distill_cpu")


def _workers(raw: dict[str, Any], section: str, default: int) -> int:
    value = (raw.get(section) or {}).get("num_workers")
    return int(value) if isinstance(value, int) else default
