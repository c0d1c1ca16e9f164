"""`g2l pipeline preflight`: every rule a cluster run must meet, checked before any upload or GPU-hour.

Static rules read the cancer's config and the compiled pipeline only (they run offline); the live rules
(g2l.pipeline.preflight_live) ask the KFP API, the Kubernetes API and MLflow. Each rule yields one
`Check`; a failed check's message names the fix.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from g2l.config import ConfigError
from g2l.distill.config import STUDENT_HUB

# Directories infra/Dockerfile copies into the image (its WORKDIR): a relative path under one of them is
# readable by every pod.
IMAGE_DIRS = ("configs", "g2l", "components", "pipelines")
_PLACEHOLDER = re.compile(r"^\{\{\$\.inputs\.parameters\['([^']+)'\]\}\}$")
_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
# Zoo names whose weights come from the (gated) Hugging Face hub when no weights file is given.
HUB_MODELS = ("h-optimus-0", "hibou-l", "uni", "uni2-h", "virchow2", "prov-gigapath")
_GIT_REMOTE = re.compile(r"^(https?://|ssh://|git@[^:]+:|git://)")


@dataclasses.dataclass(frozen=True)
class Check:
    """One rule's verdict: its name, pass/fail, and a line that says what was found or how to fix it."""

    rule: str
    ok: bool
    message: str

    def line(self) -> str:
        """`ok   rule: message` or `FAIL rule: message`."""
        return f"{'ok  ' if self.ok else 'FAIL'} {self.rule}: {self.message}"


def _ok(rule: str, message: str) -> Check:
    return Check(rule, True, message)


def _fail(rule: str, message: str) -> Check:
    return Check(rule, False, message)


# --- the config -----------------------------------------------------------------------------------


def check_artifact_root(root: str) -> Check:
    """Every pod of a cluster run reads what the previous steps wrote: the root must be gs://."""
    if root.startswith("gs://"):
        return _ok("artifact-root", root)
    return _fail(
        "artifact-root",
        f"run.artifact_root {root!r} is pod-local: steps share nothing through it; set it to "
        "gs://YOUR-BUCKET/g2l/<cancer> (the bucket the pipeline's service account may write)",
    )


def check_manifest(manifest: dict[str, Any]) -> Check:
    """The manifest must be readable by every pod and pinned: a gs:// object, or a remote repo + rev."""
    path, rev, repo = (str(manifest.get(k) or "") for k in ("path", "rev", "repo"))
    if not path:
        return _fail(
            "manifest", "manifest.path is empty: name the training manifest (e.g. manifests/brca.csv)"
        )
    if path.startswith("gs://") and not repo:
        return _ok("manifest", f"{path} (copied under the artifact root when the run starts)")
    if not repo:
        return _fail(
            "manifest",
            f"manifest.path {path!r} is a file on this machine: pods cannot read it; set manifest.repo "
            "to the "
            "git URL of the repository that tracks it with DVC and manifest.rev to a tag or commit "
            "(or upload it to gs:// and set manifest.path to that URI)",
        )
    if not _GIT_REMOTE.match(repo):
        return _fail(
            "manifest",
            f"manifest.repo {repo!r} is not a remote git URL (https://, ssh:// or git@host:); pods clone it",
        )
    if not rev or rev.upper() == "HEAD":
        return _fail(
            "manifest",
            f"manifest.rev is {rev or 'empty'!r}: the manifest is unpinned; set it to a tag or commit of "
            f"{repo} (the run pins it to a commit when it starts, and promotion records that commit)",
        )
    return _ok("manifest", f"{path} at {rev} of {repo}")


def _benchmark_problem(name: str, base: Path) -> str | None:
    if name.startswith("gs://"):
        return None  # read at run start, where it must be reachable (pin_inputs checks it)
    path = Path(name)
    local = path if path.is_absolute() else base / path
    if path.is_absolute() or path.parts[0] not in IMAGE_DIRS:
        return f"{name} is not in the image nor on gs://: upload it to gs:// or ship it under configs/"
    if not local.is_file():
        return f"{name} not found in this checkout (the image copies configs/ from it)"
    data = yaml.safe_load(local.read_text()) or {}
    root = str(data.get("root") or "")
    if data.get("generate") or root.startswith("gs://") or root.startswith("${G2L_DATA"):
        return None
    return (
        f"{name}: its data root {root!r} is not on gs://; point it at gs://... or at ${{G2L_DATA}} "
        "(set benchmark_data in the g2l-pipeline-env ConfigMap to the gs:// prefix holding the data)"
    )


