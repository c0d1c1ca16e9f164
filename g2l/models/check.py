"""`g2l models check`: a model's architecture on the meta device, and whether a checkpoint fits it.

Nothing here allocates weights: the skeleton lives on the meta device and a checkpoint is read through
its header only, so a 1.1B-parameter teacher is checked in about a second before anyone books a GPU.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from g2l.models.errors import ModelError


@dataclasses.dataclass(frozen=True, kw_only=True)
class CheckReport:
    """What a model is (parameters, embedding, preprocessing, shapes) and how a checkpoint fits it."""

    name: str
    arch: str
    params: int
    embed_dim: int
    embedding: str
    input_px: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str
    layouts: tuple[str, ...]
    shapes: dict[str, list[int]]
    weights: str | None = None
    layout: str | None = None  # the checkpoint's layout, as detected
    missing: list[str] = dataclasses.field(default_factory=list)
    unexpected: list[str] = dataclasses.field(default_factory=list)
    mismatched: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no checkpoint was given or it fits exactly."""
        return not (self.missing or self.unexpected or self.mismatched)

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form (the `--json` line)."""
        out = dataclasses.asdict(self)
        out["ok"] = self.ok
        return out

    def format(self) -> str:
        """Human-readable summary; every misfit tensor on its own line."""
        lines = [
            f"model      {self.name} (timm {self.arch})",
            f"params     {self.params:,} ({self.params / 1e6:.1f}M)",
            f"embedding  {self.embed_dim}-d {self.embedding}",
            f"input      {self.input_px} px, {self.interpolation}, mean {list(self.mean)}, "
            f"std {list(self.std)}",
            f"layouts    {', '.join(self.layouts)} (published checkpoints load from these)",
        ]
        if self.weights is None:
            return "\n".join(lines)
        lines.append(f"weights    {self.weights} ({self.layout} layout)")
        lines += [f"  missing     {k}" for k in self.missing]
        lines += [f"  unexpected  {k}" for k in self.unexpected]
        lines += [f"  mis-shaped  {m['name']}: checkpoint {m['checkpoint']}, model {m['model']}"
                  for m in self.mismatched]
        verdict = "fits" if self.ok else (
            f"does NOT fit: {len(self.missing)} missing, {len(self.unexpected)} unexpected, "
            f"{len(self.mismatched)} mis-shaped (names in the model's timm layout)")
        lines.append(f"result     {verdict}")
        return "\n".join(lines)


def _spec_and_weights(name: str, weights: str | Path | None) -> tuple[Any, str | Path | None]:
    """The spec `name` resolves to (registered, timm name or a model directory), and the weights to check."""
    from g2l.models.build import _spec_from_dir, _unknown
    from g2l.models.checkpoint import weights_file
    from g2l.models.zoo import ModelSpec, canonical_name, get_spec

    local = Path(name).expanduser()
    if local.is_dir():
        spec, _ = _spec_from_dir(local, None, None)
        return spec, weights if weights is not None else weights_file(local)
    registered = get_spec(name)
    if registered is not None:
        spec = registered
    else:
        import timm

        canonical = canonical_name(name)
        if not timm.is_model(canonical):
            raise _unknown(name)
        spec = ModelSpec(name=canonical, arch=canonical, kwargs={"num_classes": 0}, source="timm", input_px=0)
    if weights is not None and Path(weights).is_dir() and (Path(weights) / "config.json").is_file():
        spec, _ = _spec_from_dir(Path(weights), spec, spec.name)
    return spec, weights


def check_model(name: str, weights: str | Path | None = None) -> CheckReport:
    """Describe `name` from its meta-device skeleton; with `weights`, compare the checkpoint's header."""
    import timm.data

    from g2l.models.build import fit_report, skeleton
    from g2l.models.checkpoint import read_header
    from g2l.models.layouts import LayoutError, to_timm
    from g2l.models.preprocess import from_timm_config

    spec, weights = _spec_and_weights(name, weights)
    model = skeleton(spec.arch, spec.kwargs)
    expected = model.state_dict()
    pre = from_timm_config(timm.data.resolve_data_config(model=model), input_px=spec.input_px or None,
                           mean=spec.mean, std=spec.std, interpolation=spec.interpolation)
    dim = int(getattr(model, "num_features", 0) or getattr(model, "embed_dim", 0))
    report: dict[str, Any] = dict(
        name=spec.name, arch=spec.arch, params=sum(p.numel() for p in model.parameters()),
        embed_dim=dim * (2 if spec.embedding == "cls_mean" else 1), embedding=spec.embedding,
        input_px=pre.input_px, mean=pre.mean, std=pre.std, interpolation=pre.interpolation,
        layouts=tuple(spec.layouts), shapes={k: list(v.shape) for k, v in expected.items()},
    )
    if weights is None:
        return CheckReport(**report)
    header = read_header(weights)
    try:
        converted, layout = to_timm(header)
    except (LayoutError, KeyError, RuntimeError) as exc:
        raise ModelError(f"{weights}: its tensors do not follow a known layout ({exc})") from exc
    missing, unexpected, _ = fit_report(expected, converted)
    mismatched = [{"name": k, "checkpoint": list(converted[k].shape), "model": list(expected[k].shape)}
                  for k in sorted(expected) if k in converted and converted[k].shape != expected[k].shape]
    return CheckReport(**report, weights=str(weights), layout=layout, missing=missing, unexpected=unexpected,
                       mismatched=mismatched)
