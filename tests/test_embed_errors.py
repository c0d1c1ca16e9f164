import numpy as np
import pytest
import torch

from g2l.embed import EmbedConfig, ShardError, forward_with_backoff, open_cache, run_embed
from g2l.models import build_model, embed

CFG = EmbedConfig(views=2, batch_size=4, num_workers=0)


@pytest.fixture(scope="module")
def teacher():
    return build_model("tiny-vit-teacher")


def test_missing_shard_is_named_and_the_other_parts_still_finish(shards_dir, tmp_path, teacher):
    (shards_dir / "shard-000001.tar").unlink()
    with pytest.raises(ShardError, match="shard-000001.tar is missing"):
        run_embed(shards_dir, tmp_path / "out", CFG, quiet=True, model=teacher)
    cache_dir = next((tmp_path / "out" / "embeddings").iterdir())
    assert sorted(p.name for p in cache_dir.glob("part-*.npy")) == ["part-000000.npy", "part-000002.npy"]
    assert not (cache_dir / "_COMPLETE").exists()


def test_shard_sha256_mismatch_is_named(shards_dir, tmp_path, teacher):
    with open(shards_dir / "shard-000002.tar", "ab") as f:
        f.write(b"\0" * 512)
    with pytest.raises(ShardError, match=r"shard-000002.tar has sha256 .* index.json"):
        run_embed(shards_dir, tmp_path / "out", CFG, quiet=True, model=teacher)


def test_missing_shard_index_is_named(tmp_path, teacher):
    with pytest.raises(ShardError, match="index.json not found"):
        run_embed(tmp_path / "nowhere", tmp_path / "out", CFG, quiet=True, model=teacher)


def test_out_of_memory_halves_the_batch_and_goes_on(shards_dir, tmp_path, teacher, capsys):
    seen = []

    def small_gpu(x):
        seen.append(x.shape[0])
        if x.shape[0] > 1:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return embed(teacher, x)

    out = run_embed(shards_dir, tmp_path / "oom", CFG, quiet=True, model=teacher, forward=small_gpu)
    assert seen[:3] == [4, 2, 1] and set(seen[3:]) == {1}  # halved twice, then kept at 1
    assert "halving the batch to 2" in capsys.readouterr().err
    reference = open_cache(run_embed(shards_dir, tmp_path / "ref", CFG, quiet=True, model=teacher))
    got = open_cache(out)
    for key in reference.tile_keys():
        np.testing.assert_allclose(got.get(key).astype(np.float32), reference.get(key).astype(np.float32),
                                   rtol=2e-3, atol=2e-3)


def test_out_of_memory_at_batch_one_is_raised():
    def always_oom(x):
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    with pytest.raises(torch.OutOfMemoryError):
        forward_with_backoff(always_oom, torch.zeros(4, 3), 2)


def test_undecodable_tile_names_shard_and_tile(tmp_path, teacher):
    import hashlib
    import io
    import json
    import tarfile

    shards = tmp_path / "shards"
    shards.mkdir()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("bad_0_0.jpg")
        info.size = 10
        tar.addfile(info, io.BytesIO(b"not a jpeg"))
    (shards / "shard-000000.tar").write_bytes(buf.getvalue())
    digest = hashlib.sha256(buf.getvalue()).hexdigest()
    entries = [{"name": "shard-000000.tar", "n_tiles": 1, "sha256": digest}]
    (shards / "index.json").write_text(json.dumps({"shards": entries, "sha256": "x"}))
    with pytest.raises(ShardError, match="shard-000000.tar: tile bad_0_0: cannot decode"):
        run_embed(shards, tmp_path / "out", CFG, quiet=True, model=teacher)
