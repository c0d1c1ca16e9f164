"""The rehearsal's parts, in the default run: its config is the user's except sizes and step counts,
its checkpoints round-trip through the published layouts, and stages are measured across processes.
(The rehearsal itself, at full size, is tests/test_rehearsal.py behind the `rehearsal` marker.)"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from g2l.config import load_yaml
from g2l.models.layouts import dinov2_to_timm, hf_dinov2_to_timm, timm_to_dinov2, timm_to_hf_dinov2
from g2l.rehearse.measure import run_stage
from g2l.rehearse.setup import derive_config

ROOT = Path(__file__).resolve().parents[1]
# the only keys a rehearsal may change: sizes, step counts, where the weights and data are, devices
CHANGED = {
    ("manifest", "path"), ("manifest", "rev"), ("manifest", "repo"), ("tiling", "max_failed_fraction"),
    ("embed", "weights"), ("embed", "views"), ("embed", "max_tiles_per_slide"), ("embed", "batch_size"),
    ("embed", "num_workers"), ("embed", "device"), ("distill", "student_weights"),
    ("distill", "per_device_batch"), ("distill", "global_batch"), ("distill", "num_workers"),
    ("distill", "log_every_steps"), ("distill", "schedule", "max_steps"),
    ("distill", "schedule", "warmup_steps"),
    ("distill", "checkpoint", "every_steps"), ("distill", "checkpoint", "keep_last"),
    ("distill", "validation", "every_steps"), ("distill", "validation", "max_tiles"), ("evaluate", "knn_k"),
    ("evaluate", "robustness_ks"), ("evaluate", "batch_size"), ("evaluate", "num_workers"),
    ("evaluate", "device"), ("evaluate", "extra_models"),
}


def _leaves(d: dict, prefix: tuple = ()) -> dict[tuple, object]:
    out: dict[tuple, object] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_leaves(v, (*prefix, k)))
        else:
            out[(*prefix, k)] = v
    return out


@pytest.mark.parametrize("name", ["brca", "prad"])
def test_rehearsal_config_is_the_users_except_sizes_and_step_counts(name: str, tmp_path: Path) -> None:
    raw = load_yaml(ROOT / f"configs/{name}.yaml")
    derived = derive_config(raw, manifest=tmp_path / "m.csv", teacher_weights=tmp_path / "t.bin",
                            student_weights=tmp_path / "s")
    before, after = _leaves(raw), _leaves(derived)
    changed = {k for k in set(before) | set(after) if before.get(k, "<absent>") != after.get(k, "<absent>")}
    assert changed <= CHANGED, sorted(changed - CHANGED)
    assert after[("distill", "schedule", "max_steps")] == 2 and after[("distill", "global_batch")] == 4
    for key in (("distill", "loss", "reduction"), ("distill", "early_stopping", "mode"),
                ("distill", "student"), ("embed", "teacher"), ("distill", "optim", "lr"),
                ("tiling", "target_mpp")):
        assert after[key] == before[key]


def test_checkpoint_layouts_round_trip_exactly() -> None:
    gen = torch.Generator().manual_seed(0)
    from g2l.models.build import skeleton

    small = {"img_size": 56, "embed_dim": 32, "depth": 2, "num_heads": 2, "mlp_ratio": 5.5,
             "mlp_layer": "timm.layers.SwiGLUPacked", "act_layer": "torch.nn.SiLU", "num_classes": 0}
    model = skeleton("vit_large_patch14_reg4_dinov2", small)
    state = {k: torch.randn(v.shape, generator=gen) for k, v in model.state_dict().items()}
    for there, back in ((timm_to_hf_dinov2, hf_dinov2_to_timm), (timm_to_dinov2, dinov2_to_timm)):
        again = back(there(state))
        assert sorted(again) == sorted(state)
        assert all(torch.equal(again[k], state[k]) for k in state)


def test_a_stage_is_timed_and_its_process_tree_memory_is_measured(tmp_path: Path) -> None:
    # a parent that starts a child; each holds ~200 MB for a second: the tree's peak counts both
    code = ("import subprocess, sys, time, numpy as np; a = np.ones(25_000_000); "
            "c = subprocess.Popen([sys.executable, '-c', 'import time, numpy as np; b = np.ones(25_000_000); "
            "time.sleep(1.5)']); time.sleep(1.5); c.wait(); print('done')")
    result = run_stage("probe", [sys.executable, "-c", code], log=tmp_path / "probe.log")
    assert result.returncode == 0 and result.stdout.strip() == "done"
    assert result.seconds >= 1.5
    assert 0.35 < result.peak_rss_gb < 1.5  # two x 0.2 GB arrays, plus two interpreters
    assert "done" in (tmp_path / "probe.log").read_text()
