"""kfp v2 lightweight components, one module per stage; each is a thin typed call into `g2l`.

Every component runs on the project image (`G2L_IMAGE`, default ghcr.io/g2l-project/g2l:<version>)
which already holds g2l and kfp, so no package is pip-installed at start-up; under `kfp.local`'s
SubprocessRunner the same functions run in the current interpreter.
"""

from components.cleanup import cleanup_run
from components.distill import distill_student, distill_trainjob
from components.embed import embed_ranks, embed_shards, finalize_cache
from components.evaluate import evaluate_models
from components.gate import gate_decision
from components.image import G2L_IMAGE
from components.manifest import pin_inputs, slide_groups
from components.promote import promote_student
from components.tile import tile_slides, write_shards

__all__ = [
    "G2L_IMAGE",
    "cleanup_run",
    "distill_student",
    "distill_trainjob",
    "embed_ranks",
    "embed_shards",
    "evaluate_models",
    "finalize_cache",
    "gate_decision",
    "pin_inputs",
    "promote_student",
    "slide_groups",
    "tile_slides",
    "write_shards",
]
