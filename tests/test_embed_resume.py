import os
import signal
import subprocess
import sys

import pytest

from g2l.embed import EmbedConfig, open_cache, run_embed
from g2l.models import build_model
from tests.fixtures.shards import dir_bytes

CFG = EmbedConfig(views=2, batch_size=4, num_workers=0)

# Runs the embed stage in a child process whose teacher forward SIGKILLs the process on call N+1:
# 2 tiles x 2 views per forward, parts of 4/4/2 tiles -> N=3 dies inside part 1 after part 0 is written.
_CHILD = """
import os, signal, sys
from g2l.embed import EmbedConfig, run_embed
from g2l.models import build_model, embed
model = build_model("tiny-vit-teacher")
calls = 0
def forward(x):
    global calls
    calls += 1
    if calls > int(sys.argv[3]):
        os.kill(os.getpid(), signal.SIGKILL)
    return embed(model, x)
run_embed(sys.argv[1], sys.argv[2], EmbedConfig(views=2, batch_size=4, num_workers=0), quiet=True,
          model=model, forward=forward)
"""


@pytest.fixture(scope="module")
def teacher():
    return build_model("tiny-vit-teacher")


@pytest.mark.slow
def test_killed_and_restarted_equals_uninterrupted(shards_dir, tmp_path, teacher):
    # Also shows views are identical across processes: part 0 comes from the child, the reference
    # from this process, and the bytes must match.
    kill_after = 3
    reference = run_embed(shards_dir, tmp_path / "ref", CFG, quiet=True, model=teacher)
    argv = [sys.executable, "-c", _CHILD, str(shards_dir), str(tmp_path / "run"), str(kill_after)]
    child = subprocess.run(argv, env=os.environ, capture_output=True)
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()[-2000:]
    cache_dir = tmp_path / "run" / "embeddings" / open_cache(reference).key
    assert not (cache_dir / "_COMPLETE").exists()
    assert (cache_dir / "part-000000.npy").exists() and not (cache_dir / "part-000001.npy").exists()
    restarted = run_embed(shards_dir, tmp_path / "run", CFG, quiet=True, model=teacher)
    assert dir_bytes(restarted) == dir_bytes(reference)


def test_two_ranks_equal_one_worker(shards_dir, tmp_path, teacher):
    single = run_embed(shards_dir, tmp_path / "one", CFG, quiet=True, model=teacher)
    r1 = run_embed(shards_dir, tmp_path / "two", CFG, rank=1, world_size=2, quiet=True, model=teacher)
    cache_dir = tmp_path / "two" / "embeddings" / open_cache(single).key
    assert str(cache_dir) == r1
    assert sorted(p.name for p in cache_dir.glob("part-*.npy")) == ["part-000001.npy"]  # every W-th part
    assert not (cache_dir / "_COMPLETE").exists()  # rank 1 cannot finish alone
    r0 = run_embed(shards_dir, tmp_path / "two", CFG, rank=0, world_size=2, quiet=True, model=teacher)
    assert r0 == r1 and (cache_dir / "_COMPLETE").exists()  # the rank that sees every part finalises
    assert dir_bytes(r0) == dir_bytes(single)


def test_bad_rank_is_rejected(shards_dir, tmp_path, teacher):
    from g2l.embed import EmbedError

    with pytest.raises(EmbedError, match="--rank 2 --world-size 2"):
        run_embed(shards_dir, tmp_path / "x", CFG, rank=2, world_size=2, quiet=True, model=teacher)
