"""Model specs for evaluation: zoo or timm names, student directories, `registry:<cancer>@<alias>`, `embed:`.

`embed:<config.yaml>` (optionally `embed:<config.yaml>?teacher=<name>`, as a pipeline overrides it) is
the teacher exactly as that config's `embed:` section builds it: name, `weights` and `embedding`, so
the gate's and CKA's teacher is the one the embedding cache (and the student) were made with. It is
recorded as `<name>?weights=<path>&embedding=<kind>`, a spec that rebuilds the same model later.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REGISTRY_PREFIX = "registry:"
EMBED_PREFIX = "embed:"
PRECISIONS = ("auto", "fp32", "bf16")

# Resolves `registry:<cancer>@<alias>` to a concrete spec (a student directory or model name), or
# returns None when nothing is registered under that alias yet (e.g. no champion on the first run).
RegistryResolver = Callable[[str], "str | None"]


class ModelSpecError(ValueError):
    """A --model NAME=SPEC cannot be parsed or resolved; the message names the spec and the fix."""


class RegistryNotConfiguredError(ModelSpecError):
    """A `registry:` spec was given but no registry resolver is configured."""


@dataclasses.dataclass
class EvalModel:
    """A model ready to embed tiles: report name, spec, and a digest of its weights + preprocessing."""

    name: str
    spec: str
    resolved: str
    loaded: Any  # g2l.models.LoadedModel
    digest: str
    embed_dim: int
    device: str
    precision: str = "fp32"  # bf16: autocast on CUDA (the embedding store keys on it)

    @property
    def weights_sha256(self) -> str:
        """Digest of the weights alone (what an embedding cache and a student's config.json record)."""
        return str(self.loaded.weights_sha256)

    @property
    def embedding(self) -> str:
        """Pooling: cls or cls_mean."""
        return str(getattr(self.loaded, "embedding", "cls"))

    def embed_tiles(self, tiles: list[np.ndarray]) -> np.ndarray:
        """float32 embeddings [B, dim] of uint8 HxWx3 tiles (any size: the model's preprocessing resizes)."""
        import torch

        from g2l.models import embed

        pre = self.loaded.preprocess
        shapes = {t.shape for t in tiles}
        device_type = torch.device(self.device).type
        with (
            torch.inference_mode(),
            torch.autocast(device_type, dtype=torch.bfloat16, enabled=self.precision == "bf16"),
        ):
            if len(shapes) == 1:
                batch = torch.from_numpy(np.stack(tiles)).to(self.device)
                x = pre(batch)
            else:  # mixed tile sizes: resize one by one, then batch
                x = torch.cat([pre(torch.from_numpy(np.ascontiguousarray(t)).to(self.device)) for t in tiles])
            out = embed(self.loaded, x)
        return out.float().cpu().numpy()


def parse_model_args(items: list[str]) -> dict[str, str]:
    """`["student=/runs/x/student", "teacher=tiny-vit-teacher"]` -> {name: spec}; names must be unique."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, spec = item.partition("=")
        name, spec = name.strip(), spec.strip()
        if not sep or not name or not spec:
            raise ModelSpecError(
                f"--model {item!r}: expected NAME=SPEC, e.g. student=runs/r1/student or "
                f"teacher=tiny-vit-teacher"
            )
        if name in out:
            raise ModelSpecError(f"--model {item!r}: the name {name!r} is given twice; names must be unique")
        out[name] = spec
    return out


def resolve_precision(precision: str, device: str) -> str:
    """`auto` -> bf16 autocast on CUDA (10x the fp32 throughput of a ViT-g), fp32 on CPU."""
    if precision not in PRECISIONS:
        raise ModelSpecError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        return "bf16" if device.startswith("cuda") else "fp32"
    return precision


def embed_teacher_args(spec: str) -> tuple[str, str | None, str | None]:
    """(name, weights, embedding) of the teacher an `embed:<config>[?teacher=NAME]` spec names."""
    from g2l.config import load_section
    from g2l.embed.config import EmbedConfig

    path, _, query = spec[len(EMBED_PREFIX) :].partition("?")
    override = dict(part.split("=", 1) for part in query.split("&") if "=" in part).get("teacher")
    if not path or not Path(path).is_file():
        raise ModelSpecError(
            f"model spec {spec!r}: {path or '(no path)'} is not a config file; write embed:<run config YAML>"
        )
    cfg = load_section(EmbedConfig, path, "embed", teacher=override or None)
    return cfg.teacher, cfg.weights, None if cfg.embedding == "auto" else cfg.embedding


def build_spec(name: str, weights: str | None = None, embedding: str | None = None) -> str:
    """`name?weights=PATH&embedding=KIND`: a spec that rebuilds a model with explicit weights and pooling."""
    options = [f"{k}={v}" for k, v in (("weights", weights), ("embedding", embedding)) if v]
    return name + ("?" + "&".join(options) if options else "")


def split_options(spec: str) -> tuple[str, dict[str, str]]:
    """(`name`, {"weights", "embedding"}) of a `name?weights=...&embedding=...` spec; no `?`: no options."""
    if "?" not in spec or spec.startswith((REGISTRY_PREFIX, EMBED_PREFIX)):
        return spec, {}
    base, _, query = spec.partition("?")
    options = dict(part.split("=", 1) for part in query.split("&") if "=" in part)
    unknown = sorted(set(options) - {"weights", "embedding"})
    if unknown:
        raise ModelSpecError(f"model spec {spec!r}: unknown option(s) {unknown}; use weights= and embedding=")
    return base, {k: v for k, v in options.items() if v}


def resolve_device(device: str) -> str:
    """`auto` -> cuda when a GPU is present, else cpu."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def model_digest(loaded: Any) -> str:
    """sha256 over what determines a model's embeddings: weight digest, preprocessing and pooling."""
    payload = {
        "weights_sha256": loaded.weights_sha256,
        "preprocess": loaded.preprocess.to_dict(),
        "embedding": getattr(loaded, "embedding", "cls"),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def resolve_spec(spec: str, registry_resolver: RegistryResolver | None = None) -> str | None:
    """Turn a `registry:` spec into a concrete one (None: nothing registered under that alias)."""
    if not spec.startswith(REGISTRY_PREFIX):
        return spec
    if registry_resolver is None:
        raise RegistryNotConfiguredError(
            f"model spec {spec!r}: registry not configured. A `registry:<cancer>@<alias>` spec needs the "
            f"MLflow model registry (configure the `registry:` section and pass its resolver), or give a "
            f"student directory / model name instead"
        )
    resolved = registry_resolver(spec)
    if resolved is not None and resolved.startswith(REGISTRY_PREFIX):
        raise ModelSpecError(
            f"model spec {spec!r}: the registry resolved it to another registry spec {resolved!r}"
        )
    return resolved


def load_model(
    name: str,
    spec: str,
    device: str = "cpu",
    registry_resolver: RegistryResolver | None = None,
    precision: str = "auto",
) -> EvalModel | None:
    """Build the model a spec names (None when a registry alias has no version yet)."""
    resolved = resolve_spec(spec, registry_resolver)
    if resolved is None:
        return None
    import g2l.models as zoo

    if resolved.startswith(EMBED_PREFIX):
        # Recorded as the self-contained spec it resolves to (a run's staged config file is gone later,
        # e.g. when `g2l audit --deep` rebuilds the teacher from report.json).
        teacher, weights, embedding = embed_teacher_args(resolved)
        resolved = build_spec(teacher, weights, embedding)
    base, options = split_options(resolved)
    resolved = base if not options else resolved
    if options:
        try:
            loaded = zoo.build_model(
                base, weights=options.get("weights"), device=device, embedding=options.get("embedding")
            )
        except zoo.ModelError as exc:
            raise ModelSpecError(f"--model {name}={spec}: {exc}") from exc
        return _eval_model(name, resolved, resolved, loaded, device, precision)

    path = Path(resolved).expanduser()
    run_export = path / "student" / "config.json"
    if path.is_dir() and not (path / "config.json").is_file() and run_export.is_file():
        path = path / "student"  # a distillation RUN_DIR: its exported student lives in student/
        resolved = str(path)
    try:
        if path.is_dir() and (path / "config.json").is_file() and hasattr(zoo, "load_student"):
            loaded = zoo.load_student(str(path))
            loaded.model.to(device)
        else:
            loaded = zoo.build_model(resolved, device=device)
    except zoo.ModelError as exc:
        raise ModelSpecError(f"--model {name}={spec}: {exc}") from exc
    return _eval_model(name, spec, resolved, loaded, device, precision)


def _eval_model(name: str, spec: str, resolved: str, loaded: Any, device: str, precision: str) -> EvalModel:
    """The evaluation's view of a built model, switched to eval mode, with its digest."""
    loaded.model.eval()
    return EvalModel(
        name=name,
        spec=spec,
        resolved=resolved,
        loaded=loaded,
        digest=model_digest(loaded),
        embed_dim=int(loaded.embed_dim),
        device=device,
        precision=resolve_precision(precision, device),
    )
