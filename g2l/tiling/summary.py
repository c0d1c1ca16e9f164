"""Human-readable run summary: per slide its tiles, resolution, backend and QC thumbnail; failures named."""

from __future__ import annotations

from typing import Any

from g2l.tiling.outputs import OutputRoot


def describe(out_root: str, slide_ids: list[str], failed: list[dict[str, str]]) -> str:
    """Lines for the console: one per tiled slide (with its thumbnail path), then each failure and its fix."""
    root = OutputRoot(out_root)
    lines = []
    for slide_id in slide_ids:
        meta: Any = root.read_json(f"tiles/{slide_id}/meta.json") or {}
        got = {
            k: meta.get(k, "?")
            for k in ("n_tiles", "mpp", "mpp_source", "level", "read_px", "backend", "read_path")
        }
        lines.append(
            f"  ok      {slide_id}: {got['n_tiles']} tiles, mpp {got['mpp']} ({got['mpp_source']}), "
            f"level {got['level']} read at {got['read_px']} px via {got['backend']}/{got['read_path']}; "
            f"thumbnail {root.join(f'tiles/{slide_id}/thumbnail.png')}"
        )
    for failure in failed:
        lines.append(f"  FAILED  {failure['slide_id']}: {failure['error']}")
    return "\n".join(lines)
