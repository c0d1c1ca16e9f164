"""Stage metrics reach a real Prometheus Pushgateway, grouped by run_id/stage/cancer, or a textfile."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from g2l.metrics import PUSHGATEWAY_ENV, StageMetrics, read_gateway_metrics, read_textfile_metrics


def _run_stage(**kwargs: object) -> StageMetrics:
    with StageMetrics("tiling", **kwargs) as m:  # type: ignore[arg-type]
        m.counter("tiles_written_total", "Tiles written").inc(42)
        m.counter("slides_done_total", "Slides done").inc(3)
        m.gauge("tiles_per_second", "Throughput").set(12.5)
    return m


def test_metrics_pushed_to_gateway_carry_grouping_labels(pushgateway: str) -> None:
    run_id = f"run-{uuid.uuid4().hex[:8]}"
    _run_stage(run_id=run_id, cancer="brca", gateway=pushgateway)

    got = read_gateway_metrics(pushgateway, run_id=run_id, stage="tiling", cancer="brca")
    assert got["g2l_tiles_written_total"] == 42
    assert got["g2l_slides_done_total"] == 3
    assert got["g2l_tiles_per_second"] == 12.5
    assert got["g2l_stage_success"] == 1
    assert got["g2l_stage_duration_seconds"] >= 0
    # another run's group is not mixed in
    assert read_gateway_metrics(pushgateway, run_id="some-other-run", stage="tiling") == {}


def test_metrics_follow_the_pushgateway_env_var(
    pushgateway: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(PUSHGATEWAY_ENV, pushgateway)
    run_id = f"run-{uuid.uuid4().hex[:8]}"
    with pytest.raises(RuntimeError):
        with StageMetrics("embed", run_id=run_id, cancer="prad", root=str(tmp_path)) as m:
            m.counter("parts_written_total", "Parts").inc(7)
            raise RuntimeError("stage failed")

    got = read_gateway_metrics(pushgateway, run_id=run_id, stage="embed", cancer="prad")
    assert got["g2l_parts_written_total"] == 7
    assert got["g2l_stage_success"] == 0  # the failure is visible in the metrics
    assert not (tmp_path / "metrics").exists()  # pushed, so no textfile


def test_metrics_fall_back_to_a_labelled_textfile(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(PUSHGATEWAY_ENV, raising=False)
    _run_stage(run_id="r1", cancer="brca", root=str(tmp_path))

    text = (tmp_path / "metrics" / "tiling.prom").read_text()
    got = read_textfile_metrics(text, run_id="r1", stage="tiling", cancer="brca")
    assert got["g2l_tiles_written_total"] == 42
    assert got["g2l_stage_success"] == 1


def _groups(gateway: str) -> list[dict[str, str]]:
    import json
    import urllib.request

    with urllib.request.urlopen(f"{gateway}/api/v1/metrics", timeout=10) as resp:
        return [g["labels"] for g in json.load(resp)["data"]]


def test_parallel_tasks_push_to_groups_of_their_own(
    pushgateway: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A push replaces its whole group (Pushgateway PUT semantics): with one group per stage, the last of
    N parallel tiling tasks would erase the others. Each task's index is part of the grouping key."""
    from g2l.metrics import TASK_ENV

    run_id = f"run-{uuid.uuid4().hex[:8]}"
    for task in ("0", "1", "2"):
        monkeypatch.setenv(TASK_ENV, task)
        with StageMetrics("tiling", run_id=run_id, cancer="brca", gateway=pushgateway) as m:
            m.gauge("tiles_per_second", "Throughput").set(10.0 + int(task))
    mine = [g for g in _groups(pushgateway) if g.get("run_id") == run_id]
    assert sorted(g["task"] for g in mine) == ["0", "1", "2"]
    rates = [read_gateway_metrics(pushgateway, run_id=run_id, task=t)["g2l_tiles_per_second"] for t in "012"]
    assert rates == [10.0, 11.0, 12.0]  # they add up: 33 tiles/s for the run


def test_progress_is_pushed_while_the_stage_runs_and_the_end_is_marked(pushgateway: str) -> None:
    run_id = f"run-{uuid.uuid4().hex[:8]}"
    with StageMetrics("distill", run_id=run_id, cancer="prad", gateway=pushgateway) as m:
        loss = m.gauge("distill_loss", "Training loss")
        loss.set(2.5)
        assert m.push_progress() == pushgateway  # the first log step is pushed at once
        mid = read_gateway_metrics(pushgateway, run_id=run_id, stage="distill")
        assert mid["g2l_distill_loss"] == 2.5 and mid["g2l_stage_finished_timestamp_seconds"] == 0
        loss.set(1.5)
        assert m.push_progress() is None  # rate-limited: not more than one push per interval
        assert read_gateway_metrics(pushgateway, run_id=run_id)["g2l_distill_loss"] == 2.5
    done = read_gateway_metrics(pushgateway, run_id=run_id, stage="distill")
    assert done["g2l_distill_loss"] == 1.5 and done["g2l_stage_finished_timestamp_seconds"] > 0


def test_the_exit_handler_deletes_a_finished_runs_groups(pushgateway: str) -> None:
    from g2l.pipeline.cleanup import cleanup_run

    run_id, other = f"run-{uuid.uuid4().hex[:8]}", f"run-{uuid.uuid4().hex[:8]}"
    for rid, stage in ((run_id, "tiling"), (run_id, "embed"), (other, "tiling")):
        StageMetrics(stage, run_id=rid, cancer="brca", gateway=pushgateway).publish()
    env = {"G2L_RUN_ID": run_id, PUSHGATEWAY_ENV: pushgateway}
    assert cleanup_run(env=env, log=lambda _: None)["metric_groups"] == 0  # infra did not ask for it
    done = cleanup_run(env={**env, "G2L_METRICS_DELETE_FINISHED": "true"}, log=lambda _: None)
    assert done["metric_groups"] == 2
    runs = {g.get("run_id") for g in _groups(pushgateway)}
    assert run_id not in runs and other in runs  # only that run's groups went


def test_distillation_pushes_its_loss_while_it_trains(
    pushgateway: str, distill_data, one_thread, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The training loop publishes at its log steps: mid-run the dashboard already has the loss."""
    from g2l.distill import run_distill
    from tests.fixtures.distill import tiny_config

    run_id = f"run-{uuid.uuid4().hex[:8]}"
    seen: dict[int, dict[str, float]] = {}

    def at_step(step: int) -> None:
        if step == 2:  # well before the end (10 steps), where the stage's own exit pushes
            seen[step] = read_gateway_metrics(pushgateway, run_id=run_id, stage="distill")

    monkeypatch.setenv(PUSHGATEWAY_ENV, pushgateway)
    cfg = tiny_config(schedule={"max_steps": 10, "warmup_steps": 2})
    run_distill(
        cfg,
        distill_data.shards,
        distill_data.cache,
        str(tmp_path / "run"),
        nproc=1,
        quiet=True,
        run_id=run_id,
        cancer="brca",
        step_callback=at_step,
    )
    assert seen[2]["g2l_distill_loss"] > 0 and seen[2]["g2l_stage_finished_timestamp_seconds"] == 0
