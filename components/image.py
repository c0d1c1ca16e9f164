"""The container image every component runs on."""

from __future__ import annotations

import os

from g2l.pipeline.config import DEFAULT_IMAGE

# Read once at import: the image is baked into each component when it is defined; `g2l pipeline
# compile --image` swaps it in the compiled file instead, so compiling stays reproducible.
G2L_IMAGE = os.environ.get("G2L_IMAGE") or DEFAULT_IMAGE
