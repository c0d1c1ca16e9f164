"""The evaluated teacher is the distillation teacher: built as `embed:` says, its digest equals the cache's.

The cache is a real one written by `g2l embed` (index.json records `weights_sha256` and `embedding`,
docs/contracts.md); the teacher has its own weights file and cls_mean pooling, which a name-only build
(what evaluation used to do) silently drops.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from safetensors.torch import save_file

from g2l.embed import EmbedConfig, open_cache, run_embed
from g2l.evaluate import EvaluateConfig, run_evaluate
from g2l.evaluate.models import ModelSpecError, load_model
from g2l.models import build_model
from tests.test_evaluate_e2e import FAST, synthetic_yaml

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run_config(tmp_path_factory):
    """A run config whose embed: section names a teacher weights file and cls_mean pooling, and its cache."""
    root = tmp_path_factory.mktemp("teacher")
    teacher = build_model("tiny-vit-teacher")
    state = {
        k: v.detach().clone() * 0.9 for k, v in teacher.model.state_dict().items()
    }  # not the seeded ones
    weights = root / "teacher.safetensors"
    save_file(state, str(weights))
    cfg = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
    cfg["run"]["artifact_root"] = str(root / "artifacts")
    cfg["embed"].update(teacher="tiny-vit-teacher", weights=str(weights), embedding="cls_mean", num_workers=0)
    cfg["evaluate"].update(FAST, num_workers=0)
    path = root / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    from tests.fixtures.shards import write_synthetic_shards

    shards = write_synthetic_shards(root / "data", tiles_per_slide=2)
    embed_cfg = EmbedConfig(**{**cfg["embed"], "views": 1, "batch_size": 4})
    cache = run_embed(shards, root / "artifacts", embed_cfg, quiet=True)
    return path, cache, root


def test_the_evaluated_teacher_digest_equals_the_cache_digest(run_config, tmp_path):
    config, cache, _ = run_config
    bench = synthetic_yaml(tmp_path, tiles=1)
    out = tmp_path / "eval"
    cmd = [
        sys.executable,
        "-m",
        "g2l",
        "evaluate",
        "--config",
        str(config),
        "--model",
        "student=tiny-vit-student",
        "--benchmark",
        str(bench),
        "--out",
        str(out),
        "--teacher-cache",
        str(cache),
        "--quiet",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    index = open_cache(cache).index
    teacher = report["models"]["teacher"]
    # Added by the CLI (the teacher as embed: builds it), recorded as a spec that rebuilds it later.
    weights = yaml.safe_load(config.read_text())["embed"]["weights"]
    assert teacher["spec"] == f"tiny-vit-teacher?weights={weights}&embedding=cls_mean"
    assert teacher["weights_sha256"] == index["weights_sha256"] and teacher["embedding"] == "cls_mean"
    identity = report["teacher_identity"]
    assert identity["matches"] and identity["cache"]["weights_sha256"] == index["weights_sha256"]
    rebuilt = load_model("teacher", teacher["spec"])  # what `g2l audit --deep` does with the report
    assert rebuilt.weights_sha256 == index["weights_sha256"] and rebuilt.digest == teacher["digest"]


def test_a_teacher_built_by_name_only_is_refused(run_config, tmp_path):
    _, cache, _ = run_config
    bench = synthetic_yaml(tmp_path, tiles=1)
    with pytest.raises(ModelSpecError, match=r"the embedding cache .* was made with weights .*embed:CONFIG"):
        run_evaluate(
            EvaluateConfig(**FAST),
            {"teacher": "tiny-vit-teacher", "student": "tiny-vit-student"},
            [str(bench)],
            str(tmp_path / "o"),
            quiet=True,
            teacher_cache=str(cache),
        )
