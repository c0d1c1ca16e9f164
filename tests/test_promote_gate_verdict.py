"""The registry follows the gate's promotion verdict: no evidence of improvement keeps the champion."""

from __future__ import annotations

import json
from collections.abc import Callable

from g2l.registry import RegistryConfig, list_versions, promote
from tests.fixtures.lineage import Candidate, World


def _promote(c: Candidate, world: World, cancer: str, uri: str):  # type: ignore[no-untyped-def]
    return promote(
        student=str(c.student),
        report=str(c.report),
        decision=str(c.decision),
        cancer=cancer,
        policy=str(world.policy),
        registry_uri=uri,
        config=RegistryConfig(),
        quiet=True,
    )


def test_a_higher_point_value_without_evidence_stays_challenger(
    make_candidate: Callable[..., Candidate], lineage_world: World, cancer: str, registry_uri: str
) -> None:
    first = _promote(make_candidate(value=0.80, seed=1), lineage_world, cancer, registry_uri)
    assert first.status == "promoted"
    noisy = make_candidate(value=0.81, seed=2)  # higher point value, but the bootstrap cannot tell
    decision = json.loads(noisy.decision.read_text())
    decision["promotion"] = {
        "verdict": "not_better",
        "reason": "student - champion = +0.0100; 95% CI [-0.0300, +0.0500]: not better than the champion",
    }
    noisy.decision.write_text(json.dumps(decision))
    second = _promote(noisy, lineage_world, cancer, registry_uri)
    assert second.status == "challenger" and "95% CI" in second.reasons[0]
    champions = [
        r.version for r in list_versions(cancer, registry_uri=registry_uri) if "champion" in r.aliases
    ]
    assert champions == [first.version]
