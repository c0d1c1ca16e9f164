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
