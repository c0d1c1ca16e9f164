"""Two `g2l promote` processes started together: the better one ends as champion, both are registered."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from g2l.metrics import read_gateway_metrics
from g2l.registry import list_versions, promote
from tests.fixtures.lineage import Candidate, World, promote_args


def _cmd(c: Candidate, world: World, cancer: str, uri: str, config: Path, run_id: str) -> list[str]:
    extra = ("--config", str(config), "--run-id", run_id, "--artifact-root", str(config.parent / "artifacts"))
    return [sys.executable, "-m", "g2l", *promote_args(c, world, cancer, uri, *extra)]


@pytest.mark.slow
@pytest.mark.parametrize("lock", ["file", "registry"])
def test_concurrent_promoters_end_with_the_better_one_as_champion(
    lock: str,
    make_candidate: Callable[..., Candidate],
    lineage_world: World,
    cancer: str,
    registry_uri: str,
    tmp_path: Path,
    pushgateway: str,
) -> None:
    # A weak champion exists, so both newcomers beat what they read: without a lock each would set the
    # alias and the last writer would win, whichever it is.
    first = make_candidate(value=0.60, seed=1)
    promote(
        student=str(first.student),
        report=str(first.report),
        decision=str(first.decision),
        cancer=cancer,
        policy=str(lineage_world.policy),
        registry_uri=registry_uri,
        quiet=True,
    )
    better, worse = make_candidate(value=0.90, seed=2), make_candidate(value=0.75, seed=3)
    config = tmp_path / "registry.yaml"
    config.write_text(f"registry:\n  lock: {lock}\n  lock_timeout_s: 120\n")
    # Each promoter pauses between reading the champion and setting the alias, so that their
    # read-compare-set windows overlap unless the lock serialises them.
    env = {**os.environ, "G2L_PROMOTE_HOLD_S": "1.5", "G2L_PUSHGATEWAY": pushgateway}
    procs = [
        subprocess.Popen(
            _cmd(c, lineage_world, cancer, registry_uri, config, f"{cancer}-{tag}"),
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for c, tag in ((worse, "worse"), (better, "better"))
    ]
    outs = [p.communicate(timeout=180) for p in procs]
    codes = [p.returncode for p in procs]
    # exit 0 champion, 4 registered but not promoted (g2l promote's contract); anything else: show why
    assert all(code in (0, 4) for code in codes), (codes, [err[-3000:] for _, err in outs])
    lines = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]

    rows = {r.version: r for r in list_versions(cancer, registry_uri=registry_uri)}
    assert len(rows) == 3, (codes, [err[-2000:] for _, err in outs])  # both registered, none lost
    champion = [v for v, r in rows.items() if "champion" in r.aliases]
    assert len(champion) == 1 and rows[champion[0]].primary_value == pytest.approx(0.90)
    (w_line, w_code), (b_line, b_code) = zip(lines, codes, strict=True)
    assert b_code == 0 and b_line["aliases"] == ["champion"]
    # Serialised decisions: the second decider saw the first one's outcome.
    if w_code == 0:  # the worse one decided first and was champion for a moment ...
        assert w_line["status"] == "promoted"
        assert f"champion v{w_line['version']} " in b_line["reasons"][0]  # ... and the better one beat it
    else:  # the better one decided first; the worse one compared against it
        assert w_code == 4 and w_line["aliases"] == ["challenger"]
        assert f"champion v{b_line['version']} " in w_line["reasons"][0]
    # Each promoter's stage metrics reached the Pushgateway under its own run id.
    pushed = {
        tag: read_gateway_metrics(pushgateway, run_id=f"{cancer}-{tag}", stage="promote", cancer=cancer)
        for tag in ("worse", "better")
    }
    assert pushed["better"]["g2l_promote_champion"] == 1
    assert pushed["better"]["g2l_promote_version"] == b_line["version"]
    assert pushed["worse"]["g2l_promote_champion"] == (1 if w_code == 0 else 0)
    assert pushed["worse"]["g2l_promote_versions_created_total"] == 1
