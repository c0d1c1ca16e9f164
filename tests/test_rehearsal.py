"""`g2l rehearse --config configs/brca.yaml`: the real architectures (H-optimus-0 teacher, Hibou-L student)
with random weights through tile -> embed -> distill (2 gloo processes) -> evaluate on CPU.

Marked `rehearsal`: about 20 minutes and up to ~15 GB on the shared 2-core machine, so it is not in
`make test`; run it with `pytest -m rehearsal tests/test_rehearsal.py`. Its time and memory are a
benchmark (benchmarks/rehearsal.py, figures in benchmarks/RESULTS.md), not asserted here beyond
fitting in memory.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.rehearsal
@pytest.mark.timeout(3600)
def test_brca_rehearsal_passes_at_real_sizes(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "g2l", "rehearse", "--config", "configs/brca.yaml", "--out",
                           str(tmp_path / "rehearsal")], cwd=ROOT, capture_output=True, text=True)
    summary = json.loads(proc.stdout.strip().splitlines()[-1])  # the last line is the JSON summary
    assert proc.returncode == 0 and summary["ok"], summary
    # the published sizes: H-optimus-0 ViT-g/14 (1.13B), Hibou-L ViT-L/14 SwiGLU (303.7M)
    assert summary["teacher_params"] == 1_134_774_272 and summary["student_params"] == 303_657_216
    assert list(summary["stages"]) == ["tile", "embed", "distill", "evaluate"]
    for stage in summary["stages"].values():  # fits the 24 GB box (times: benchmarks/RESULTS.md)
        assert stage["seconds"] > 0 and 0 < stage["peak_rss_gb"] < 24
    run = tmp_path / "rehearsal" / "artifacts" / "run"
    card = json.loads((run / "student" / "config.json").read_text())
    assert card["steps"] == 2 and card["world_size"] == 2 and card["status"] == "finished"
    assert (tmp_path / "rehearsal" / "artifacts" / "eval" / "report.json").is_file()
