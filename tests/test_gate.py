"""The gate: every comparator and margin, teacher/champion/constant references, exit codes 0/3/2."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from g2l.config import ConfigError
from g2l.gate import GateDataError, GatePolicy, GateRule, PrimaryMetric, decide, load_policy, primary_score

REPO = Path(__file__).resolve().parents[1]


def report(student=0.80, teacher=0.80, champion=None, extra_bench=False):
    def metrics(v):
        return {"lp_balanced_accuracy": v, "pathorob_ri@k=10": 0.5}

    models = {
        "student": {"benchmarks": {"b1": metrics(student)}},
        "teacher": {"benchmarks": {"b1": metrics(teacher)}},
    }
    if champion is not None:
        models["champion"] = {"benchmarks": {"b1": metrics(champion)}}
    benches = {"b1": {"sha256": "x"}}
    if extra_bench:
        benches["b2"] = {"sha256": "y"}
        for m in models.values():
            m["benchmarks"]["b2"] = metrics(0.1)
    return {
        "models": models,
        "benchmarks": benches,
        "teacher": "teacher",
        "champion": "champion" if champion is not None else None,
        "seeds": [0, 1, 2, 3, 4],
    }


PRIMARY = PrimaryMetric(benchmark="b1", metric="lp_balanced_accuracy")


def one_rule(**kw):
    return GatePolicy(rules=(GateRule(metric="lp_balanced_accuracy", **kw),), primary_metric=PRIMARY)


# candidate vs teacher + margin for each comparator: (student, teacher, comparator, margin, expected)
CASES = [
    (0.80, 0.80, ">=", 0.0, True),
    (0.79, 0.80, ">=", 0.0, False),
    (0.795, 0.80, ">=", -0.01, True),
    (0.785, 0.80, ">=", -0.01, False),
    (0.80, 0.80, ">", 0.0, False),
    (0.81, 0.80, ">", 0.0, True),
    (0.815, 0.80, ">", 0.02, False),
    (0.825, 0.80, ">", 0.02, True),
    (0.80, 0.80, "<=", 0.0, True),
    (0.81, 0.80, "<=", 0.0, False),
    (0.805, 0.80, "<=", 0.01, True),
    (0.815, 0.80, "<=", 0.01, False),
    (0.80, 0.80, "<", 0.0, False),
    (0.79, 0.80, "<", 0.0, True),
    (0.785, 0.80, "<", -0.01, True),
    (0.795, 0.80, "<", -0.01, False),
]


@pytest.mark.parametrize(("student", "teacher", "op", "margin", "expected"), CASES)
def test_every_comparator_and_margin_against_the_teacher(student, teacher, op, margin, expected):
    d = decide(
        report(student, teacher), one_rule(comparator=op, reference="teacher", margin=margin), "student"
    )
    assert d.passed is expected
    (r,) = d.rules
    assert r.passed is expected and r.candidate == student and r.reference == teacher
    assert r.threshold == pytest.approx(teacher + margin)
    assert ("holds" if expected else "does not hold") in r.reason and "b1" in r.reason


@pytest.mark.parametrize(
    ("value", "op", "expected"), [(0.8, ">=", True), (0.81, ">=", False), (0.9, "<", True)]
)
def test_constant_reference(value, op, expected):
    d = decide(report(0.8), one_rule(comparator=op, reference="constant", value=value), "student")
    assert d.passed is expected and d.rules[0].reference == value


def test_champion_rule_passes_when_there_is_no_champion_and_says_so():
    d = decide(report(0.5, 0.5), one_rule(reference="champion"), "student")
    assert d.passed and "no champion yet" in d.rules[0].reason


@pytest.mark.parametrize(("champion", "expected"), [(0.79, True), (0.81, False)])
def test_champion_rule_compares_with_the_champion(champion, expected):
    assert (
        decide(report(0.80, 0.80, champion=champion), one_rule(reference="champion"), "student").passed
        is expected
    )


def test_all_benchmarks_means_every_benchmark_and_one_failure_fails_the_gate():
    rep = report(0.8, 0.8, extra_bench=True)
    rep["models"]["student"]["benchmarks"]["b2"]["lp_balanced_accuracy"] = 0.05
    d = decide(rep, one_rule(reference="teacher"), "student")
    assert [r.benchmark for r in d.rules] == ["b1", "b2"]
    assert [r.passed for r in d.rules] == [True, False] and not d.passed
    assert decide(rep, one_rule(reference="teacher", benchmark="b1"), "student").passed


def test_missing_metric_is_a_data_error_naming_metric_and_benchmark():
    rep = report()
    del rep["models"]["teacher"]["benchmarks"]["b1"]["lp_balanced_accuracy"]
    with pytest.raises(GateDataError, match=r"lp_balanced_accuracy.*b1"):
        decide(rep, one_rule(reference="teacher"), "student")
    with pytest.raises(GateDataError, match="candidate 'nobody'"):
        decide(report(), one_rule(), "nobody")


def test_policy_validation_names_the_bad_key(tmp_path):
    bad = tmp_path / "p.yaml"
    primary = {"benchmark": "b1"}
    bad.write_text(
        yaml.safe_dump({"primary_metric": primary, "rules": [{"metric": "x", "comparator": "=>"}]})
    )
    with pytest.raises(ConfigError, match="comparator"):
        load_policy(bad)
    bad.write_text(
        yaml.safe_dump({"primary_metric": primary, "rules": [{"metric": "x", "reference": "constant"}]})
    )
    with pytest.raises(ConfigError, match="value"):
        load_policy(bad)
    bad.write_text(yaml.safe_dump({"rules": [{"metric": "x"}]}))
    with pytest.raises(ConfigError, match="primary_metric"):
        load_policy(bad)


@pytest.mark.parametrize("name", ["gate", "gate_brca", "gate_prad"])
def test_shipped_policies_load_and_name_their_primary_metric(name):
    policy = load_policy(REPO / "configs" / f"{name}.yaml")
    refs = {r.reference for r in policy.rules}
    assert {"teacher", "champion"} <= refs
    assert any(r.metric.startswith("pathorob_ri") for r in policy.rules)
    raw = yaml.safe_load((REPO / "configs" / f"{name}.yaml").read_text())["primary_metric"]
    assert set(raw) == {"benchmark", "metric", "higher_is_better"}  # the form g2l.registry reads
    assert policy.primary_metric.benchmark == raw["benchmark"] != "all"


def test_primary_score_reads_the_primary_benchmark_metric():
    policy = one_rule()
    assert primary_score(report(0.7, 0.9), policy, "teacher") == pytest.approx(0.9)
    assert primary_score(report(0.7, 0.9), policy, "student") == pytest.approx(0.7)
    missing = GatePolicy(rules=policy.rules, primary_metric=PrimaryMetric(benchmark="b9"))
    with pytest.raises(GateDataError, match="b9"):
        primary_score(report(), missing, "student")


def _gate_cli(tmp_path, rep, policy_rules):
    rp = tmp_path / "report.json"
    rp.write_text(json.dumps(rep))
    pp = tmp_path / "gate.yaml"
    primary = {"benchmark": "b1", "metric": "lp_balanced_accuracy", "higher_is_better": True}
    pp.write_text(yaml.safe_dump({"primary_metric": primary, "rules": policy_rules}))
    out = tmp_path / "decision.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "g2l",
            "gate",
            "--report",
            str(rp),
            "--policy",
            str(pp),
            "--candidate",
            "student",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=os.environ,
        cwd=REPO,
    )
    return proc, out


def test_cli_exit_codes_pass_fail_and_data_error(tmp_path):
    rule = [{"metric": "lp_balanced_accuracy", "comparator": ">=", "reference": "teacher", "margin": -0.01}]
    proc, out = _gate_cli(tmp_path, report(0.795, 0.80), rule)
    assert proc.returncode == 0, proc.stderr
    decision = json.loads(out.read_text())
    assert decision["passed"] is True
    assert set(decision["rules"][0]) >= {"rule", "passed", "candidate", "reference", "reason"}
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == decision

    proc, out = _gate_cli(tmp_path, report(0.70, 0.80), rule)
    assert proc.returncode == 3
    assert json.loads(out.read_text())["passed"] is False

    rule_missing = [{"metric": "knn_balanced_accuracy", "comparator": ">=", "reference": "teacher"}]
    out.unlink()
    proc, out = _gate_cli(tmp_path, report(), rule_missing)
    assert proc.returncode == 2
    assert "knn_balanced_accuracy" in proc.stderr and "b1" in proc.stderr
    assert not out.exists()


def test_metric_undefined_for_candidate_and_reference_is_not_applicable():
    rep = report()
    for model in ("student", "teacher"):
        rep["models"][model]["benchmarks"]["b1"]["pathorob_ri@k=10"] = None  # e.g. single-site benchmark
    rule = GatePolicy(
        rules=(GateRule(metric="pathorob_ri@k=10", reference="teacher"),), primary_metric=PRIMARY
    )
    d = decide(rep, rule, "student")
    assert d.passed and "not applicable" in d.rules[0].reason
    rep["models"]["teacher"]["benchmarks"]["b1"]["pathorob_ri@k=10"] = 0.4  # defined for the teacher only
    with pytest.raises(GateDataError, match=r"undefined.*candidate"):
        decide(rep, rule, "student")
