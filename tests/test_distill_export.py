"""The exported student: no head, lineage in config.json, reloads (g2l and plain timm), embeds identically."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import load_file

from g2l.config import config_hash
from g2l.distill import run_distill
from g2l.distill.checkpoint import latest_checkpoint, load_checkpoint
from g2l.models import build_model, embed, load_student
from tests.fixtures.distill import DistillData, tiny_config

pytestmark = pytest.mark.usefixtures("one_thread")


def test_exported_student_reloads_and_embeds_identically(distill_data: DistillData, tmp_path: Path) -> None:
    cfg = tiny_config(schedule={"max_steps": 6}, validation={"every_steps": 3})
    student_dir = Path(run_distill(cfg, distill_data.shards, distill_data.cache, str(tmp_path), quiet=True))
    assert student_dir == tmp_path / "student"

    # the trained student, rebuilt from the last checkpoint's weights (the export is "last" here)
    state = load_checkpoint(latest_checkpoint(tmp_path))["state"]["model"]
    trained = build_model("tiny-vit-student").model
    trained.load_state_dict({k[len("student.") :]: v for k, v in state.items() if k.startswith("student.")})
    untrained = build_model("tiny-vit-student").model

    saved = load_file(str(student_dir / "model.safetensors"))
    assert not any(k.startswith(("head.", "student.")) for k in saved)  # projection head dropped

    loaded = load_student(student_dir)
    pixels = torch.randint(0, 256, (3, 224, 224, 3), dtype=torch.uint8)
    x = loaded.preprocess(pixels)
    with torch.no_grad():
        want = embed(trained.eval(), x)
        got = embed(loaded.model, x)
        assert not torch.allclose(embed(untrained.eval(), x), want)  # training changed the student
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert loaded.embed_dim == 48

    card = json.loads((student_dir / "config.json").read_text())
    index = json.loads((Path(distill_data.cache) / "index.json").read_text())
    shards_index = json.loads((Path(distill_data.shards) / "index.json").read_text())
    assert card["teacher"] == {"name": index["teacher"], "weights_sha256": index["weights_sha256"]}
    assert card["cache_key"] == index["key"]
    assert card["manifest_sha256"] == shards_index["manifest_sha256"]
    assert card["config_hash"] == config_hash(cfg) and card["steps"] == 6
    assert set(card["val"]) == {"val_loss", "val_cosine"}
    assert card["weights_sha256"] == loaded.weights_sha256

    # plain timm, no g2l: the architecture and kwargs from config.json, the weights file as pretrained
    model = timm.create_model(
        card["architecture"],
        pretrained=True,
        pretrained_cfg_overlay={"file": str(student_dir / "model.safetensors")},
        **card["model_args"],
    ).eval()
    with torch.no_grad():
        torch.testing.assert_close(embed(model, x), want, rtol=0, atol=0)
