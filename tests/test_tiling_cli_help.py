"""`g2l tile --help` shows each option's default, the same as TilingConfig's, and lists every backend
(issue 14, item 8)."""

from __future__ import annotations

import dataclasses
import os
import re

from g2l.slides import BACKENDS
from g2l.tiling import TilingConfig
from tests.fixtures.tiling import run_g2l

OPTIONS = {"--target-mpp": "target_mpp", "--tile-px": "tile_px", "--backend": "backend",
           "--workers": "workers", "--max-failed-fraction": "max_failed_fraction"}


def test_help_shows_the_config_defaults_and_every_backend() -> None:
    proc = run_g2l("tile", "--help", env={**os.environ, "COLUMNS": "400", "NO_COLOR": "1"})
    assert proc.returncode == 0, proc.stderr
    # One line per option at this width, keyed by the option's name.
    found = ((re.search(r"(--[a-z-]+)\s", line), line) for line in proc.stdout.splitlines())
    lines = {m.group(1): line for m, line in found if m}
    defaults = {f.name: f.default for f in dataclasses.fields(TilingConfig)}
    for option, key in OPTIONS.items():
        shown = re.search(r"\[default: \(?([^)\]]+)\)?\]", lines[option])
        assert shown is not None, lines[option]
        assert shown.group(1) == str(defaults[key]), (option, shown.group(1), defaults[key])
        assert f"tiling.{key}" in lines[option]  # and where a --config file overrides it
    for name in ["auto", *BACKENDS]:
        assert re.search(rf"\b{re.escape(name)}\b", lines["--backend"]), name
    assert "--replace" in lines
