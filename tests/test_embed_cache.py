import shutil

import numpy as np
import pytest
import torch

from g2l.embed import CacheError, EmbedConfig, decode_tile, iter_shard, open_cache, run_embed
from g2l.embed.cache import part_file
from g2l.models import build_model, embed
from g2l.views import make_view
from tests.fixtures.shards import dir_bytes

CFG = EmbedConfig(views=2, batch_size=4, num_workers=0)


class CountingForward:
    """The real teacher forward, counting calls and images."""

    def __init__(self, model):
        self.model, self.calls, self.images = model, 0, 0

    def __call__(self, x):
        self.calls += 1
        self.images += x.shape[0]
        return embed(self.model, x)


@pytest.fixture(scope="module")
def teacher():
    return build_model("tiny-vit-teacher")


def test_cached_embeddings_equal_a_direct_forward_on_the_same_view(shards_dir, tmp_path, teacher):
    cache = open_cache(run_embed(shards_dir, tmp_path / "out", CFG, quiet=True, model=teacher))
    assert (cache.views, cache.dim, len(cache)) == (2, 64, 10)
    spec = cache.view_spec  # what a student dataset reads back from the cache
    assert spec == CFG.view_spec()
    checked = 0
    for key, jpg, _ in iter_shard(shards_dir / "shard-000001.tar"):
        tile = decode_tile(jpg)
        cached = cache.get(key)
        assert cached.dtype == np.float16 and cached.shape == (2, 64)
        for v in range(2):
            x = teacher.preprocess(torch.from_numpy(make_view(tile, key, v, spec)))
            with torch.inference_mode():
                direct = embed(teacher, x)[0].numpy()
            np.testing.assert_allclose(cached[v].astype(np.float32), direct, rtol=2e-3, atol=2e-3)
        assert not np.array_equal(cached[0], cached[1])  # two different views
        checked += 1
    assert checked == 4


def test_layout_and_index_follow_the_contract(shards_dir, tmp_path, teacher):
    out = run_embed(shards_dir, tmp_path / "out", CFG, quiet=True, model=teacher)
    cache = open_cache(out)
    idx = cache.index
    fields = ("key", "teacher", "weights_sha256", "dim", "views", "view_spec", "preprocess", "shards_sha256")
    assert all(field in idx for field in fields)
    assert idx["teacher"] == "tiny-vit-teacher" and idx["weights_sha256"] == teacher.weights_sha256
    assert [p["file"] for p in idx["parts"]] == [part_file(i) for i in range(3)]
    assert [p["n_tiles"] for p in idx["parts"]] == [4, 4, 2]
    assert out.endswith(idx["key"]) and (cache.path / "_COMPLETE").is_file()
    parts = list(cache.iter_parts())
    assert parts[2].embeddings.shape == (2, 2, 64) and parts[2].shard == "shard-000002.tar"
    assert [k for p in parts for k in p.keys] == cache.tile_keys()
    keys_in_shard = [k for k, _, _ in iter_shard(shards_dir / "shard-000000.tar")]
    assert parts[0].keys == keys_in_shard  # rows in the shard's tile order
    cache.verify()
    with pytest.raises(KeyError, match="nope_0_0"):
        cache.get("nope_0_0")


def test_rerun_computes_nothing(shards_dir, tmp_path, teacher):
    out = run_embed(shards_dir, tmp_path / "out", CFG, quiet=True, model=teacher)
    before = dir_bytes(out)
    counting = CountingForward(teacher)
    assert run_embed(shards_dir, tmp_path / "out", CFG, quiet=True, model=teacher, forward=counting) == out
    assert counting.calls == 0
    assert dir_bytes(out) == before


def test_corrupt_part_of_a_sealed_cache_is_named_and_repaired_on_request(shards_dir, tmp_path, teacher):
    out = run_embed(shards_dir, tmp_path / "out", CFG, quiet=True, model=teacher)
    before = dir_bytes(out)
    victim = tmp_path / "out" / "embeddings" / open_cache(out).key / "part-000001.npy"
    data = bytearray(victim.read_bytes())
    data[-3] ^= 0xFF
    victim.write_bytes(bytes(data))
    with pytest.raises(CacheError, match="part-000001.npy"):
        open_cache(out).verify()
    counting = CountingForward(teacher)
    # sealed: a plain rerun names the damage and the fix, and writes nothing
    with pytest.raises(CacheError, match=r"part-000001.npy does not match.*--repair"):
        run_embed(shards_dir, tmp_path / "out", CFG, quiet=True, model=teacher, forward=counting)
    assert counting.calls == 0 and (victim.parent / "_COMPLETE").is_file()
    run_embed(shards_dir, tmp_path / "out", CFG, quiet=True, model=teacher, forward=counting, repair=True)
    assert counting.images == 4 * 2  # only the corrupt part's 4 tiles x 2 views
    assert dir_bytes(out) == before
    open_cache(out).verify()


def test_crash_between_part_and_record_writes_is_recomputed(shards_dir, tmp_path, teacher):
    out = run_embed(shards_dir, tmp_path / "out", CFG, quiet=True, model=teacher)
    before = dir_bytes(out)
    cache_dir = open_cache(out).path
    # what a kill can leave behind: a temp file, a part without its record, no index/_COMPLETE
    (cache_dir / ".part-000002.npy.tmp-r0-99999").write_bytes(b"partial")
    (cache_dir / "part-000001.keys.json").unlink()
    (cache_dir / "_COMPLETE").unlink()
    (cache_dir / "index.json").unlink()
    with pytest.raises(CacheError, match="index.json"):
        open_cache(out)
    counting = CountingForward(teacher)
    run_embed(shards_dir, tmp_path / "out", CFG, quiet=True, model=teacher, forward=counting)
    assert counting.images == 4 * 2
    assert dir_bytes(out) == before


def test_cache_written_by_another_teacher_is_refused(shards_dir, tmp_path, teacher):
    from g2l.embed import compute_key, load_shard_index

    out = run_embed(shards_dir, tmp_path / "out", CFG, quiet=True, model=teacher)
    student_cfg = EmbedConfig(teacher="tiny-vit-student", views=2, batch_size=4, num_workers=0)
    student = build_model("tiny-vit-student")
    key, _ = compute_key(load_shard_index(shards_dir), student_cfg, student)
    shutil.copytree(out, tmp_path / "out" / "embeddings" / key)  # e.g. a mis-synced bucket prefix
    counting = CountingForward(student)
    with pytest.raises(CacheError, match="tiny-vit-teacher"):
        run_embed(shards_dir, tmp_path / "out", student_cfg, quiet=True, model=student, forward=counting)
    assert counting.calls == 0
