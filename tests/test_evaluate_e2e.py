"""End-to-end `g2l evaluate` on the synthetic benchmark with tiny models: report.json/html, cache reuse."""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from g2l.config import load_section
from g2l.evaluate import EvaluateConfig, run_evaluate
from g2l.evaluate.models import RegistryNotConfiguredError
from g2l.metrics import read_textfile_metrics
from tests.test_report_html import CHROMIUM, browser_check

REPO = Path(__file__).resolve().parents[1]
# A small C grid keeps the probe quick on a busy 2-core CI runner; the shipped configs use the full grid.
FAST = {"probe_c_grid": [0.1, 1.0], "probe_max_iter": 300}


def fast_config(tmp_path):
    cfg = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
    cfg["evaluate"].update(FAST)
    cfg["run"]["artifact_root"] = str(tmp_path / "artifacts")  # the shared embedding store goes there
    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def synthetic_yaml(tmp_path, tile_px=64, tiles=3):
    spec = yaml.safe_load((REPO / "configs" / "benchmarks" / "synthetic.yaml").read_text())
    spec["root"] = str(tmp_path / "data")
    spec["generate"].update({"tile_px": tile_px, "tiles_per_group_class": tiles})
    path = tmp_path / "synthetic.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.mark.slow
def test_cli_evaluate_writes_report_json_and_html_and_reuses_embeddings(tmp_path):
    config_path = fast_config(tmp_path)
    cli_config = load_section(EvaluateConfig, config_path, section="evaluate")  # what the CLI ran with
    bench = synthetic_yaml(tmp_path)
    out = tmp_path / "eval"
    cmd = [
        sys.executable,
        "-m",
        "g2l",
        "evaluate",
        "--config",
        str(config_path),
        "--model",
        "teacher=tiny-vit-teacher",
        "--model",
        "student=tiny-vit-student",
        "--benchmark",
        str(bench),
        "--out",
        str(out),
        "--quiet",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = json.loads(proc.stdout.strip().splitlines()[-1])
    assert last["html"] == str(out / "report.html")

    report = json.loads((out / "report.json").read_text())
    assert set(report["models"]) == {"teacher", "student"}
    # --config without --model teacher=...: the teacher is built as the config's embed: section says.
    cli_models = {"teacher": "tiny-vit-teacher", "student": "tiny-vit-student"}
    assert report["seeds"] == [0, 1, 2, 3, 4]
    assert len(report["benchmarks"]["synthetic"]["sha256"]) == 64
    for name, model in report["models"].items():
        assert len(model["digest"]) == 64
        m = model["benchmarks"]["synthetic"]
        for key in (
            "lp_balanced_accuracy",
            "lp_balanced_accuracy_std",
            "lp_auc",
            "lp_auc_std",
            "knn_balanced_accuracy",
            "cka_teacher",
        ):
            assert isinstance(m[key], float), (name, key)
        for k in (3, 5, 10, 20):
            assert 0.0 <= m[f"pathorob_ri@k={k}"] <= 1.0 and m[f"de_jong_ri@k={k}"] > 0
        assert len(model["per_seed"]["synthetic"]["lp_balanced_accuracy"]) == 5
        # Structure is learnable even from random-init tiny ViTs: well above the 1/3 chance level.
        assert m["lp_balanced_accuracy"] > 0.5
    assert report["models"]["teacher"]["benchmarks"]["synthetic"]["cka_teacher"] == pytest.approx(1.0)
    html = (out / "report.html").read_text()
    assert html.count('<img src="data:image/png;base64,') == 3
    if CHROMIUM:  # the real report, not only the hand-built one of test_report_html, renders in a browser
        shown = browser_check(html, tmp_path)
        assert shown["images"] == 3 and shown["broken"] == [] and shown["tables"] == 1
    store = tmp_path / "artifacts" / "eval-store"  # <run.artifact_root>/eval-store, shared across runs
    cache = sorted(store.glob("*.npy"))
    assert len(cache) == 2 and not (out / "embeddings").exists()
    for p in cache:
        meta = json.loads(p.with_suffix(".json").read_text())
        assert meta["benchmark_content_sha256"] == report["benchmarks"]["synthetic"]["content_sha256"]
        assert meta["model_digest"] == report["models"][meta["model"]]["digest"]
    assert (out / "metrics" / "evaluate.prom").exists()

    # Rerun with the same inputs: a no-op that returns the finished report and rewrites nothing.
    models = cli_models
    mtimes = [p.stat().st_mtime_ns for p in [*cache, out / "report.json", out / "report.html"]]
    again = run_evaluate(cli_config, models, [str(bench)], str(out), quiet=True, store=str(store))
    assert again == report
    assert [p.stat().st_mtime_ns for p in [*cache, out / "report.json", out / "report.html"]] == mtimes
    # Other seeds: the report is recomputed, every embedding comes from the cache (files untouched), and
    # the embedding-only metrics (kNN, robustness, CKA) are identical.
    other = run_evaluate(
        dataclasses.replace(cli_config, seeds=(5, 6, 7, 8, 9)), models, [str(bench)], str(out), quiet=True,
        store=str(store),
    )
    assert [p.stat().st_mtime_ns for p in cache] == mtimes[: len(cache)]
    assert other["seeds"] == [5, 6, 7, 8, 9] and json.loads((out / "report.json").read_text()) == other
    for key in ("knn_balanced_accuracy", "pathorob_ri@k=10", "de_jong_ri@k=3", "cka_teacher"):
        assert (
            other["models"]["student"]["benchmarks"]["synthetic"][key]
            == report["models"]["student"]["benchmarks"]["synthetic"][key]
        )
    prom = read_textfile_metrics((out / "metrics" / "evaluate.prom").read_text(), stage="evaluate")
    assert prom["g2l_evaluate_cache_hits_total"] == 2.0 and prom["g2l_evaluate_tiles_embedded_total"] == 0.0


def test_registry_spec_without_a_registry_is_a_clear_error(tmp_path):
    bench = synthetic_yaml(tmp_path, tiles=1)
    with pytest.raises(RegistryNotConfiguredError, match="registry not configured"):
        run_evaluate(
            EvaluateConfig(),
            {"champion": "registry:brca@champion"},
            [str(bench)],
            str(tmp_path / "o"),
            quiet=True,
        )


def test_registry_alias_with_no_version_is_skipped_and_recorded(tmp_path):
    bench = synthetic_yaml(tmp_path, tiles=2)
    seen = []

    def resolver(spec):
        seen.append(spec)
        return None  # nothing registered as champion yet

    report = run_evaluate(
        EvaluateConfig(**FAST),
        {"student": "tiny-vit-student", "champion": "registry:brca@champion"},
        [str(bench)],
        str(tmp_path / "o"),
        quiet=True,
        registry_resolver=resolver,
    )
    assert seen == ["registry:brca@champion"]
    assert set(report["models"]) == {"student"} and report["champion"] is None
    assert "champion" in report["skipped_models"]


def test_cli_evaluate_usage_error_exits_2_with_the_reason(tmp_path):
    # (Malformed --model values are rejected by parse_model_args: tests/test_evaluate_models.py.)
    cmd = [
        sys.executable,
        "-m",
        "g2l",
        "evaluate",
        "--out",
        str(tmp_path / "o"),
        "--quiet",
        "--model",
        "t=tiny-vit-teacher",
        "--benchmark",
        str(tmp_path / "none.yaml"),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ, cwd=REPO)
    assert proc.returncode == 2 and "none.yaml" in proc.stderr
