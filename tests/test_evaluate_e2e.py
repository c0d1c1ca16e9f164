"""End-to-end `g2l evaluate` on the synthetic benchmark with tiny models: report.json/html, cache reuse."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from g2l.evaluate import EvaluateConfig, run_evaluate
from g2l.evaluate.models import RegistryNotConfiguredError

REPO = Path(__file__).resolve().parents[1]
# A small C grid keeps the probe quick on a busy 2-core CI runner; the shipped configs use the full grid.
FAST = {"probe_c_grid": [0.1, 1.0], "probe_max_iter": 300}


def fast_config(tmp_path):
    cfg = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
    cfg["evaluate"].update(FAST)
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
    bench = synthetic_yaml(tmp_path)
    out = tmp_path / "eval"
    cmd = [
        sys.executable,
        "-m",
        "g2l",
        "evaluate",
        "--config",
        str(fast_config(tmp_path)),
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
    cache = sorted((out / "embeddings").glob("*.npy"))
    assert [p.name for p in cache] == sorted(
        f"{m['digest']}-{report['benchmarks']['synthetic']['sha256']}.npy" for m in report["models"].values()
    )
    assert (out / "metrics" / "evaluate.prom").exists()

    # Rerun in-process: every embedding comes from the cache (files untouched), the numbers are identical.
    mtimes = [p.stat().st_mtime_ns for p in cache]
    again = run_evaluate(
        EvaluateConfig(**FAST),
        {"teacher": "tiny-vit-teacher", "student": "tiny-vit-student"},
        [str(bench)],
        str(out),
        quiet=True,
    )
    assert [p.stat().st_mtime_ns for p in cache] == mtimes
    assert again["models"]["student"]["benchmarks"] == report["models"]["student"]["benchmarks"]
    prom = (out / "metrics" / "evaluate.prom").read_text()
    assert "g2l_evaluate_cache_hits_total 2.0" in prom


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


def test_cli_evaluate_usage_errors_exit_2_with_the_reason(tmp_path):
    base = [sys.executable, "-m", "g2l", "evaluate", "--out", str(tmp_path / "o"), "--quiet"]
    proc = subprocess.run(
        base + ["--model", "t=tiny-vit-teacher", "--benchmark", str(tmp_path / "none.yaml")],
        capture_output=True,
        text=True,
        env=os.environ,
        cwd=REPO,
    )
    assert proc.returncode == 2 and "none.yaml" in proc.stderr
    proc = subprocess.run(
        base + ["--model", "tiny-vit-teacher", "--benchmark", str(synthetic_yaml(tmp_path))],
        capture_output=True,
        text=True,
        env=os.environ,
        cwd=REPO,
    )
    assert proc.returncode == 2 and "NAME=SPEC" in proc.stderr
