"""`g2l models list` shows every version with its aliases, key metrics, gate result and date."""

from __future__ import annotations

from collections.abc import Callable

from typer.testing import CliRunner

from g2l.cli import app
from g2l.registry import promote
from tests.fixtures.lineage import Candidate, World


def test_models_list_shows_versions_aliases_metrics_and_gate(
    make_candidate: Callable[..., Candidate], lineage_world: World, cancer: str, registry_uri: str
) -> None:
    for value, passed, seed in ((0.8, True, 1), (0.7, True, 2), (0.95, False, 3)):
        c = make_candidate(value=value, passed=passed, seed=seed)
        promote(
            student=str(c.student),
            report=str(c.report),
            decision=str(c.decision),
            cancer=cancer,
            policy=str(lineage_world.policy),
            registry_uri=registry_uri,
            quiet=True,
        )
    out = CliRunner().invoke(app, ["models", "list", "--cancer", cancer, "--registry", registry_uri])
    assert out.exit_code == 0, out.output
    lines = {
        line.split("│")[1].strip(): line
        for line in out.stdout.splitlines()
        if line.startswith("│") and line.split("│")[1].strip().isdigit()
    }
    assert set(lines) == {"1", "2", "3"}
    assert "champion" in lines["1"] and "passed" in lines["1"] and "balanced_accuracy=0.8000" in lines["1"]
    assert "challenger" in lines["2"] and "balanced_accuracy=0.7000" in lines["2"]
    assert "failed" in lines["3"] and "rejected" in lines["3"] and "champion" not in lines["3"]
    assert f"g2l-student-{cancer}" in out.stdout
