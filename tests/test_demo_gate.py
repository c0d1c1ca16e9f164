"""The demo's gate (configs/gate_demo.yaml) tells a network that knows tissue from one that does not.

The real evaluation (configs/demo.yaml's evaluate section, the demo's synthetic benchmark) embeds the
shipped teacher and the untrained demo student; the demo policy then judges each presented as the
candidate. The untrained student must fail what distillation is for (learning over its own init, CKA to
the teacher, closeness to the teacher, robustness); the teacher itself, a student that learned everything,
must pass every rule, so the policy is not unpassable. The test split must also be large enough that one
tile cannot decide a rule (issue 12).
"""

from pathlib import Path

import pandas as pd
import pytest

from g2l.config import load_section, load_yaml
from g2l.evaluate import EvaluateConfig, run_evaluate
from g2l.gate import decide, load_policy

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "demo.yaml"
POLICY = REPO / "configs" / "gate_demo.yaml"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo-gate")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("G2L_DATA", str(out / "data"))  # the benchmark is generated there (idempotent)
        config = load_section(EvaluateConfig, CONFIG, "evaluate")
        benchmarks = [str(REPO / b) for b in load_yaml(CONFIG)["pipeline"]["benchmarks"]]
        teacher = load_yaml(CONFIG)["embed"]["teacher"]
        models = {"teacher": teacher, **config.extra_models}
        result = run_evaluate(config, models, benchmarks, str(out / "eval"), quiet=True)
    return result, out / "data" / "benchmarks" / "synthetic" / "tiles.csv"


def _failed(decision) -> set[str]:
    return {r.rule.split(":")[0] for r in decision.rules if r.verdict != "pass"}


def test_the_untrained_student_presented_as_the_candidate_fails_the_demo_gate(report):
    result, _ = report
    decision = decide(result, load_policy(POLICY), "untrained-student")
    assert not decision.passed
    # It cannot beat itself, is not the teacher's representation, is far from the teacher and its
    # features tell stain, not tissue: every rule of the demo policy fails.
    assert _failed(decision) == {r.name for r in load_policy(POLICY).rules}


def test_a_candidate_that_learned_all_the_teacher_knows_passes_the_demo_gate(report):
    result, _ = report
    decision = decide(result, load_policy(POLICY), "teacher")
    assert decision.passed, [(r.rule, r.verdict, r.reason) for r in decision.rules]
    assert all(r.verdict == "pass" for r in decision.rules)  # every rule applied to the benchmark


def test_one_test_tile_moves_a_gated_metric_by_less_than_a_third_of_any_margin(report):
    # Balanced accuracy is the mean over classes of per-class recall: one tile of the smallest class
    # moves it by 1 / (classes x smallest class). Macro one-vs-rest AUC: one tile moves its own class's
    # AUC by at most 1 / n_pos and each other class's by at most 1 / n_neg, so the macro mean by at most
    # (1/n_c + sum over the others of 1/(N - n_k)) / classes. The demo benchmark: 4 classes x 72 test
    # tiles -> 1/288 = 0.0035 (balanced accuracy), (1/72 + 3/216) / 4 = 0.0069 (AUC). CKA (a threshold
    # on a point estimate over 288 tiles) and the robustness index (neighbour pairs) move less per tile.
    _, csv = report
    test = pd.read_csv(csv).query("split == 'test'")
    counts = test["label"].value_counts()
    classes, smallest, total = len(counts), int(counts.min()), int(counts.sum())
    one_tile = {
        "lp_balanced_accuracy": 1 / (classes * smallest),
        "knn_balanced_accuracy": 1 / (classes * smallest),
        "lp_auc": max((1 / n + sum(1 / (total - m) for k, m in counts.items() if k != c)) / classes
                      for c, n in counts.items()),
    }
    policy = load_policy(POLICY)
    checked = 0
    for rule in policy.rules:
        if rule.metric not in one_tile:
            continue
        size = rule.delta if rule.test == "non_inferiority" else rule.margin
        assert one_tile[rule.metric] < size / 3, (rule.name, one_tile[rule.metric], size)
        checked += 1
    assert checked >= 5  # learned-probe, learned-knn, matches-probe, matches-auc, matches-knn
