"""Training data: an order that is a pure function of (seed, epoch, step), rank splits, slide hold-out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from g2l.config import ConfigError
from g2l.distill.data import CachedTargets, DataPlan, StepSampler, scan_shards, slide_of, split_by_slide
from g2l.embed import open_cache
from tests.fixtures.distill import SLIDES, DistillData


def _plan(n: int = 40, shards: int = 5, batch: int = 8, seed: int = 0) -> DataPlan:
    train = np.arange(n)
    return DataPlan(
        train=train, shard_of=train % shards, views=3, global_batch=batch, seed=seed, window_shards=2
    )


def test_order_is_a_pure_function_of_seed_epoch_and_step() -> None:
    a, b = _plan(), _plan()
    for step in (0, 3, 4, 11):  # 5 steps per epoch
        for x, y in zip(a.global_batch_at(step), b.global_batch_at(step), strict=True):
            np.testing.assert_array_equal(x, y)
    assert a.position(11) == (2, 8)
    e0, e1 = a.epoch_order(0)[0], a.epoch_order(1)[0]
    assert sorted(e0) == sorted(e1) == list(range(40)) and not np.array_equal(e0, e1)
    assert not np.array_equal(_plan(seed=1).epoch_order(0)[0], e0)
    views = np.concatenate([a.epoch_order(e)[1] for e in range(4)])
    assert set(views.tolist()) == {0, 1, 2}


def test_rank_shares_tile_the_global_batch_for_any_world_size() -> None:
    plan = _plan()
    whole = plan.rank_share(7, 0, 1)
    assert [it for r in range(2) for it in plan.rank_share(7, r, 2)] == whole
    assert [it for r in range(4) for it in plan.rank_share(7, r, 4)] == whole
    # one process with accumulation 2 reads the same micro-batches as two processes without
    one = list(StepSampler(plan, 7, 8, rank=0, world_size=1, micro=4))
    two = [list(StepSampler(plan, 7, 8, rank=r, world_size=2, micro=4))[0] for r in range(2)]
    assert one == two
    # a sampler started at step 7 continues exactly where a sampler from step 0 would be
    full = list(StepSampler(plan, 0, 10, rank=0, world_size=1, micro=4))
    assert full[14:] == list(StepSampler(plan, 7, 10, rank=0, world_size=1, micro=4))


def test_global_batch_larger_than_the_data_is_an_error() -> None:
    with pytest.raises(ConfigError, match="global_batch"):
        _plan(n=4, batch=8)


def test_validation_holds_out_whole_slides(distill_data: DistillData) -> None:
    index = scan_shards(distill_data.shards)
    assert len(index) == 24 and sorted(index.slides) == sorted(SLIDES)
    split = split_by_slide(index, fraction=0.25, seed=0, max_val_tiles=100)
    assert len(split.val_slides) == 1 and len(split.val) == 6 and len(split.train) == 18
    val_slides = {slide_of(index.keys[i]) for i in split.val}
    assert val_slides == set(split.val_slides)
    assert not val_slides & {slide_of(index.keys[i]) for i in split.train}
    assert split_by_slide(index, 0.25, 0, 100).val_slides == split.val_slides  # seeded
    assert split_by_slide(index, 0.0, 0, 100).val.size == 0


def test_cached_targets_read_the_right_rows(distill_data: DistillData, tmp_path: Path) -> None:
    index = scan_shards(distill_data.shards)
    cache = open_cache(distill_data.cache)
    targets = CachedTargets(cache, index)
    for i in (0, 7, 23):
        for v in (0, 1):
            np.testing.assert_array_equal(targets(i, v), cache.get(index.keys[i])[v].astype(np.float32))
    from tests.fixtures.shards import write_synthetic_shards

    other = scan_shards(
        write_synthetic_shards(
            tmp_path, slides=("x1", "x2", "x3", "x4"), tiles_per_slide=6, tiles_per_shard=6
        )
    )
    with pytest.raises(ConfigError, match="other shards"):
        CachedTargets(cache, other)


def test_shards_in_a_bucket_index_like_local_ones(
    distill_data: DistillData, gcs_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from g2l import storage
    from g2l.distill.data import TileReader

    monkeypatch.setenv("G2L_CACHE_DIR", str(tmp_path / "stage"))  # keep staged copies inside this test
    uri = f"gs://{gcs_bucket}/g2l/shards"
    storage.sync_dir(distill_data.shards, uri)
    local, remote = scan_shards(distill_data.shards), scan_shards(uri)
    assert remote.keys == local.keys and remote.shards_sha256 == local.shards_sha256
    np.testing.assert_array_equal(TileReader(remote).read(5), TileReader(local).read(5))
