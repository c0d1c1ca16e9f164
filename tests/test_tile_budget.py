"""A per-slide tile budget: seeded, tissue-weighted, the same choice everywhere, and the cache matches it.

The weighting is Efraimidis & Spirakis' weighted sampling without replacement, whose first pick has
probability w_i / sum(w): checked below against that formula over many seeds.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from g2l.tile_budget import TileBudget, choose, read_tissue
from tests.fixtures.distill import DistillData, tiny_config


def _slide(name: str, weights: list[float]) -> list[tuple[str, float]]:
    return [(f"{name}_{i * 256}_0", w) for i, w in enumerate(weights)]


def test_each_slide_keeps_at_most_n_tiles_and_small_slides_keep_all() -> None:
    tiles = _slide("big", [1.0] * 10) + _slide("small", [0.5] * 3)
    kept = choose(tiles, TileBudget(max_tiles_per_slide=4, seed=0))
    assert sum(k.startswith("big_") for k in kept) == 4
    assert {k for k in kept if k.startswith("small_")} == {k for k, _ in _slide("small", [0.5] * 3)}
    assert choose(tiles, TileBudget()) == {k for k, _ in tiles}  # 0 = every tile


def test_the_choice_is_a_pure_function_of_seed_and_tiles() -> None:
    tiles = _slide("a", [0.3, 0.9, 0.5, 0.7, 1.0, 0.2]) + _slide("b", [1.0] * 8)
    budget = TileBudget(max_tiles_per_slide=3, seed=5)
    shuffled = tiles[:]
    random.Random(1).shuffle(shuffled)
    assert choose(tiles, budget) == choose(shuffled, budget)  # order (shards, ranks) does not matter
    assert choose(tiles, budget) != choose(tiles, TileBudget(max_tiles_per_slide=3, seed=6))


def test_first_pick_probability_is_the_tissue_share() -> None:
    # one tile of two, weights 0.75 / 0.25: P(first) = 0.75; 4000 seeds give sd 0.0068, bound 0.03
    tiles = _slide("s", [0.75, 0.25])
    first = tiles[0][0]
    hits = sum(first in choose(tiles, TileBudget(max_tiles_per_slide=1, seed=s)) for s in range(4000))
    assert abs(hits / 4000 - 0.75) < 0.03


def test_tissue_fractions_come_from_the_shards(tmp_path: Path) -> None:
    from tests.fixtures.shards import write_synthetic_shards

    shards = write_synthetic_shards(tmp_path, slides=("s1", "s2"), tiles_per_slide=3, tiles_per_shard=4)
    found = read_tissue(shards / "shard-000000.tar")
    assert [k for k, _ in found] == ["s1_0_0", "s1_256_0", "s1_512_0", "s2_0_0"]
    assert {w for _, w in found} == {1.0}


@pytest.mark.usefixtures("one_thread")
def test_budgeted_cache_holds_the_choice_and_distillation_reads_exactly_it(
    distill_data: DistillData, tmp_path: Path
) -> None:
    from g2l.distill.runtime import DistEnv
    from g2l.distill.sources import resolve_sources
    from g2l.distill.train import Trainer
    from g2l.embed import EmbedConfig, open_cache, run_embed
    from g2l.tile_budget import choose_in_shards

    config = EmbedConfig(views=1, num_workers=0, batch_size=16, max_tiles_per_slide=3, tile_seed=11)
    # two ranks fill one cache: each computes its own parts with the same choice
    for rank in (0, 1):
        location = run_embed(distill_data.shards, tmp_path, config, rank=rank, world_size=2, quiet=True)
    cache = open_cache(location)
    shard_files = sorted(Path(distill_data.shards).glob("shard-*.tar"))
    expected, _ = choose_in_shards(shard_files, config.tile_budget())
    assert set(cache.tile_keys()) == expected and len(cache) == 4 * 3  # 4 slides x 3 of 6 tiles
    assert Path(location).name != Path(distill_data.cache).name  # the budget is part of the key

    cfg = tiny_config(schedule={"max_steps": 1}, global_batch=8, per_device_batch=4)
    sources = resolve_sources(cfg, location, torch.device("cpu"))
    trainer = Trainer(cfg, distill_data.shards, tmp_path / "run", sources, DistEnv(), quiet=True)
    assert set(trainer.tiles.keys) == expected
    for i in range(len(trainer.tiles)):  # every training tile's target is its own cached embedding
        key = trainer.tiles.keys[i]
        np.testing.assert_array_equal(trainer.dataset[(i, 0)]["target"].numpy(),
                                      cache.get(key)[0].astype(np.float32))
    assert trainer.run().status == "finished"
