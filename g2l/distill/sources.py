"""What a distillation run distils from: the student, the online teacher or the cache, the view spec."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from g2l.config import ConfigError, require
from g2l.distill.config import DistillConfig


@dataclasses.dataclass
class Sources:
    """What the run distils from: student, teacher (online) or cache, the view spec, lineage."""

    student: Any  # g2l.models.LoadedModel
    teacher: Any | None  # LoadedModel in online mode
    cache: Any | None  # g2l.embed.EmbeddingCache in cached mode (optional in online mode)
    view_spec: Any  # g2l.views.ViewSpec
    teacher_dim: int
    teacher_name: str
    teacher_sha256: str
    cache_key: str | None


def view_spec_from(data: dict[str, Any]) -> Any:
    """A ViewSpec from its recorded dict (a cache index's `view_spec`, or the config's)."""
    from g2l.config import from_dict
    from g2l.views import ViewSpec

    return from_dict(ViewSpec, data, where="view_spec")


def resolve_sources(config: DistillConfig, cache_path: str | None, device: torch.device) -> Sources:
    """Build the student (and online teacher) and open the cache named by the run."""
    from g2l.models import build_model

    cache = None
    if cache_path:
        from g2l.embed import open_cache

        cache = open_cache(cache_path)
    require(
        cache is not None or config.teacher_mode == "online",
        "distill: teacher_mode 'cached' needs --cache ROOT/embeddings/<key> (written by `g2l embed`)",
    )
    from g2l.distill.config import STUDENT_HUB

    weights = None if config.student_weights == STUDENT_HUB else config.student_weights
    student = build_model(config.student, weights=weights, device=device)
    teacher = None
    if cache is not None:
        view_spec = view_spec_from(cache.index["view_spec"])
        teacher_name = str(cache.index.get("teacher"))
        teacher_sha = str(cache.index.get("weights_sha256"))
        teacher_dim = int(cache.dim)
    else:
        require(
            config.teacher is not None, "distill.teacher must name the teacher model when no cache is given"
        )
        view_spec = view_spec_from(dict(config.view_spec))
    if config.teacher_mode == "online":
        name = config.teacher or teacher_name
        embedding = cache.index.get("embedding") if cache is not None else None
        teacher = build_model(name, weights=config.teacher_weights, device=device, embedding=embedding)
        teacher.model.requires_grad_(False).eval()
        if cache is not None and teacher.weights_sha256 != teacher_sha:
            raise ConfigError(
                f"distill: the online teacher {name!r} has weight digest {teacher.weights_sha256[:12]} "
                f"but the cache was made with {teacher_sha[:12]}; pass the same teacher "
                f"(distill.teacher / teacher_weights) or drop --cache"
            )
        teacher_name, teacher_sha, teacher_dim = teacher.name, teacher.weights_sha256, int(teacher.embed_dim)
    return Sources(
        student=student,
        teacher=teacher,
        cache=cache,
        view_spec=view_spec,
        teacher_dim=teacher_dim,
        teacher_name=teacher_name,
        teacher_sha256=teacher_sha,
        cache_key=None if cache is None else str(cache.key),
    )
