"""Components: check the run's parameters, pin its config and manifest (rev -> commit, content hash), and
split the slides into groups."""

# No `from __future__ import annotations`: kfp reads the real annotation objects.
from typing import NamedTuple

from kfp import dsl

from components.image import G2L_IMAGE


@dsl.component(base_image=G2L_IMAGE, install_kfp_package=False)
def pin_inputs(
    config_yaml: str,
    manifest_uri: str,
    manifest_rev: str,
    manifest_repo: str,
    artifact_root: str,
    benchmarks: str,
    tile_gpus: str,
    embed_gpus: str,
    distill_gpus: str,
    distill_nodes: int,
    embed_cpu: str,
    distill_cpu: str,
) -> NamedTuple(  # type: ignore[valid-type]  # kfp reads the fields of this call form
    "PinnedInputs",
    [
        ("config_uri", str),
        ("config_sha256", str),
        ("manifest", str),
        ("manifest_sha256", str),
        ("manifest_rev", str),
    ],
):
    """Check the GPU/CPU counts and the benchmarks first (before any GPU is spent), then freeze the config
    and the manifest at its DVC rev under the artifact root; returns URIs, hashes and the pinned commit."""
    from g2l.pipeline.io import check_benchmarks, check_run_resources
    from g2l.pipeline.io import pin_inputs as pin

    check_run_resources(
        tile_gpus=tile_gpus,
        embed_gpus=embed_gpus,
        distill_gpus=distill_gpus,
        distill_nodes=distill_nodes,
        embed_cpu=embed_cpu,
        distill_cpu=distill_cpu,
    )
    check_benchmarks(benchmarks)
    p = pin(
        config_yaml=config_yaml,
        manifest_uri=manifest_uri,
        manifest_rev=manifest_rev,
        manifest_repo=manifest_repo,
        artifact_root=artifact_root,
    )
    return (p.config_uri, p.config_sha256, p.manifest_uri, p.manifest_sha256, p.manifest_rev)


@dsl.component(base_image=G2L_IMAGE, install_kfp_package=False)
def slide_groups(manifest: str, manifest_sha256: str, config_uri: str, n_groups: int) -> list:
    """One work item per tiling task: its index, slide ids (comma-joined) and the pinned inputs they need."""
    from g2l.pipeline.io import slide_group_items

    return slide_group_items(manifest, manifest_sha256, config_uri, n_groups)
