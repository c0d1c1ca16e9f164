import dataclasses

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from g2l.embed import EmbedConfig, compute_key, load_shard_index, run_embed
from g2l.models import build_model
from tests.fixtures.shards import dir_bytes

CFG = EmbedConfig(views=2, batch_size=4, num_workers=0)


@pytest.fixture(scope="module")
def teacher():
    return build_model("tiny-vit-teacher")


def test_key_changes_with_weights_view_spec_shards_and_embedding(shards_dir, make_shards, tmp_path, teacher):
    index = load_shard_index(shards_dir)
    base, _ = compute_key(index, CFG, teacher)

    state = {k: v.clone() for k, v in teacher.model.state_dict().items()}
    state["head.weight" if "head.weight" in state else "norm.weight"].view(-1)[0] += 0.01
    save_file(state, str(tmp_path / "w.safetensors"))
    retrained = build_model("tiny-vit-teacher", weights=tmp_path / "w.safetensors")
    assert compute_key(index, CFG, retrained)[0] != base

    for change in ({"seed": 1}, {"views": 3}, {"hflip_p": 0.0}, {"color_jitter": (0.2, 0.15, 0.1, 0.05)},
                   {"blur_p": 0.2}, {"crop_px": 192}):
        assert compute_key(index, dataclasses.replace(CFG, **change), teacher)[0] != base, change

    other_shards = load_shard_index(make_shards("other", tiles_per_slide=6))
    assert compute_key(other_shards, CFG, teacher)[0] != base
    cls_mean = build_model("tiny-vit-teacher", embedding="cls_mean")
    assert compute_key(index, CFG, cls_mean)[0] != base


def test_key_ignores_batch_size_workers_device_and_precision(shards_dir, teacher):
    index = load_shard_index(shards_dir)
    base, _ = compute_key(index, CFG, teacher)
    for change in ({"batch_size": 7}, {"num_workers": 5}, {"device": "cpu"}, {"precision": "bf16"},
                   {"compile": True}):
        assert compute_key(index, dataclasses.replace(CFG, **change), teacher)[0] == base, change


def test_batch_size_and_worker_count_fill_the_same_cache(shards_dir, tmp_path, teacher):
    serial = run_embed(shards_dir, tmp_path / "a", CFG, quiet=True, model=teacher)
    workers = run_embed(shards_dir, tmp_path / "b", dataclasses.replace(CFG, num_workers=2), quiet=True,
                        model=teacher)
    bigger = run_embed(shards_dir, tmp_path / "c", dataclasses.replace(CFG, batch_size=16), quiet=True,
                       model=teacher)
    names = {p.split("/")[-1] for p in (serial, workers, bigger)}
    assert len(names) == 1
    assert dir_bytes(serial) == dir_bytes(workers)  # same batch size: identical bytes whatever the workers
    a, c = (torch.from_numpy(np.load(f"{d}/part-000000.npy")).float() for d in (serial, bigger))
    torch.testing.assert_close(a, c, rtol=2e-3, atol=2e-3)
