"""Compile the g2l pipeline to its committed YAML, reproducibly (same inputs, same bytes)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from kfp import compiler

from components.image import G2L_IMAGE

DEFAULT_OUT = Path(__file__).parent / "compiled" / "g2l_pipeline.yaml"


def compile_pipeline(
    out: str | Path = DEFAULT_OUT, image: str | None = None, config: str | None = None
) -> Path:
    """Write the compiled pipeline to `out` (atomically); `image` replaces the components' image.

    With `config`, step timeouts and staging disk are sized for that cancer's plan (never below the
    defaults); without it the defaults, which fit the shipped configs, are compiled in.
    """
    from pipelines.g2l_pipeline import g2l_pipeline, make_pipeline

    if config:
        from g2l.pipeline.budgets import needed_for_config, sized_budgets

        g2l_pipeline = make_pipeline(sized_budgets(needed_for_config(config)))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp.yaml", dir=out.parent)
    os.close(fd)
    try:
        compiler.Compiler().compile(pipeline_func=g2l_pipeline, package_path=tmp)
        if image and image != G2L_IMAGE:
            # The image is baked into each component when it is defined; swapping the reference in the
            # compiled text keeps one definition of the DAG whatever image a deployment uses.
            text = Path(tmp).read_text()
            Path(tmp).write_text(text.replace(G2L_IMAGE, image))
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out