def check_benchmarks(benchmarks: Iterable[str], checkout: Path) -> Check:
    """A gated run needs benchmarks every pod can read (their reachability is checked again at run start)."""
    names = [b for b in benchmarks if b]
    if not names:
        return _fail(
            "benchmarks",
            "pipeline.benchmarks is empty: the gate has nothing to compare; list benchmark definitions "
            "(configs/benchmarks/*.yaml with data under ${G2L_DATA}, or gs:// URIs)",
        )
    problems = [p for p in (_benchmark_problem(n, checkout) for n in names) if p]
    if problems:
        return _fail("benchmarks", "; ".join(problems))
    return _ok("benchmarks", ", ".join(names))


def check_gpu_counts(pipe: dict[str, Any]) -> Check:
    """GPU counts are whole numbers (tile/embed >= 0, distill >= 1): they become STRING parameters."""
    problems = []
    for key, minimum in (("tile_gpus", 0), ("embed_gpus", 0), ("distill_gpus", 1)):
        value = pipe.get(key, minimum)
        if isinstance(value, bool) or not str(value).strip().isdigit() or int(str(value)) < minimum:
            problems.append(f"pipeline.{key}={value!r} must be a whole number >= {minimum}")
    if problems:
        return _fail("gpu-counts", "; ".join(problems))
    return _ok(
        "gpu-counts", ", ".join(f"{k}={pipe.get(k)}" for k in ("tile_gpus", "embed_gpus", "distill_gpus"))
    )


def check_cpus(args: dict[str, Any], raw: dict[str, Any]) -> Check:
    """Each rank's DataLoader workers need their own CPU: limits below ranks x (workers + 1) starve GPUs."""
    problems = []
    for step, ranks in (("embed", 1), ("distill", int(args["distill_gpus"]))):
        workers = int((raw.get(step) or {}).get("num_workers") or 0)
        need = ranks * (workers + 1)
        cpu = str(args[f"{step}_cpu"])
        have = float(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)
        if have < need:
            problems.append(
                f"{step}_cpu={cpu} < {ranks} rank(s) x ({workers} workers + 1) = {need}; "
                f"raise pipeline.{step}_cpu or lower {step}.num_workers"
            )
    if problems:
        return _fail("cpu", "; ".join(problems))
    return _ok("cpu", f"embed_cpu={args['embed_cpu']}, distill_cpu={args['distill_cpu']}")


def image_pinned(image: str) -> bool:
    """A digest (repo@sha256:...) or a tag other than `latest` (a moving tag runs different code later)."""
    if _DIGEST.search(image):
        return True
    name = image.rsplit("/", 1)[-1]
    return ":" in name and name.rsplit(":", 1)[1] not in ("", "latest")


def check_weights(raw: dict[str, Any]) -> Check:
    """Teacher and student weights must come from where pods can read them: a hub name or gs://."""
    problems, notes = [], []
    for section, name_key, weights_key in (
        ("embed", "teacher", "weights"),
        ("distill", "student", "student_weights"),
    ):
        cfg = raw.get(section) or {}
        weights = str(cfg.get(weights_key) or "")
        name = str(cfg.get(name_key) or "")
        if weights == STUDENT_HUB:  # distill.student_weights: hub = the card's registered hub source
            weights = ""
        if weights and not weights.startswith("gs://"):
            problems.append(
                f"{section}.{weights_key} {weights!r} is a path on this machine: upload the weights to "
                "gs:// (preferred: one mirror, no hub traffic from every pod) and name that URI"
            )
        elif not weights and (name.startswith("hf-hub:") or name.lower() in HUB_MODELS):
            notes.append(f"{name} from the Hugging Face hub (gated: needs the g2l-hf-token Secret)")
    if problems:
        return _fail("weights", "; ".join(problems))
    return _ok("weights", "; ".join(notes) or "from gs:// or built in")


