"""Components: fill the teacher embedding cache, one shard group (rank) per task, then seal it."""

# No `from __future__ import annotations`: kfp reads the real annotation objects.
from kfp import dsl

from components.image import G2L_IMAGE


@dsl.component(base_image=G2L_IMAGE, install_kfp_package=False)
def embed_ranks(shards: str, shards_sha256: str, config_uri: str, world_size: int) -> list:
    """One work item per embedding task: its rank (of `world_size`) and the inputs it needs."""
    from g2l.pipeline.io import rank_items

    return rank_items(shards, shards_sha256, config_uri, world_size)


@dsl.component(base_image=G2L_IMAGE, install_kfp_package=False)
def embed_shards(
    shards: str,
    shards_sha256: str,
    config_uri: str,
    artifact_root: str,
    teacher: str,
    rank: str,
    world_size: int,
    cancer: str,
    gpus: int,
) -> str:
    """Embed every `world_size`-th shard starting at `rank` with the teacher; returns the cache directory.

    `gpus` is this pod's GPU request: 0 runs the teacher on CPU, otherwise on CUDA.
    """
    from g2l.pipeline.steps import embed_rank

    return embed_rank(
        config_uri=config_uri,
        artifact_root=artifact_root,
        teacher=teacher,
        rank=int(rank),
        world_size=world_size,
        cancer=cancer,
        gpus=gpus,
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
    from g2l.pipeline.steps import seal_cache

    return seal_cache(config_uri=config_uri, artifact_root=artifact_root, teacher=teacher, cancer=cancer)
