"""Components: tile one group of slides, then write the training shards of all of them."""

# No `from __future__ import annotations`: kfp reads the real annotation objects.
from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Dataset, Output

from components.image import G2L_IMAGE


@dsl.component(base_image=G2L_IMAGE, install_kfp_package=False)
def tile_slides(
    manifest: str,
    manifest_sha256: str,
    slide_ids: str,
    index: str,
    config_uri: str,
    artifact_root: str,
    cancer: str,
    gpus: str,
) -> str:
    """Tile the slides in `slide_ids` (comma-joined) into ROOT/tiles/<slide_id>/; returns those tiled ok.

    `gpus` is this pod's GPU request (cuCIM decodes on the GPU when it has one); `index` the group's
    place in the fan-out (its metrics group).
    """
    from g2l.pipeline.steps import tile_group

    return tile_group(
        manifest=manifest,
        slide_ids=slide_ids,
        config_uri=config_uri,
        artifact_root=artifact_root,
        cancer=cancer,
        index=index,
    )


@dsl.component(base_image=G2L_IMAGE, install_kfp_package=False)
def write_shards(
    manifest: str,
    manifest_sha256: str,
    config_uri: str,
    artifact_root: str,
    tiled_groups: list,
    shards_data: Output[Dataset],
) -> NamedTuple("Shards", [("shards", str), ("shards_sha256", str)]):  # type: ignore[valid-type]
    """Write ROOT/shards/ from every tiled slide; returns the shard directory and its index sha256.

    `shards_data` is the KFP Dataset artifact of the shards: its metadata carry their URI and sha256.
    """
    from g2l.pipeline.io import record_artifact
    from g2l.pipeline.steps import pack_shards

    shards, sha = pack_shards(manifest=manifest, config_uri=config_uri, artifact_root=artifact_root)
    shards_data.metadata.update(record_artifact(shards_data.path, shards, kind="shards", sha256=sha))
    return (shards, sha)
