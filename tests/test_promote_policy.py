"""The gate policy's primary metric decides champion versus candidate: its mean, or one benchmark's value."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from g2l.config import ConfigError
from g2l.registry import promote
from tests.fixtures.lineage import BENCH, BENCH2, METRIC, Candidate, World


def _promote(c: Candidate, policy: Path, cancer: str, uri: str):  # type: ignore[no-untyped-def]
    return promote(
        student=str(c.student),
        report=str(c.report),
        decision=str(c.decision),
        cancer=cancer,
        policy=str(policy),
        registry_uri=uri,
        quiet=True,
    )


@pytest.mark.parametrize("form, winner", [("mean", "a"), ("one-benchmark", "b")])
def test_primary_metric_from_the_policy_decides(
    form: str,
    winner: str,
    make_candidate: Callable[..., Candidate],
    lineage_world: World,
    cancer: str,
    registry_uri: str,
    tmp_path: Path,
) -> None:
    policy = lineage_world.policy  # gate form: `primary_metric: balanced_accuracy` (mean over benchmarks)
    if form == "one-benchmark":
        policy = tmp_path / "gate-one.yaml"
        policy.write_text(f"primary_metric: {{metric: {METRIC}, benchmark: {BENCH2}}}\n")
    a = make_candidate(value=0.75, seed=1, per_bench={BENCH: 0.90, BENCH2: 0.60})  # mean 0.75
    b = make_candidate(value=0.70, seed=2, per_bench={BENCH: 0.70, BENCH2: 0.70})  # mean 0.70
    first = _promote(a, policy, cancer, registry_uri)
    second = _promote(b, policy, cancer, registry_uri)
    assert first.status == "promoted"
    assert second.status == ("challenger" if winner == "a" else "promoted")
    key = f"all.{METRIC}" if form == "mean" else f"{BENCH2}.{METRIC}"
    assert key in second.reasons[0]


def test_policy_without_primary_metric_is_an_error_naming_the_file(
    make_candidate: Callable[..., Candidate], tmp_path: Path, cancer: str, registry_uri: str
) -> None:
    policy = tmp_path / "gate.yaml"
    policy.write_text("rules: []\n")
    with pytest.raises(ConfigError, match=r"gate\.yaml: needs `primary_metric"):
        _promote(make_candidate(value=0.8), policy, cancer, registry_uri)


def test_report_without_the_primary_metric_is_an_error_naming_it(
    make_candidate: Callable[..., Candidate], tmp_path: Path, cancer: str, registry_uri: str
) -> None:
    policy = tmp_path / "gate.yaml"
    policy.write_text("primary_metric: lp_auc\n")
    with pytest.raises(
        ValueError, match=r"lacks lp_auc on synth-slides, synth-tiles for candidate 'student'"
    ):
        _promote(make_candidate(value=0.8), policy, cancer, registry_uri)
