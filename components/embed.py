"""Components: fill the teacher embedding cache, one shard group (rank) per task, then check it is sealed."""

# No `from __future__ import annotations`: kfp reads the real annotation objects.
from kfp import dsl
from kfp.dsl import Dataset, Output

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
    gpus: str,
    cpu: str,
) -> str:
    """Embed every `world_size`-th shard starting at `rank` with the teacher; returns the cache directory.

    `gpus` is this pod's GPU request: 0 runs the teacher on CPU, otherwise on CUDA. `cpu` (its CPU
    limit) is an input only so that kfp wires the parameter into the loop's DAG for the resource field.
    """
    from g2l.pipeline.steps import embed_rank

    return embed_rank(
        config_uri=config_uri,
        artifact_root=artifact_root,
        teacher=teacher,
        rank=int(rank),
        world_size=world_size,
        cancer=cancer,
        gpus=int(gpus),
    )


@dsl.component(base_image=G2L_IMAGE, install_kfp_package=False)
def finalize_cache(
    shards_sha256: str,
    cancer: str,
    rank_caches: list,
    cache_data: Output[Dataset],
) -> str:
    """Check that every rank filled one sealed cache (a metadata step: no download, no teacher); returns it.

    `cache_data` is the KFP Dataset artifact of the cache: its metadata carry its URI and key.
    """
    from g2l.pipeline.io import record_artifact
    from g2l.pipeline.steps import seal_cache

    cache = seal_cache(rank_caches=rank_caches)
    key = cache.rstrip("/").rsplit("/", 1)[-1]
    cache_data.metadata.update(record_artifact(cache_data.path, cache, kind="embedding-cache", key=key))
    return cache
