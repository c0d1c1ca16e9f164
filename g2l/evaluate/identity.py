"""Is the evaluated teacher the distillation teacher? Weight digests from the cache and the student agree.

The gate compares the student with "the teacher" and CKA measures how close it got; both mean the
model the student was distilled from. That model's weight digest is recorded in the embedding cache
(`index.json`: `weights_sha256`, `embedding`) and in the exported student (`config.json`:
`teacher.weights_sha256`). A teacher evaluated with other weights or pooling is an error, not a
footnote: evaluate it as the run config's `embed:` section builds it (`--model teacher=embed:CONFIG`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from g2l.evaluate.models import EvalModel, ModelSpecError


def _cache_record(cache: str) -> dict[str, Any]:
    from g2l import storage

    uri = storage.join(cache, "index.json")
    if not storage.exists(uri):
        raise ModelSpecError(
            f"--teacher-cache {cache}: no index.json (is it a finished `g2l embed` cache directory "
            f"<artifact_root>/embeddings/<key>?)"
        )
    index = json.loads(storage.read_text(uri))
    return {
        "weights_sha256": index.get("weights_sha256"),
        "embedding": index.get("embedding"),
        "teacher": index.get("teacher"),
        "key": index.get("key"),
    }


def _student_record(student: EvalModel | None) -> dict[str, Any] | None:
    if student is None:
        return None
    config = Path(student.resolved) / "config.json"
    if not config.is_file():
        return None
    teacher = json.loads(config.read_text()).get("teacher")
    return dict(teacher) if isinstance(teacher, dict) and teacher.get("weights_sha256") else None


def teacher_identity(
    models: list[EvalModel], teacher: str | None, cache: str | None = None, student: str = "student"
) -> dict[str, Any] | None:
    """The evaluated teacher's digest beside what the cache and the student record; raises on a mismatch."""
    by_name = {m.name: m for m in models}
    if teacher is None or teacher not in by_name:
        return None
    t = by_name[teacher]
    out: dict[str, Any] = {
        "model": teacher,
        "spec": t.spec,
        "weights_sha256": t.weights_sha256,
        "embedding": t.embedding,
        "cache": _cache_record(cache) if cache else None,
        "student_records": _student_record(by_name.get(student)),
    }
    problems = []
    if out["cache"] is not None:
        if out["cache"]["weights_sha256"] != t.weights_sha256:
            problems.append(
                f"the embedding cache {cache} was made with weights {out['cache']['weights_sha256']}"
            )
        if out["cache"]["embedding"] and out["cache"]["embedding"] != t.embedding:
            problems.append(
                f"the cache pools {out['cache']['embedding']!r}, the evaluated teacher {t.embedding!r}"
            )
    if out["student_records"] is not None and out["student_records"]["weights_sha256"] != t.weights_sha256:
        problems.append(
            f"the student's config.json records teacher weights {out['student_records']['weights_sha256']}"
        )
    if problems:
        raise ModelSpecError(
            f"the evaluated teacher {teacher!r} ({t.spec}) has weights {t.weights_sha256}, but "
            f"{'; '.join(problems)}. The gate and CKA would judge against another model than the one "
            f"distilled from; evaluate the teacher as the run config builds it: "
            f"--model {teacher}=embed:CONFIG"
        )
    out["matches"] = bool(out["cache"] or out["student_records"])
    return out