# --- the compiled pipeline ------------------------------------------------------------------------


def _dags(spec: dict[str, Any]) -> Iterable[tuple[dict[str, Any], dict[str, Any]]]:
    """(enclosing component, task) for every task of the pipeline, the root DAG's and nested ones."""
    yield from ((spec["root"], t) for t in spec["root"]["dag"]["tasks"].values())
    for comp in spec["components"].values():
        for task in (comp.get("dag") or {}).get("tasks", {}).values():
            yield comp, task


def _input_type(spec: dict[str, Any], parent: dict[str, Any], task: dict[str, Any], name: str) -> str:
    """The parameter type a task input resolves to: its DAG's input, a producer's output or a constant."""
    source = ((task.get("inputs") or {}).get("parameters") or {}).get(name) or {}
    if "componentInputParameter" in source:
        defs = (parent.get("inputDefinitions") or {}).get("parameters") or {}
        return str((defs.get(source["componentInputParameter"]) or {}).get("parameterType"))
    if "taskOutputParameter" in source:
        out = source["taskOutputParameter"]
        producer = spec["components"][parent["dag"]["tasks"][out["producerTask"]]["componentRef"]["name"]]
        defs = (producer.get("outputDefinitions") or {}).get("parameters") or {}
        return str((defs.get(out["outputParameterKey"]) or {}).get("parameterType"))
    if "runtimeValue" in source:
        return "STRING" if isinstance(source["runtimeValue"].get("constant"), str) else "NUMBER"
    return "None"


def resource_problems(spec: dict[str, Any]) -> list[str]:
    """Resource fields of the compiled IR the v2 driver would drop or fail on.

    The driver resolves accelerator counts and CPU/memory placeholders with `GetStringValue()`
    (kubeflow/pipelines backend/src/v2/driver/resolve.go `resolvePodSpecInputRuntimeParameter`,
    driver.go `initPodSpecPatch`, at 2.17.0): a placeholder must resolve to a STRING, else the
    accelerator limit is silently dropped ("" count) or the pod spec fails to parse.
    """
    problems = []
    executors = spec["deploymentSpec"]["executors"]
    for parent, task in _dags(spec):
        comp = spec["components"][task["componentRef"]["name"]]
        label = comp.get("executorLabel")
        if not label:
            continue
        resources = (executors[label].get("container") or {}).get("resources") or {}
        fields = {
            "accelerator count": (resources.get("accelerator") or {}).get("resourceCount"),
            "cpu limit": resources.get("resourceCpuLimit"),
            "cpu request": resources.get("resourceCpuRequest"),
            "memory limit": resources.get("resourceMemoryLimit"),
            "memory request": resources.get("resourceMemoryRequest"),
        }
        for what, value in fields.items():
            if value is None:
                continue
            m = _PLACEHOLDER.match(str(value))
            if m is None:
                if what == "accelerator count" and not str(value).isdigit():
                    problems.append(f"{task['taskInfo']['name']}: {what} {value!r} is not a whole number")
                continue
            kind = _input_type(spec, parent, task, m[1])
            if kind != "STRING":
                problems.append(
                    f"{task['taskInfo']['name']}: {what} comes from "
                    f"{m[1].removeprefix('pipelinechannel--')} of type {kind}; the KFP driver reads it "
                    "with GetStringValue() and drops it: make the parameter a str"
                )
    return problems


