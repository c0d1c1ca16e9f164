"""`champion` moves only to a passing candidate that beats the champion; re-promotion is a no-op."""

from __future__ import annotations

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


def _champion(cancer: str, uri: str) -> int | None:
    rows = [r.version for r in list_versions(cancer, registry_uri=uri) if "champion" in r.aliases]
    return rows[0] if rows else None


def test_failed_gate_never_moves_champion(
    make_candidate: Callable[..., Candidate], lineage_world: World, cancer: str, registry_uri: str
) -> None:
    failed_first = _promote(
        make_candidate(value=0.99, passed=False, seed=1), lineage_world, cancer, registry_uri
    )
    assert failed_first.status == "rejected" and failed_first.exit_code == 4
    assert "champion" not in failed_first.aliases
    assert (
        _champion(cancer, registry_uri) is None
    )  # even with no champion at all, a failed gate is no champion

    good = _promote(make_candidate(value=0.70, seed=2), lineage_world, cancer, registry_uri)
    assert good.status == "promoted" and good.aliases == ("champion",) and good.exit_code == 0

    # A failed gate with a far better metric still does not replace the champion.
    failed = _promote(make_candidate(value=0.99, passed=False, seed=3), lineage_world, cancer, registry_uri)
    assert failed.status == "rejected"
    assert _champion(cancer, registry_uri) == good.version
    rows = {r.version: r for r in list_versions(cancer, registry_uri=registry_uri)}
    assert rows[failed.version].gate == "failed" and rows[failed.version].decision == "rejected"


def test_passing_but_worse_candidate_does_not_replace_a_better_champion(
    make_candidate: Callable[..., Candidate], lineage_world: World, cancer: str, registry_uri: str
) -> None:
    best = _promote(make_candidate(value=0.80, seed=1), lineage_world, cancer, registry_uri)
    worse = _promote(make_candidate(value=0.75, seed=2), lineage_world, cancer, registry_uri)
    assert worse.status == "challenger" and worse.aliases == ("challenger",) and worse.exit_code == 4
    assert _champion(cancer, registry_uri) == best.version

    tie = _promote(make_candidate(value=0.80, seed=3), lineage_world, cancer, registry_uri)
    assert tie.status == "challenger"  # a tie keeps the champion
    better = _promote(make_candidate(value=0.85, seed=4), lineage_world, cancer, registry_uri)
    assert better.status == "promoted"
    assert _champion(cancer, registry_uri) == better.version
    assert len(list_versions(cancer, registry_uri=registry_uri)) == 4


def test_repromotion_is_idempotent(
    make_candidate: Callable[..., Candidate], lineage_world: World, cancer: str, registry_uri: str
) -> None:
    cand = make_candidate(value=0.8, seed=1)
    first = _promote(cand, lineage_world, cancer, registry_uri)
    again = _promote(cand, lineage_world, cancer, registry_uri)
    assert first.created and not again.created
    assert again.version == first.version and again.status == "already-champion" and again.exit_code == 0
    assert again.run_id == first.run_id
    assert [r.version for r in list_versions(cancer, registry_uri=registry_uri)] == [first.version]

    worse = make_candidate(value=0.7, seed=2)
    w1 = _promote(worse, lineage_world, cancer, registry_uri)
    w2 = _promote(worse, lineage_world, cancer, registry_uri)
    assert (w1.version, w1.status) == (w2.version, w2.status) == (w1.version, "challenger")
    assert len(list_versions(cancer, registry_uri=registry_uri)) == 2
