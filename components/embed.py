"""Components: fill the teacher embedding cache, one shard group (rank) per task, then seal it."""

# No `from __future__ import annotations`: kfp reads the real annotation objects.
from kfp import dsl

from components.image import G2L_IMAGE


@dsl.component(base_image=G2L_IMAGE, install_kfp_package=False)
def embed_ranks(world_size: int) -> list:
    """The ranks 0..world_size-1, one embedding task each (kfp fans out over a task's list output)."""
    from g2l.pipeline_io import check_positive

    return list(range(check_positive("embed_groups", world_size)))


@dsl.component(base_image=G2L_IMAGE, install_kfp_package=False)
def embed_shards(
    shards: str,
    shards_sha256: str,
    config_uri: str,
    artifact_root: str,
    teacher: str,
    rank: int,
    world_size: int,
    cancer: str,
) -> str:
    """Embed every `world_size`-th shard starting at `rank` with the teacher; returns the cache directory."""
    from g2l.pipeline_steps import embed_rank

    return embed_rank(
        config_uri=config_uri,
        artifact_root=artifact_root,
        teacher=teacher,
        rank=rank,
        world_size=world_size,
        cancer=cancer,
    )


@dsl.component(base_image=G2L_IMAGE, install_kfp_package=False)
def finalize_cache(
    shards: str,
    shards_sha256: str,
    config_uri: str,
    artifact_root: str,
    teacher: str,
    cancer: str,
    rank_caches: list,
) -> str:
    """Seal the cache once every rank is done: a single-worker pass checks the parts, writes the index."""
    from g2l.pipeline_steps import seal_cache

    return seal_cache(config_uri=config_uri, artifact_root=artifact_root, teacher=teacher, cancer=cancer)
