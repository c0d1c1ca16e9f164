"""gs:// shards and caches through the GCS emulator (needs g2l.storage and its emulator fixture)."""

import numpy as np
import pytest

pytest.importorskip("g2l.storage")

from g2l.embed import CacheError, EmbedConfig, open_cache, run_embed  # noqa: E402
from g2l.models import build_model, embed  # noqa: E402
from tests.fixtures.shards import dir_bytes  # noqa: E402

CFG = EmbedConfig(views=2, batch_size=4, num_workers=0)


@pytest.mark.slow
def test_gs_shards_and_cache_equal_a_local_run(gcs_emulator, shards_dir, tmp_path, monkeypatch):
    from g2l import storage

    monkeypatch.setenv("G2L_CACHE_DIR", str(tmp_path / "staging"))
    bucket = gcs_emulator.make_bucket(f"embed-{tmp_path.name.lower().replace('_', '-')}"[:60])
    root = f"gs://{bucket}/run"
    for f in sorted(shards_dir.iterdir()):
        storage.put_file(f, f"{root}/shards/{f.name}")
    teacher = build_model("tiny-vit-teacher")

    local = run_embed(shards_dir, tmp_path / "local", CFG, quiet=True, model=teacher)
    r1 = run_embed(f"{root}/shards", root, CFG, rank=1, world_size=2, quiet=True, model=teacher)
    assert r1.startswith(f"{root}/embeddings/") and not storage.exists(f"{r1}/_COMPLETE")
    remote = run_embed(f"{root}/shards", root, CFG, rank=0, world_size=2, quiet=True, model=teacher)
    assert remote == r1 and storage.exists(f"{remote}/_COMPLETE")
    assert storage.exists(f"{root}/metrics/embed.prom")

    cache = open_cache(remote)  # staged to a local copy
    cache.verify()
    assert dir_bytes(cache.path) == dir_bytes(local)

    # A rerun of the sealed cache checks it from one listing and writes no object: the emulator gives
    # every upload a new generation (verified there; real GCS documents the same for each new version).
    generations = {f.uri: f.generation for f in storage.list_files(remote, checksum=False)}
    local_copy = {p.name: p.stat().st_ino for p in cache.path.iterdir()}
    calls = []
    run_embed(f"{root}/shards", root, CFG, quiet=True, model=teacher,
              forward=lambda x: calls.append(x.shape[0]) or embed(teacher, x))
    assert calls == []  # finished parts are checked by crc32c and size, nothing recomputed
    assert {f.uri: f.generation for f in storage.list_files(remote, checksum=False)} == generations
    assert open_cache(remote).path == cache.path  # the local copy is sealed with the same index: reused
    assert {p.name: p.stat().st_ino for p in cache.path.iterdir()} == local_copy

    # a replaced part object no longer matches the seal: named; recomputed only on --repair
    storage.put_bytes(f"{remote}/part-000002.npy", np.zeros(3).tobytes())
    with pytest.raises(CacheError, match="part-000002.npy does not match"):
        run_embed(f"{root}/shards", root, CFG, quiet=True, model=teacher)
    run_embed(f"{root}/shards", root, CFG, quiet=True, model=teacher, repair=True,
              forward=lambda x: calls.append(x.shape[0]) or embed(teacher, x))
    assert sum(calls) == 2 * 2 and storage.exists(f"{remote}/_COMPLETE")
    assert storage.read_bytes(f"{remote}/part-000002.npy") == (tmp_path / "local").joinpath(
        *local.split("/")[-2:], "part-000002.npy").read_bytes()
