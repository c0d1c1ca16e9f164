"""Components: tile one group of slides, then write the training shards of all of them."""

# No `from __future__ import annotations`: kfp reads the real annotation objects.
from typing import NamedTuple

from kfp import dsl

from components.image import G2L_IMAGE


@dsl.component(base_image=G2L_IMAGE, install_kfp_package=False)
def tile_slides(
    manifest: str,
    manifest_sha256: str,
    slide_ids: str,
    config_uri: str,
    artifact_root: str,
    cancer: str,
) -> str:
    """Tile the slides in `slide_ids` (comma-joined) into ROOT/tiles/<slide_id>/; returns the ids."""
    from g2l import manifest as manifests
    from g2l import tiling
    from g2l.pipeline_io import load_stage_config, run_id

    config = load_stage_config(tiling.TilingConfig, config_uri, "tiling")
    tiling.tile_slides(
        manifests.load(manifest),
        artifact_root,
        config,
        slide_ids=slide_ids.split(","),
        run_id=run_id(),
        cancer=cancer,
        quiet=True,
    )
    return slide_ids


@dsl.component(base_image=G2L_IMAGE, install_kfp_package=False)
def write_shards(
    manifest: str,
    manifest_sha256: str,
    config_uri: str,
    artifact_root: str,
    tiled_groups: list,
) -> NamedTuple("Shards", [("shards", str), ("shards_sha256", str)]):
    """Write ROOT/shards/ from every tiled slide; returns the shard directory and its index sha256."""
    from g2l import manifest as manifests
    from g2l import tiling
    from g2l.pipeline_io import load_stage_config

    config = load_stage_config(tiling.TilingConfig, config_uri, "tiling")
    index = tiling.write_shards(artifact_root, manifests.load(manifest), config)
    return (index.shards_dir, index.sha256)
