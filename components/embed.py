"""Components: fill the teacher embedding cache, one shard group (rank) per task, then seal it."""

# No `from __future__ import annotations`: kfp reads the real annotation objects.
from kfp import dsl

from components.image import G2L_IMAGE


@dsl.component(base_image=G2L_IMAGE, install_kfp_package=False)
def embed_ranks(world_size: int) -> list:
    """The ranks 0..world_size-1, one embedding task each (kfp fans out over a task's list output)."""
    if world_size < 1:
        raise ValueError(f"embed_groups must be >= 1, got {world_size}")
    return list(range(world_size))


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
    from g2l import embed
    from g2l.pipeline_io import load_stage_config, run_id

    config = load_stage_config(embed.EmbedConfig, config_uri, "embed", teacher=teacher or None)
    return embed.run_embed(
        shards,
        artifact_root,
        config,
        rank=rank,
        world_size=world_size,
        quiet=True,
        run_id=run_id(),
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
    from g2l import embed
    from g2l.pipeline_io import load_stage_config, run_id

    config = load_stage_config(embed.EmbedConfig, config_uri, "embed", teacher=teacher or None)
    # Every part already exists, so this computes nothing; it checks the parts and marks _COMPLETE.
    return embed.run_embed(
        shards, artifact_root, config, rank=0, world_size=1, quiet=True, run_id=run_id(), cancer=cancer
    )
