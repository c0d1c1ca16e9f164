"""The statistical gate: paired bootstrap over patients, Holm, inconclusive, references, exit codes 0/3/2."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from g2l.config import ConfigError
from g2l.gate import GateDataError, GatePolicy, GateRule, PrimaryMetric, decide, load_policy, primary_score
from g2l.gate.judge import _holm_levels
from g2l.gate.policy import Bootstrap
from tests.fixtures.reports import build_report

REPO = Path(__file__).resolve().parents[1]
PRIMARY = PrimaryMetric(benchmark="b1", metric="lp_balanced_accuracy")
TEACHER_RULES = (
    GateRule(metric="lp_balanced_accuracy", delta=0.02),
    GateRule(metric="lp_auc", delta=0.02),
    GateRule(metric="knn_balanced_accuracy", delta=0.03),
)


def policy(*rules, **kw):
    return GatePolicy(rules=tuple(rules) or TEACHER_RULES, primary_metric=PRIMARY, **kw)


def _flip(pred, labels, correct, rng):
    """Predictions that are right on exactly `correct` samples (binary or multi-class)."""
    n_cls = labels.max() + 1
    out = (labels + 1 + rng.integers(0, n_cls - 1, labels.size)) % n_cls
    right = rng.choice(labels.size, correct, replace=False)
    out[right] = labels[right]
    return out if pred is None else pred


def _task(n_patients, tiles, n_cls, rng):
    units = np.repeat(np.arange(n_patients), tiles)
    labels = np.repeat(rng.integers(0, n_cls, n_patients), tiles)  # a patient's tiles share its label
    labels[:n_cls] = np.arange(n_cls)  # every class present
    return units, labels


@pytest.mark.parametrize("seed", range(8))
def test_identical_models_never_fail_a_teacher_rule_and_are_not_better(seed):
    rng = np.random.default_rng(seed)
    n_patients = int(rng.integers(3, 60))
    units, labels = _task(n_patients, int(rng.integers(1, 6)), int(rng.integers(2, 5)), rng)
    pred = _flip(None, labels, int(rng.integers(1, labels.size)), rng)
    rep = build_report(
        labels, units, {m: pred for m in ("student", "teacher", "champion")}, champion="champion"
    )
    d = decide(rep, policy(), "student")
    assert d.passed and all(r.verdict == "pass" for r in d.rules), [r.reason for r in d.rules]
    assert all(r.ci95 == (0.0, 0.0) for r in d.rules)  # the same draw scores both: the difference is 0
    assert d.promotion.verdict == "not_better" and not d.promote


def test_clearly_better_model_passes_where_the_old_point_rule_flips_with_one_tile():
    # 100 test tiles from 50 patients: one tile moves balanced accuracy by 0.01, the old rule's whole margin.
    rng = np.random.default_rng(0)
    units = np.repeat(np.arange(50), 2)
    labels = np.tile([0, 1], 50)
    teacher = _flip(None, labels, 90, rng)
    champion = _flip(None, labels, 75, rng)
    student = teacher.copy()  # a distilled student errs where its teacher errs ...
    student[np.flatnonzero(teacher == labels)[0]] ^= 1  # ... and on one tile more: the old rule's edge
    rep = build_report(
        labels, units, {"student": student, "teacher": teacher, "champion": champion}, champion="champion"
    )
    gap = (
        rep["models"]["student"]["benchmarks"]["b1"]["lp_balanced_accuracy"]
        - rep["models"]["teacher"]["benchmarks"]["b1"]["lp_balanced_accuracy"]
    )
    assert gap == pytest.approx(-0.01, abs=2e-3)  # the old `>= teacher - 0.01` holds only just
    # 100 tiles cannot resolve a few points; a 10-point tolerance can be shown on them.
    new = policy(GateRule(metric="lp_balanced_accuracy", delta=0.1), GateRule(metric="lp_auc", delta=0.1))
    d = decide(rep, new, "student")
    assert d.passed and d.promotion.verdict == "better" and d.promote
    assert d.promotion.estimate > 0.1 and d.promotion.bound > 0
    # Any single tile flipped against the student: the old point rule fails, the new verdict stands.
    for i in np.flatnonzero(student == labels)[:5]:
        flipped = student.copy()
        flipped[i] = 1 - flipped[i]
        rep2 = build_report(
            labels, units, {"student": flipped, "teacher": teacher, "champion": champion}, champion="champion"
        )
        m = rep2["models"]
        old_rule = m["student"]["benchmarks"]["b1"]["lp_balanced_accuracy"] >= (
            m["teacher"]["benchmarks"]["b1"]["lp_balanced_accuracy"] - 0.01 - 1e-12
        )
        d2 = decide(rep2, new, "student")
        assert not old_rule and d2.passed and d2.promotion.verdict == "better"


def test_a_worse_model_fails_non_inferiority_and_the_reason_shows_the_interval():
    rng = np.random.default_rng(1)
    units = np.repeat(np.arange(200), 2)
    labels = np.tile([0, 1], 200)
    rep = build_report(
        labels, units, {"student": _flip(None, labels, 280, rng), "teacher": _flip(None, labels, 360, rng)}
    )
    (r,) = decide(rep, policy(GateRule(metric="lp_balanced_accuracy", delta=0.02)), "student").rules
    assert r.verdict == "fail" and not r.passed
    assert r.ci95[1] < -0.02  # conclusively worse: not "inconclusive"
    assert "95% CI" in r.reason and "200 units" in r.reason and "does not hold" in r.reason


def test_small_test_set_is_inconclusive_and_the_policy_says_what_that_does():
    rng = np.random.default_rng(2)
    units = np.arange(12)  # 12 patients, one tile each: far too few to resolve 2 points
    labels = np.tile([0, 1], 6)
    rep = build_report(
        labels, units, {"student": _flip(None, labels, 9, rng), "teacher": _flip(None, labels, 10, rng)}
    )
    rule = GateRule(metric="lp_balanced_accuracy", delta=0.02)
    (r,) = decide(rep, policy(rule), "student").rules
    assert r.verdict == "inconclusive" and r.ci95[1] - r.ci95[0] > 0.04 and not r.passed
    lenient = decide(rep, policy(rule, inconclusive="pass"), "student")
    assert lenient.passed and lenient.rules[0].verdict == "inconclusive" and lenient.rules[0].passed


def test_holm_levels_step_down_and_stop():
    levels, reached = _holm_levels([0.001, 0.02, 0.004], 0.025, "holm")
    assert levels == pytest.approx([0.025 / 3, 0.025, 0.025 / 2])
    assert reached == [True, True, True]
    levels, reached = _holm_levels([0.001, 0.02, 0.013], 0.025, "holm")
    # Sorted: 0.001 <= 0.0083 (reject), 0.013 > 0.0125 (stop), 0.02: never tested although 0.02 <= 0.025.
    assert reached == [True, False, True]
    assert _holm_levels([0.5, 0.5], 0.025, "none") == ([0.025, 0.025], [True, True])


def test_holm_makes_a_borderline_rule_fail_when_it_is_one_of_many():
    rng = np.random.default_rng(3)
    labels = np.tile([0, 1], 150)
    teacher = _flip(None, labels, 255, rng)
    student = teacher.copy()
    student[np.flatnonzero(student == labels)[:6]] ^= 1  # 2 points worse than the teacher
    rep = build_report(labels, np.arange(300), {"student": student, "teacher": teacher})
    # delta such that the rule's bootstrap p-value is ~0.015: inside (0.025 / 4, 0.025].
    probe = decide(
        rep,
        policy(GateRule(metric="lp_balanced_accuracy", delta=1.0), bootstrap=Bootstrap(alpha=0.03)),
        "student",
    ).rules[0]
    rule = GateRule(metric="lp_balanced_accuracy", delta=-probe.bound)
    alone = decide(rep, policy(rule), "student").rules[0]
    assert alone.verdict == "pass" and 0.025 / 4 < alone.p_value <= 0.025
    four = decide(rep, policy(rule, rule, rule, rule), "student")
    assert [r.verdict for r in four.rules] == ["fail"] * 4 and not four.passed
    assert min(r.level for r in four.rules) == pytest.approx(0.025 / 4)
    no_correction = decide(
        rep, policy(rule, rule, rule, rule, bootstrap=Bootstrap(correction="none")), "student"
    )
    assert no_correction.passed


def test_bound_and_p_value_agree_and_the_decision_is_reproducible():
    rng = np.random.default_rng(4)
    units = np.repeat(np.arange(40), 3)
    labels = np.repeat(rng.integers(0, 3, 40), 3)
    labels[:3] = [0, 1, 2]
    rep = build_report(
        labels, units, {"student": _flip(None, labels, 90, rng), "teacher": _flip(None, labels, 95, rng)}
    )
    pol = policy(
        *[
            GateRule(metric=m, delta=d)
            for m, d in (("lp_balanced_accuracy", 0.02), ("lp_auc", 0.1), ("knn_balanced_accuracy", 0.3))
        ]
    )
    a, b = decide(rep, pol, "student"), decide(rep, pol, "student")
    assert a.to_dict() == b.to_dict()
    for r in a.rules:
        assert (r.p_value <= r.level) == (r.bound >= r.threshold) or r.verdict == "fail"
    other_seed = decide(rep, policy(*pol.rules, bootstrap=Bootstrap(seed=7)), "student")
    assert other_seed.rules[0].ci95 != a.rules[0].ci95


def test_threshold_rules_on_resampled_and_point_metrics():
    rng = np.random.default_rng(5)
    units = np.arange(200)
    labels = np.tile([0, 1], 100)
    rep = build_report(
        labels,
        units,
        {"student": _flip(None, labels, 180, rng)},
        extra_metrics={"student": {"cka_teacher": 0.7}},
        teacher=None,
    )
    ok = decide(rep, policy(GateRule(metric="lp_balanced_accuracy", test="threshold", value=0.8)), "student")
    assert ok.passed and ok.rules[0].resampled and ok.rules[0].bound >= 0
    near = decide(
        rep, policy(GateRule(metric="lp_balanced_accuracy", test="threshold", value=0.89)), "student"
    )
    assert not near.passed  # the point estimate 0.9 clears it, the lower bound does not
    cka = decide(rep, policy(GateRule(metric="cka_teacher", test="threshold", value=0.6)), "student")
    assert cka.passed and not cka.rules[0].resampled and "point estimate" in cka.rules[0].reason
    assert not decide(
        rep, policy(GateRule(metric="cka_teacher", test="threshold", value=0.75)), "student"
    ).passed


def test_superiority_over_a_named_model_and_roles_from_the_report():
    rng = np.random.default_rng(6)
    units = np.repeat(np.arange(100), 2)
    labels = np.tile([0, 1], 100)
    rep = build_report(
        labels,
        units,
        {
            "student": _flip(None, labels, 180, rng),
            "untrained-student": _flip(None, labels, 120, rng),
            "teacher": _flip(None, labels, 185, rng),
        },
    )
    rule = GateRule(
        metric="knn_balanced_accuracy", test="superiority", reference="untrained-student", margin=0.1
    )
    d = decide(rep, policy(rule), "student")
    assert d.passed and d.rules[0].reference_model == "untrained-student"
    assert not decide(rep, policy(rule), "untrained-student").passed
    with pytest.raises(GateDataError, match="'nobody' is not in the report"):
        decide(rep, policy(GateRule(metric="lp_auc", reference="nobody", delta=0.1)), "student")


def test_champion_rules_and_promotion_without_a_champion():
    units = np.arange(20)
    labels = np.tile([0, 1], 10)
    rep = build_report(labels, units, {"student": labels, "teacher": labels})
    d = decide(rep, policy(GateRule(metric="lp_auc", test="superiority", reference="champion")), "student")
    assert d.passed and d.rules[0].verdict == "not_applicable" and "no champion yet" in d.rules[0].reason
    assert d.promotion.verdict == "no_champion" and d.promote
    # printed as N/A, not as a pass: a rule that could not be tested must not read as evidence
    assert d.rules[0].line().startswith("N/A ") and "no champion yet" in d.rules[0].line()


def _robustness_report(eligible, reason):
    units = np.arange(40)
    labels = np.tile([0, 1], 20)
    metrics = {"pathorob_ri@k=10": 0.0}
    return build_report(
        labels,
        units,
        {"student": labels, "teacher": labels},
        extra_metrics={"student": metrics, "teacher": metrics},
        robustness={"eligible": eligible, "reason": reason},
    )


def test_robustness_rules_are_refused_on_single_site_or_confounded_benchmarks():
    rep = _robustness_report(False, "single site (bach): no other-site neighbour exists")
    every = policy(GateRule(metric="pathorob_ri@k=10", delta=0.01))
    d = decide(rep, every, "student")
    (r,) = d.rules
    assert r.verdict == "not_applicable" and "refused" in r.reason and "single site" in r.reason
    assert d.warnings and "no benchmark of this report can carry it" in d.warnings[0]
    named = policy(GateRule(metric="pathorob_ri@k=10", delta=0.01, benchmark="b1"))
    with pytest.raises(GateDataError, match=r"refused.*label-site confound"):
        decide(
            _robustness_report(False, "label-site confound: class(es) g4 (only at radboud)"), named, "student"
        )


def test_missing_data_is_a_data_error_naming_what_is_missing():
    rep = build_report(
        np.array([0, 1, 0, 1]),
        np.arange(4),
        {"student": np.array([0, 1, 0, 1]), "teacher": np.array([0, 1, 1, 1])},
    )
    with pytest.raises(GateDataError, match=r"'knn_missing'.*b1"):
        decide(rep, policy(GateRule(metric="knn_missing", delta=0.1)), "student")
    with pytest.raises(GateDataError, match="candidate 'nobody'"):
        decide(rep, policy(), "nobody")
    del rep["models"]["teacher"]["samples"]
    with pytest.raises(GateDataError, match="no per-sample data.*re-run g2l evaluate"):
        decide(rep, policy(), "student")


def test_policy_validation_names_the_bad_key(tmp_path):
    bad = tmp_path / "p.yaml"
    primary = {"benchmark": "b1"}
    cases = [
        ({"metric": "x", "test": "equal"}, "test must be one of"),
        ({"metric": "x", "reference": "constant"}, "threshold"),
        ({"metric": "x", "test": "threshold"}, "value"),
        ({"metric": "x"}, "delta"),
        ({"metric": "x", "comparator": ">=", "margin": -0.01}, "old point-estimate gate.*delta: 0.01"),
        ({"metric": "x", "delta": 0.1, "margin": 0.2}, "margin.*superiority"),
    ]
    for rule, message in cases:
        bad.write_text(yaml.safe_dump({"primary_metric": primary, "rules": [rule]}))
        with pytest.raises(ConfigError, match=message):
            load_policy(bad)
    bad.write_text(
        yaml.safe_dump(
            {"primary_metric": primary, "rules": [{"metric": "x", "delta": 0.1}], "bootstrap": {"draws": 500}}
        )
    )
    with pytest.raises(ConfigError, match="draws must be >= 2000"):
        load_policy(bad)
    bad.write_text(yaml.safe_dump({"rules": [{"metric": "x", "delta": 0.1}]}))
    with pytest.raises(ConfigError, match="primary_metric"):
        load_policy(bad)


@pytest.mark.parametrize("name", ["gate", "gate_brca", "gate_prad", "gate_demo"])
def test_shipped_policies_load_and_name_their_primary_metric(name):
    policy_ = load_policy(REPO / "configs" / f"{name}.yaml")
    assert any(r.reference == "teacher" and r.test == "non_inferiority" for r in policy_.rules)
    assert any(r.metric.startswith("pathorob_ri") for r in policy_.rules)
    assert policy_.bootstrap.draws >= 2000 and policy_.bootstrap.correction == "holm"
    raw = yaml.safe_load((REPO / "configs" / f"{name}.yaml").read_text())["primary_metric"]
    assert set(raw) == {"benchmark", "metric", "higher_is_better"}  # the form g2l.registry reads
    assert policy_.primary_metric.benchmark == raw["benchmark"] != "all"


def test_primary_score_reads_the_primary_benchmark_metric():
    rep = build_report(
        np.array([0, 1, 0, 1]),
        np.arange(4),
        {"student": np.array([0, 1, 0, 0]), "teacher": np.array([0, 1, 0, 1])},
    )
    assert primary_score(rep, policy(), "teacher") == pytest.approx(1.0)
    assert primary_score(rep, policy(), "student") == pytest.approx(0.75)
    missing = GatePolicy(rules=TEACHER_RULES, primary_metric=PrimaryMetric(benchmark="b9"))
    with pytest.raises(GateDataError, match="b9"):
        primary_score(rep, missing, "student")


def _gate_cli(tmp_path, rep, rules):
    rp = tmp_path / "report.json"
    rp.write_text(json.dumps(rep))
    pp = tmp_path / "gate.yaml"
    primary = {"benchmark": "b1", "metric": "lp_balanced_accuracy", "higher_is_better": True}
    pp.write_text(yaml.safe_dump({"primary_metric": primary, "rules": rules}))
    out = tmp_path / "decision.json"
    cmd = [
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
    ]
    return subprocess.run(cmd, capture_output=True, text=True, env=os.environ, cwd=REPO), out


def test_cli_exit_codes_pass_fail_and_data_error(tmp_path):
    rng = np.random.default_rng(7)
    labels = np.tile([0, 1], 100)
    units = np.arange(200)
    good = build_report(labels, units, {"student": labels, "teacher": labels})
    rule = [
        {"test": "non_inferiority", "metric": "lp_balanced_accuracy", "reference": "teacher", "delta": 0.02}
    ]
    proc, out = _gate_cli(tmp_path, good, rule)
    assert proc.returncode == 0, proc.stderr
    decision = json.loads(out.read_text())
    assert decision["passed"] is True and decision["promotion"]["verdict"] == "no_champion"
    assert set(decision["rules"][0]) >= {
        "rule",
        "passed",
        "verdict",
        "candidate",
        "reference",
        "ci95",
        "reason",
    }
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == decision
    assert "PASS" in proc.stderr and "95% CI" in proc.stderr  # rich's console writes to stderr

    bad = build_report(labels, units, {"student": _flip(None, labels, 120, rng), "teacher": labels})
    proc, out = _gate_cli(tmp_path, bad, rule)
    assert proc.returncode == 3 and json.loads(out.read_text())["passed"] is False

    out.unlink()
    proc, out = _gate_cli(tmp_path, good, [{"metric": "knn_nothing", "reference": "teacher", "delta": 0.1}])
    assert proc.returncode == 2 and "knn_nothing" in proc.stderr + proc.stdout and not out.exists()


def test_metric_undefined_for_candidate_and_reference_is_not_applicable():
    labels = np.tile([0, 1], 10)
    rep = build_report(
        labels,
        np.arange(20),
        {"student": labels, "teacher": labels},
        extra_metrics={"student": {"cka_teacher": None}, "teacher": {"cka_teacher": None}},
    )
    rule = GateRule(metric="cka_teacher", delta=0.1)
    d = decide(rep, policy(rule), "student")
    assert d.passed and d.rules[0].verdict == "not_applicable"
    rep["models"]["teacher"]["benchmarks"]["b1"]["cka_teacher"] = 1.0  # defined for the teacher only
    with pytest.raises(GateDataError, match=r"undefined.*candidate"):
        decide(rep, policy(rule), "student")