def package_budgets(platform: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per executor: its timeout (s) and staging size (GiB) as declared in the compiled platform spec."""
    out = {}
    for label, cfg in platform.items():
        staging = [m for m in cfg.get("emptyDirMounts") or [] if m.get("mountPath") == "/cache"]
        size = staging[0].get("sizeLimit", "0Gi") if staging else "0Gi"
        out[label] = {
            "timeout_s": int(cfg.get("activeDeadlineSeconds") or 0),
            "staging_gi": int(str(size).removesuffix("Gi") or 0),
        }
    return out


# Executors of the compiled pipeline for each budgeted step.
STEP_EXECUTORS = {
    "tile": "exec-tile-slides",
    "embed": "exec-embed-shards",
    "distill": "exec-distill-student",
    "trainjob": "exec-distill-trainjob",
}


def load_package(package: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(pipeline spec, kubernetes platform executors) of a compiled pipeline file."""
    # libyaml when built in: a compiled pipeline is thousands of lines (pure-Python parsing takes seconds).
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    docs = [d for d in yaml.load_all(Path(package).read_text(), Loader=loader) if d]
    spec = docs[0]
    platform = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"] if len(docs) > 1 else {}
    return spec, platform


def check_package(package: str | Path, config_path: str | Path, image: str) -> list[Check]:
    """The compiled pipeline: resource fields the driver honours, a pinned image, budgets that fit the run."""
    from g2l.pipeline.budgets import needed_for_config

    try:
        spec, platform = load_package(package)
    except (OSError, yaml.YAMLError, KeyError, IndexError) as exc:
        return [_fail("package", f"{package}: not a compiled pipeline ({exc}); run `g2l pipeline compile`")]
    checks = []
    problems = resource_problems(spec)
    checks.append(
        _fail("resource-counts", "; ".join(problems))
        if problems
        else _ok("resource-counts", "every GPU/CPU count is a literal or a STRING parameter")
    )
    images = sorted({e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()})
    unpinned = [i for i in images if not image_pinned(i)]
    if unpinned or not image_pinned(image):
        checks.append(
            _fail(
                "image",
                f"image(s) {', '.join(unpinned or [image])} are not pinned: build with infra/build-image.sh "
                "(it pushes, resolves the digest and compiles with --image REPO@sha256:...) "
                "or use a release tag",
            )
        )
    elif image not in images:
        checks.append(
            _fail(
                "image",
                f"pipeline.image {image} differs from the package's {', '.join(images)}: recompile "
                f"with `g2l pipeline compile --image {image}`",
            )
        )
    else:
        checks.append(_ok("image", image))
    need = needed_for_config(str(config_path))
    have = package_budgets(platform)
    short = []
    for step, label in STEP_EXECUTORS.items():
        got = have.get(label, {"timeout_s": 0, "staging_gi": 0})
        want = need[step]
        if got["timeout_s"] < want.timeout_s:
            short.append(f"{step} timeout {got['timeout_s']}s < {want.timeout_s}s")
        if got["staging_gi"] < want.staging_gi:
            short.append(f"{step} staging {got['staging_gi']}Gi < {want.staging_gi}Gi")
    checks.append(
        _fail(
            "budgets",
            "; ".join(short) + f": size the pipeline for this run with "
            f"`g2l pipeline compile --config {config_path}`",
        )
        if short
        else _ok("budgets", "timeouts and staging disk cover `g2l pipeline plan`")
    )
    return checks


def static_checks(config_path: str | Path, package: str | Path, checkout: Path | None = None) -> list[Check]:
    """Every offline rule for one cancer config and the compiled pipeline it will run."""
    from g2l.config import load_yaml, validate_file
    from g2l.pipeline.config import pipeline_arguments

    checkout = checkout or Path(__file__).resolve().parents[2]
    raw = load_yaml(config_path)
    pipe = raw.get("pipeline") or {}
    checks = [check_gpu_counts(pipe)]
    try:
        sections = validate_file(config_path)
        args = pipeline_arguments(config_path)
    except ConfigError as exc:
        return [*checks, _fail("config", f"{config_path}: {exc}")]
    checks.append(_ok("config", f"{config_path}: every section validates"))
    checks.append(check_artifact_root(sections["run"].artifact_root if "run" in sections else ""))
    checks.append(check_manifest(raw.get("manifest") or {}))
    checks.append(check_benchmarks(args["benchmarks"].split(","), checkout))
    checks.append(check_cpus(args, raw))
    checks.append(check_weights(raw))
    image = str(pipe.get("image") or "")
    checks.extend(check_package(package, config_path, image or _default_image()))
    return checks


def _default_image() -> str:
    from g2l.pipeline.config import DEFAULT_IMAGE

    return DEFAULT_IMAGE
